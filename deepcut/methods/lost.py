"""LOST: Siméoni et al., "Localizing objects with self-supervised transformers and no labels",
BMVC 2021 (arXiv 2109.14279), Sec. 3.

Object patches correlate positively with few other patches (objects cover less of the image than
the background), so the patch with the lowest degree is the seed; its mask is grown from the
low-degree patches that resemble it. Follows the reference `lost` and `detect_box`
(github.com/valeoai/LOST, object_discovery.py), with these differences:
  * degree ties are broken by the lowest patch index (stable sort; the reference uses an
    unstable `argsort`, so its tie-break is unspecified);
  * returns the seed's component as the mask (the reference returns only its box, which is the
    box of exactly this mask);
  * the reference raises if the seed is outside the mask; that cannot happen for non-zero
    features (the seed's own similarity is |f|^2 > 0) and here the seed is kept regardless.
"""
from __future__ import annotations

import torch
from scipy import ndimage

from deepcut.errors import check_key, is_whole
from deepcut.registry import register_method


def check(cfg) -> list[str]:
    problems: list[str] = []
    check_key(problems, cfg.method, "method", "k_patches", lambda v: is_whole(v) and v >= 1, "must be a whole number >= 1")
    return problems


@register_method("lost", check=check)
def lost(features: torch.Tensor, grid: tuple[int, int], *, seed: int = 0, k_patches: int = 100) -> torch.Tensor:
    """(N, C) patch features of one image -> (h, w) long mask, 1 = object. `seed` is unused."""
    f = features.detach().double().cpu()
    # Eq. (1): a_pq = 1 if f_p . f_q >= 0 (raw features, no normalisation); the code counts > 0
    # and leaves the patch itself out. Eq. (2): degree d_p = sum_q a_pq.
    A = f @ f.T
    positive = A > 0
    positive.fill_diagonal_(False)
    degree = positive.sum(1)
    # Eq. (3): seed p* = argmin_p d_p.
    order = torch.sort(degree, stable=True).indices
    top = int(order[0])
    # Eq. (4): S = the patches among the k lowest-degree ones that correlate positively with the seed.
    potentials = order[:k_patches]
    expansion = potentials[A[top, potentials] > 0]
    # Eq. (5): m_q = 1 if sum_{s in S} f_q . f_s >= 0 (the code uses a strict > 0).
    mask = (A[expansion].sum(0) > 0).reshape(grid).numpy()
    mask.flat[top] = True
    # Box extraction uses the 4-connected component of the mask that contains the seed.
    components, _ = ndimage.label(mask)
    return torch.from_numpy(components == components.flat[top]).long().to(features.device)
