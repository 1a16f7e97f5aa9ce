"""Deep Spectral Methods, single-region segmentation: Melas-Kyriazi et al., "Deep Spectral Methods:
A Surprisingly Strong Baseline for Unsupervised Semantic Segmentation and Localization", CVPR 2022
(arXiv 2205.07839), Sec. 3.

The object is one side of the Fiedler vector of the feature-affinity Laplacian. Follows the reference
`extract_eigs` + `extract_single_region_segmentations` (github.com/lukemelas/deep-spectral-methods,
extract.py; defaults normalize, threshold_at_zero, lapnorm), with these differences:
  * no colour (image kNN) affinity term (the reference's `image_color_lambda` option): the
    interface has features only;
  * the generalised eigenproblem (D - W) v = lambda D v is solved with dense `eigh` (or ARPACK on
    the equivalent symmetric problem for large N) instead of shift-invert `eigsh(sigma=0)`, which
    factorises the singular D - W; when W = max(f f^T, 0) splits into two components (zero
    eigenvalue twice) the returned vector is the one that separates them (see `fiedler_vector`),
    where the reference returns whatever basis of the null space ARPACK lands on;
  * the foreground is the side that covers less of the grid border (project-wide rule,
    deepcut.masks.relabel_background_first); the reference flips the eigenvector's sign so that
    its positive side is the smaller one, i.e. calls the smaller side the object.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from deepcut.masks import relabel_background_first
from deepcut.methods.tokencut import fiedler_vector
from deepcut.registry import register_method


@register_method("dsm")
def dsm(features: torch.Tensor, grid: tuple[int, int], *, seed: int = 0, dense_max_n: int = 2500,
        details: bool = False):
    """(N, C) patch features of one image -> (h, w) long mask, 1 = object. `seed` is unused.
    details: also {"eigenvector": (h, w) Fiedler vector}, the vector split at 0."""
    f = F.normalize(features.detach().double().cpu(), dim=-1).numpy()
    # Sec. 3: feature affinity W_feat = f f^T, thresholded at 0 (W / max W is a no-op for unit features).
    W = np.maximum(f @ f.T, 0.0)
    # Sec. 3: eigenvectors of the normalised Laplacian, as (D - W) v = lambda D v; the Fiedler
    # vector (smallest non-zero eigenvalue) splits the image in two at 0.
    v = fiedler_vector(W, dense_max_n)
    labels = torch.from_numpy(v > 0).long().reshape(grid)
    # Object = the side that is not the border (background) side.
    mask = (relabel_background_first(labels) > 0).long().to(features.device)
    return (mask, {"eigenvector": torch.from_numpy(v.reshape(grid)).float()}) if details else mask
