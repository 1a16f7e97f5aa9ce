"""k-means on patch features: the clustering baseline of DeepCut (Aflalo et al., arXiv 2212.05853)
and Deep Spectral Methods (Melas-Kyriazi et al., CVPR 2022), run on the same features as every
other method.

Lloyd's algorithm (scikit-learn, k-means++ init, best of n_init) on L2-normalised features, i.e.
spherical-ish clustering by cosine similarity; the cluster covering most of the grid border is the
background and every other cluster is foreground (background=border), or with background=frame
every cluster that lies on the border as often as the grid does (deepcut.masks.background_clusters),
DeepCut's own choice, for a like-for-like comparison.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from deepcut.errors import check_key, is_whole
from deepcut.masks import BACKGROUND_ALLOWED, BACKGROUND_RULES, relabel_background_first
from deepcut.registry import register_method


def check(cfg) -> list[str]:
    problems: list[str] = []
    check_key(problems, cfg.method, "method", "k", lambda v: is_whole(v) and v >= 2,
              "k-means needs a whole number of clusters >= 2")
    check_key(problems, cfg.method, "method", "background", lambda v: v in BACKGROUND_RULES, BACKGROUND_ALLOWED)
    return problems


@register_method("kmeans", check=check)
def kmeans(features: torch.Tensor, grid: tuple[int, int], *, seed: int = 0, k: int = 2, n_init: int = 10,
           background: str = "border") -> torch.Tensor:
    """(N, C) patch features of one image -> (h, w) long labels: 0 = the background clusters, then
    the foreground clusters 1, 2, ... by decreasing size (the mask is labels > 0; each cluster's
    components are instances with postprocess.instances)."""
    from sklearn.cluster import KMeans  # ~1 s to import: only runs that use k-means pay it

    f = F.normalize(features.detach().double().cpu(), dim=-1).numpy()
    # argmin_{labels, mu} sum_i |f_i - mu_{label_i}|^2, best of n_init k-means++ starts.
    labels = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(f)
    labels = torch.from_numpy(labels).long().reshape(grid)
    return relabel_background_first(labels, background).to(features.device)
