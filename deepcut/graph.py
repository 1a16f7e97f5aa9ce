"""Stage 2: patch features F (..., N, C) -> affinity W (..., N, N).

N-cut (paper eq. 5-6):  W = max(F F^T, 0) / max(F F^T)
CC    (paper eq. 7):    W = F F^T - max(F F^T) / alpha
Options beyond the paper (all off reproduces it exactly):
  center  subtract the image's mean feature first. Backbones whose features share a large common
          component (DINOv2 keys: pairwise cosine >= 0.55 within an image) otherwise give a nearly
          uniform W and no gradient signal.
  l2      L2-normalise each feature, so F F^T is a cosine similarity.
  power   raise the N-cut affinity to this power: sharpens W towards its strongest edges.
  knn     keep each node's k strongest edges (symmetrised): a sparse graph for large N.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def prepare_features(features: torch.Tensor, center: bool = False, l2: bool = False) -> torch.Tensor:
    if center:
        features = features - features.mean(dim=-2, keepdim=True)
    if l2:
        features = F.normalize(features, dim=-1)
    return features


def affinity(features: torch.Tensor, loss: str = "ncut", alpha: float = 3.0, center: bool = False,
             l2: bool = False, power: float = 1.0, knn: int | None = None) -> torch.Tensor:
    f = prepare_features(features, center, l2)
    sim = f @ f.transpose(-1, -2)
    peak = sim.amax(dim=(-1, -2), keepdim=True)
    if loss == "ncut":
        w = sim.clamp_min(0) / peak.clamp_min(torch.finfo(sim.dtype).tiny)
        if power != 1.0:
            w = w.pow(power)
    elif loss == "cc":
        if alpha <= 0:
            raise ValueError(f"loss.alpha={alpha} must be > 0 (paper: 3)")
        w = sim - peak / alpha
    else:
        raise ValueError(f"loss.name={loss!r}: use 'ncut' or 'cc'")
    return keep_knn(w, knn) if knn else w


def keep_knn(w: torch.Tensor, k: int) -> torch.Tensor:
    """Zero all but each node's k strongest edges; an edge kept by either end stays (W symmetric)."""
    k = min(k, w.shape[-1])
    keep = torch.zeros_like(w, dtype=torch.bool).scatter_(-1, w.topk(k, dim=-1).indices, True)
    return w * (keep | keep.transpose(-1, -2))
