"""Stage 3b: clustering objectives on a soft assignment S (..., N, K) and affinity W (..., N, N).
Each returns one loss per graph (shape of the leading dims).

N-cut, MinCutPool form (paper eq. 3-4, Bianchi et al. 2020):
    L = -Tr(S^T W S) / Tr(S^T D S) + || S^T S / ||S^T S||_F - I_K / sqrt(K) ||_F
    with Tr(S^T D S) = sum_i d_i ||S_i||^2 computed in O(NK), never a dense N x N D.
Correlation clustering (paper eq. 8):
    L = -sum_ij W_ij (S S^T)_ij = -Tr(S^T W S); K is only an upper bound, empty clusters allowed.
"""
from __future__ import annotations

import torch


def association(s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Tr(S^T W S). A W (..., 1, N, N), dense or sparse, may be shared by several assignments
    S (..., R, N, K) (restarts): they become the columns of one matmul, so W is never copied."""
    if w.shape[:-2] == s.shape[:-2]:
        ws = torch.sparse.mm(w, s) if w.is_sparse else w @ s
        return (s * ws).sum(dim=(-1, -2))
    *lead, r, n, k = s.shape
    columns = s.transpose(-3, -2).reshape(*lead, n, r * k)  # (..., N, R*K)
    if w.is_sparse:  # sparse graphs come one at a time
        ws = torch.sparse.mm(w, columns.reshape(n, r * k)).reshape(columns.shape)
    else:
        ws = w.squeeze(-3) @ columns
    return (s * ws.reshape(*lead, n, r, k).transpose(-3, -2)).sum(dim=(-1, -2))


def ncut_loss(s: torch.Tensor, w: torch.Tensor, degree: torch.Tensor, ortho_weight: float = 1.0) -> torch.Tensor:
    """ortho_weight scales the orthogonality term (paper: 1). It keeps clusters from collapsing
    but also pulls a converged solution towards clusters of equal size."""
    cut = -association(s, w) / (degree[..., None] * s.square()).sum(dim=(-1, -2))
    sts = s.transpose(-1, -2) @ s
    k = s.shape[-1]
    eye = torch.eye(k, device=s.device, dtype=s.dtype)
    ortho = torch.linalg.matrix_norm(sts / torch.linalg.matrix_norm(sts)[..., None, None] - eye / k**0.5)
    return cut + ortho_weight * ortho


def cc_loss(s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return -association(s, w)
