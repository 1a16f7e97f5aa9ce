"""Stage 3b: clustering objectives on a soft assignment S (..., N, K) and affinity W (..., N, N).
Each returns one loss per graph (shape of the leading dims).

N-cut, MinCutPool form (paper eq. 3-4, Bianchi et al. 2020):
    L = -Tr(S^T W S) / Tr(S^T D S) + || S^T S / ||S^T S||_F - I_K / sqrt(K) ||_F
    with Tr(S^T D S) = sum_i d_i ||S_i||^2 computed in O(NK), never a dense N x N D.
Correlation clustering (paper eq. 8):
    L = -sum_ij W_ij (S S^T)_ij = -Tr(S^T W S); K is only an upper bound, empty clusters allowed.

Both affinities are symmetric, so the gradient of Tr(S^T W S) is 2 W S, which the forward pass has
already computed: one pass over W per training step instead of autograd's two.
"""
from __future__ import annotations

import torch


class _QuadraticForms(torch.autograd.Function):
    """Rows X (..., J, N) and a symmetric W -> (..., J) the quadratic forms x_j^T W x_j.
    W is a constant (the graph): it gets no gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        wx = _times_w(x, w)
        ctx.save_for_backward(wx)
        return (x * wx).sum(-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        wx, = ctx.saved_tensors
        return 2 * grad[..., None] * wx, None


def _times_w(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """X W = (W X^T)^T for rows X (..., J, N): dense W (..., N, N), or one sparse (N, N) W for all rows."""
    if w.is_sparse:
        n = x.shape[-1]
        return torch.sparse.mm(w, x.reshape(-1, n).T).T.reshape(x.shape)
    return x @ w


def association(s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Tr(S^T W S) for a symmetric W. A W (..., 1, N, N), dense or sparse (N, N), may be shared
    by several assignments S (..., R, N, K) (restarts): their R*K columns meet W in one matmul,
    so W is never copied."""
    *lead, n, k = s.shape
    rows = s.transpose(-1, -2)  # (..., K, N)
    if not w.is_sparse and w.shape[:-2] != s.shape[:-2]:  # shared by the restarts on dim -3
        rows, w = rows.reshape(*lead[:-1], lead[-1] * k, n), w.squeeze(-3)
    forms = _QuadraticForms.apply(rows, w) if not w.requires_grad else (rows * _times_w(rows, w)).sum(-1)
    return forms.reshape(*lead, k).sum(-1)


def ncut_loss(s: torch.Tensor, w: torch.Tensor, degree: torch.Tensor, ortho_weight: float = 1.0) -> torch.Tensor:
    """degree: W's row sums (..., N) (shape of W's leading dims). ortho_weight scales the
    orthogonality term (paper: 1). It keeps clusters from collapsing but also pulls a converged
    solution towards clusters of equal size."""
    cut = -association(s, w) / (degree[..., None] * s.square()).sum(dim=(-1, -2))
    sts = s.transpose(-1, -2) @ s
    k = s.shape[-1]
    eye = torch.eye(k, device=s.device, dtype=s.dtype)
    ortho = torch.linalg.matrix_norm(sts / torch.linalg.matrix_norm(sts)[..., None, None] - eye / k**0.5)
    return cut + ortho_weight * ortho


def cc_loss(s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return -association(s, w)


# The clustering objectives by name (loss.name; configs/loss/<name>.yaml): (S, W, degrees,
# ortho_weight) -> one loss per graph. graph.AFFINITIES holds each one's own affinity formula.
LOSSES = {
    "ncut": ncut_loss,                                                  # paper eq. 3-4
    "cc": lambda s, w, degree, ortho_weight: cc_loss(s, w),             # paper eq. 8
}
