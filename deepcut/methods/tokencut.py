"""TokenCut: Wang et al., "Self-supervised transformers for unsupervised object discovery using
normalized cut", CVPR 2022 (arXiv 2202.11539), Sec. 3.

Patches are graph nodes, edges are thresholded cosine similarities, and the object is the side of
the normalised cut (Shi & Malik) that holds the most salient patch. Follows the reference `ncut`
(github.com/YangtaoWANG95/TokenCut, object_discovery.py) step by step; the only differences:
  * for large grids (N > dense_max_n) the eigenvector comes from ARPACK on the equivalent
    symmetric problem instead of a dense generalised `eigh` (same vector, up to sign, which the
    seed rule makes irrelevant);
  * the eigenvector is taken D-orthogonal to the constant vector (see `fiedler_vector`): a no-op
    for a connected graph, which the eps edges guarantee here;
  * patch features only: the [CLS] token is not part of the interface (the reference drops it too).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import torch
import torch.nn.functional as F
from scipy import ndimage

from deepcut.registry import register_method


def fiedler_vector(W: np.ndarray, dense_max_n: int = 2500) -> np.ndarray:
    """Second-smallest generalised eigenvector of (D - W) v = lambda D v, D = diag(W 1).

    Normalised to v^T D v = 1. Dense: scipy's generalised `eigh` (as the references). Large: the
    same vectors as v = D^-1/2 u, u the top eigenvectors of D^-1/2 W D^-1/2 (matrix-vector
    products only, deterministic start vector). Of the two lowest eigenvectors, returns the
    combination D-orthogonal to the constant vector: for a connected graph that is exactly the
    second eigenvector; for a graph with two components (a zero eigenvalue twice, any basis of
    which a solver may return) it is the one that separates them, instead of an arbitrary mix.
    """
    d = W.sum(1)
    if len(d) <= dense_max_n:
        _, V = scipy.linalg.eigh(np.diag(d) - W, np.diag(d), subset_by_index=[0, 1])
    else:
        s = 1.0 / np.sqrt(d)
        op = scipy.sparse.linalg.LinearOperator(W.shape, matvec=lambda x: s * (W @ (s * x)), dtype=W.dtype)
        v0 = np.random.default_rng(0).standard_normal(len(d))
        vals, U = scipy.sparse.linalg.eigsh(op, k=2, which="LA", v0=v0)
        V = s[:, None] * U[:, np.argsort(-vals)]
    c = V.T @ d  # <v_k, 1>_D; the result must have <v, 1>_D = 0
    return V @ np.array([c[1], -c[0]]) / np.linalg.norm(c)


@register_method("tokencut")
def tokencut(features: torch.Tensor, grid: tuple[int, int], *, seed: int = 0, tau: float = 0.2,
             eps: float = 1e-5, dense_max_n: int = 2500, details: bool = False):
    """(N, C) patch features of one image -> (h, w) long mask, 1 = object. `seed` is unused.
    details: also {"eigenvector": (h, w) y_1}, the vector the cut thresholds."""
    f = F.normalize(features.detach().double().cpu(), dim=-1).numpy()
    # Eq. (3): E_ij = 1 if cos(x_i, x_j) >= tau else eps (the code uses a strict >).
    A = np.where(f @ f.T > tau, 1.0, eps)
    # Eq. (2): (D - E) y = lambda D y; the second-smallest eigenvector y_1 gives the cut.
    v = fiedler_vector(A, dense_max_n)
    # Bipartition at the mean of y_1; the seed is the patch with the largest |y_1| (Sec. 3.2) and
    # its side is the foreground.
    part = v > v.mean()
    top = int(np.argmax(np.abs(v)))
    if not part[top]:
        part = ~part
    # Keep the 4-connected component of the grid that contains the seed.
    components, _ = ndimage.label(part.reshape(grid))
    mask = torch.from_numpy(components == components.flat[top]).long().to(features.device)
    return (mask, {"eigenvector": torch.from_numpy(v.reshape(grid)).float()}) if details else mask
