"""Stage 4: patch labels -> full-size labels, foreground mask and box (deepcut/masks.py's functions,
chained as configs/postprocess/ says). Tensors and a PIL image in, tensors out.

The full-size work is what a user pays for after the GNN, so what the patch grid can answer is
answered there: the nearest foreground label for pixels the solver adds (`labels_within`) and the
box of the coarse mask (`grid_box`); the bilateral solver works at `bilateral_params.max_side`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from deepcut.bilateral import refine, working_size
from deepcut.errors import ConfigError, check_key, is_whole
from deepcut.instances import Instances, proposals
from deepcut.masks import grid_box, grid_coverage, labels_within, largest_component, mask_to_box, upsample_labels

UPSAMPLE = {"nearest": "each pixel takes its patch's label", "bilinear": "edges between patch centres"}
BOX_FROM = {"coarse": "the box of the mask before the bilateral solver", "refined": "after it"}
SOLVER_KEYS = ("sigma_spatial", "sigma_luma", "sigma_chroma", "lam", "max_side", "cg_tol", "cg_maxiter")


def check(post) -> list[str]:
    """configs/postprocess settings: one paragraph per problem (run.py's validation and Postprocess apply these)."""
    problems: list[str] = []
    allowed = lambda options: "use " + " or ".join(f"{k} ({v})" for k, v in options.items())  # noqa: E731
    check_key(problems, post, "postprocess", "upsample", lambda v: v in UPSAMPLE, allowed(UPSAMPLE))
    check_key(problems, post, "postprocess", "box_from", lambda v: v in BOX_FROM, allowed(BOX_FROM))
    check_key(problems, post, "postprocess", "instances", lambda v: is_whole(v) and v >= 0,
              "the most object proposals per image: a whole number >= 0 (0: the single-object output only)")
    check_key(problems, post, "postprocess", "instance_min_area", lambda v: isinstance(v, (int, float))
              and not isinstance(v, bool) and 0 <= v < 1, "the smallest proposal, as a share of the image: a number in [0, 1)")
    params = post.get("bilateral_params") or {}
    unknown = sorted(set(params) - set(SOLVER_KEYS))
    if unknown:
        problems.append(f"postprocess.bilateral_params.{unknown[0]}: not a setting of the bilateral solver; use "
                        f"{', '.join(SOLVER_KEYS)}")
    for key in ("sigma_spatial", "sigma_luma", "sigma_chroma", "lam"):
        check_key(problems, params, "postprocess.bilateral_params", key,
                  lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "must be a number > 0")
    check_key(problems, params, "postprocess.bilateral_params", "max_side", lambda v: v is None or (is_whole(v) and v >= 16),
              "the longer side (pixels) the solver works at: null (the image's own) or a whole number >= 16")
    return problems


@dataclass
class Postprocess:
    """Patch labels -> full-size labels, foreground mask and box.

    largest_component keeps the foreground's largest connected patch region (TokenCut/LOST do);
    bilateral refines the mask on the image (Barron & Poole 2016; the paper used none); box_from
    says which mask the box is drawn around: the coarse one (as TokenCut's object discovery, so
    refinement never moves a box) or the refined one."""
    largest_component: bool = False
    upsample: str = "nearest"
    bilateral: bool = False
    bilateral_params: dict = field(default_factory=dict)
    box_from: str = "coarse"
    instances: int = 0          # the most object proposals per image (deepcut.instances); 0: none
    instance_min_area: float = 0.01
    device: str = "cpu"         # where the solver runs (the segmenter's device): NumPy on the CPU, torch elsewhere

    def __post_init__(self):
        problems = check(vars(self))
        if problems:
            raise ConfigError("\n\n".join(problems))

    def __call__(self, labels: torch.Tensor, image: Image.Image):
        labels = labels.cpu()
        if self.largest_component:
            labels = torch.where(largest_component(labels > 0), labels, 0)
        size = (image.height, image.width)
        grid_level = self.upsample == "nearest" and size[0] >= labels.shape[0] and size[1] >= labels.shape[1]
        if self.bilateral:
            params = dict(self.bilateral_params)
            work = working_size(*size, params.pop("max_side", None))
            if grid_level:  # the coarse mask's area average at the working size, from the grid
                target = grid_coverage(labels > 0, size, work)
            else:
                coarse = (upsample_labels(labels, size, self.upsample) > 0).numpy().astype(np.float32)
                target = np.asarray(Image.fromarray(coarse).resize(work[::-1], Image.BOX)) if work != size else coarse
            mask = torch.from_numpy(refine(image, target, device=self.device, **params))
            full = labels_within(labels, mask, self.upsample)
        else:
            full = upsample_labels(labels, size, self.upsample)
            mask = full > 0
        if self.box_from == "refined":
            box = mask_to_box(mask)
        elif grid_level:
            box = grid_box(labels, size)  # the coarse mask is the grid's, block by block
        else:
            box = mask_to_box(upsample_labels(labels, size, self.upsample) > 0)
        return full, mask, box

    def propose(self, full: torch.Tensor) -> Instances | None:
        """The full-size label map's object proposals, when `instances` asks for them."""
        return proposals(full, self.instances, self.instance_min_area) if self.instances else None
