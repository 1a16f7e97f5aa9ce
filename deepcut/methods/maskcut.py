"""MaskCut: Wang et al., "Cut and Learn for Unsupervised Object Detection and Instance
Segmentation", CVPR 2023 (arXiv 2301.11320), Sec. 3.1: several objects per image from repeated
normalised cuts (TokenCut's) on the patch graph, each cut run with the patches already found
masked out.

Follows the reference `maskcut_forward` (github.com/facebookresearch/CutLER, maskcut/maskcut.py:
get_affinity_matrix, second_smallest_eigenvector, get_salient_areas, check_num_fg_corners and
TokenCut's detect_box) step by step; the differences:
  * no dense CRF: CutLER refines each mask with pydensecrf and drops those whose IoU with the
    pre-CRF mask is < 0.5; there are no wheels of it for this Python, and this project's
    refinement is its own post-processing stage (bilateral solver), applied to every method alike;
  * the features are this project's backbone's patch features, not DINO ViT-B/8 keys at 480 px;
  * the eigenvector's sign is fixed so that the seed (largest |v|) lies above the mean, before the
    corner rule: eigh's sign is arbitrary and the reference checks the corners of `v > mean`
    before the seed, so with one sign an object on 3 corners is rejected, with the other kept;
  * the eigenvector comes from tokencut's `fiedler_vector` (dense `eigh`, ARPACK for large grids);
  * the output is one label map, 1..n the masks in the order found (made disjoint, as the
    reference's `bipartitions`), instead of n image-sized masks; a dropped mask takes no label.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from deepcut.errors import check_key, is_number, is_whole
from deepcut.methods.tokencut import fiedler_vector
from deepcut.registry import register_method


def check(cfg) -> list[str]:
    problems: list[str] = []
    m = cfg.method
    check_key(problems, m, "method", "tau", lambda v: is_number(v) and -1 < v < 1,
              "the cosine threshold of the patch graph must lie in (-1, 1); outside it every edge is alike (all 1 or all eps)")
    check_key(problems, m, "method", "n_masks", lambda v: is_whole(v) and v >= 1,
              "MaskCut needs a whole number of masks (cuts) per image >= 1")
    check_key(problems, m, "method", "min_area", lambda v: is_number(v) and 0 <= v < 1,
              "the smallest kept mask, as a fraction of the grid, must lie in [0, 1)")
    check_key(problems, m, "method", "max_overlap", lambda v: is_number(v) and 0 < v <= 1,
              "the largest IoU of a mask with the previous one must lie in (0, 1]")
    return problems


@register_method("maskcut", check=check)
def maskcut(features: torch.Tensor, grid: tuple[int, int], *, seed: int = 0, tau: float = 0.15,
            eps: float = 1e-5, n_masks: int = 3, min_area: float = 0.01, max_overlap: float = 0.5,
            dense_max_n: int = 2500, details: bool = False):
    """(N, C) patch features of one image -> (h, w) long labels, 0 = background, 1..n (n <= n_masks)
    the objects in the order found. `seed` is unused. details: also {"eigenvector": (h, w)}, the
    vector of the first cut."""
    f = F.normalize(features.detach().double().cpu(), dim=-1).numpy()
    h, w = grid
    corners = [0, w - 1, (h - 1) * w, h * w - 1]
    painting = np.zeros(h * w, dtype=bool)   # patches found so far (the reference's `painting`)
    previous = np.zeros(h * w, dtype=bool)   # the previous cut's mask (`current_mask`)
    labels = np.zeros(h * w, dtype=np.int64)
    first = None
    for i in range(n_masks):
        # Found patches get zero features (set_zero): cosine 0 <= tau, so only eps edges.
        g = np.where(painting[:, None], 0.0, f)
        # E_ij = 1 if cos > tau else eps; (D - E) v = lambda D v, second-smallest v (TokenCut's cut).
        v = fiedler_vector(np.where(g @ g.T > tau, 1.0, eps), dense_max_n)
        first = v if first is None else first
        top = int(np.argmax(np.abs(v)))
        v = v if v[top] > v.mean() else -v  # the seed's side is v > mean (fixes eigh's sign)
        part = v > v.mean()
        # Object-centric prior: a foreground holding >= 3 of the 4 corners is the background.
        if part[corners].sum() >= 3:
            part, v = ~part, -v
        top = int(np.argmax(v))  # the seed after reversal, as the reference: argmax of the vector
        # Keep the 4-connected component of the grid that contains the seed (detect_box).
        components, _ = ndimage.label(part.reshape(grid))
        mask = (components == components.flat[top]).ravel()
        # A later mask that mostly repeats the previous one, or is tiny, is dropped.
        if i >= 1:
            iou = (mask & previous).sum() / max((mask | previous).sum(), 1)
            if iou > max_overlap or mask.mean() <= min_area:
                mask = np.zeros_like(mask)
        previous, painting = mask, painting | mask
        new = mask & (labels == 0)  # disjoint: a later mask loses the patches already taken
        if new.any():
            labels[new] = labels.max() + 1
    out = torch.from_numpy(labels.reshape(grid)).to(features.device)
    return (out, {"eigenvector": torch.from_numpy(first.reshape(grid)).float()}) if details else out
