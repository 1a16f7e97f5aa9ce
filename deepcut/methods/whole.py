"""The trivial baseline: the whole image is foreground. Any method must beat it to mean anything
(on saliency data it already scores the foreground fraction as IoU, and a box around the whole
image localises large objects)."""
import torch

from deepcut.registry import register_method


@register_method("whole")
def whole(features: torch.Tensor, grid: tuple[int, int], *, seed: int = 0) -> torch.Tensor:
    return torch.ones(grid, dtype=torch.long, device=features.device)
