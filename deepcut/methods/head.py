"""A head trained by self-training (`task=distil`, deepcut/distil.py) as a method: one forward of
the backbone, then the head's foreground probability per patch, thresholded; the post-processing
(the bilateral solver by default) refines it like any method's mask.

`method.checkpoint` is the head.pt a distil run wrote; a head trained on the features of other
backbone settings is refused when the run is validated.
"""
from __future__ import annotations

import torch

from deepcut.errors import ConfigError, is_number
from deepcut.registry import register_method


def check(cfg) -> list[str]:
    from deepcut import distil
    problems = []
    if not (is_number(cfg.method.get("threshold")) and 0 < cfg.method.threshold < 1):
        problems.append(f"method.threshold={cfg.method.get('threshold')!r}: the foreground probability above which "
                        "a patch is foreground, a number in (0, 1)")
    if cfg.method.get("checkpoint") is None:
        problems.append("method.checkpoint=null: give the head.pt of a distil run, e.g. "
                        "method.checkpoint=outputs/<date>/<time>/head.pt (python run.py task=distil ... trains one)")
    else:
        try:
            distil.load(cfg.method.checkpoint, cfg.backbone)
        except ConfigError as err:
            problems.append(str(err))
    return problems


class HeadMethod:
    def __init__(self, head, threshold: float):
        self.head, self.threshold = head, threshold

    def __call__(self, features: torch.Tensor, grid: tuple[int, int], *, seed: int = 0, details: bool = False):
        """(N, C) patch features -> (h, w) long mask, 1 = the head's probability > threshold. `seed`
        is unused. details: also {"eigenvector": (h, w)} the probability map, shown as the peers' vectors."""
        with torch.no_grad():
            p = torch.sigmoid(self.head.to(features.device)(features.float())).view(grid)
        mask = (p > self.threshold).long()
        return (mask, {"eigenvector": p.cpu()}) if details else mask


def build(cfg) -> HeadMethod:
    from deepcut import distil
    return HeadMethod(distil.load(cfg.method.checkpoint, cfg.backbone), float(cfg.method.threshold))


register_method("head", build=build, check=check)(HeadMethod)
