"""Stage 3a: R independent DeepCut GNNs (one per image, or per image x restart) trained as one batch.

Architecture (paper Sec. 3, the original's GNNpool): one graph convolution with the affinity as
edge weights and symmetric normalisation, ELU, then an MLP 64 -> 32 -> K with ELU and dropout
0.25, softmax over K.

The graph and node features are fixed while a GNN trains, so the propagation A_hat X (A_hat =
D^-1/2 W D^-1/2, paper's GCN) is computed once per image: a step costs two small matmuls instead
of message passing over N^2 edges. Each GNN owns its parameters (leading dim R) and its random
generator, so a batch gives exactly the per-image results.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def propagate(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A_hat X with A_hat = D^-1/2 W D^-1/2, D = diag(row sums of W), as in PyG's GCNConv
    (W already holds its self loops on the diagonal). CC affinities can have non-positive row
    sums, where D^-1/2 is undefined; those graphs are normalised by their absolute degree, the
    signed-graph convention (Kunegis et al. 2010)."""
    d = degrees(w)
    if (d <= 0).any():
        d = torch.where((d <= 0).any(-1, keepdim=True), degrees(w.abs()), d)
    s = d.clamp_min(torch.finfo(d.dtype).tiny).rsqrt()
    wx = torch.sparse.mm(w, s[:, None] * x.reshape(s.shape[0], -1)).reshape(x.shape) if w.is_sparse else w @ (s[..., :, None] * x)
    return s[..., :, None] * wx


def degrees(w: torch.Tensor) -> torch.Tensor:
    """Row sums of a dense (..., N, N) or sparse (N, N) affinity."""
    return torch.sparse.sum(w, dim=1).to_dense() if w.is_sparse else w.sum(-1)


class GNNBatch(torch.nn.Module):
    """Parameters of R GNNs stacked on a leading dim. GNN r is initialised (on the CPU, so every
    device starts from the same parameters) and draws its dropout masks from its own seed[r]."""

    def __init__(self, seeds: list[int], in_dim: int, k: int, hidden: int = 64, mlp_hidden: int = 32,
                 dropout: float = 0.25, device: torch.device | str = "cpu"):
        super().__init__()
        self.dropout = dropout
        init = [torch.Generator().manual_seed(s) for s in seeds]
        self.generators = [torch.Generator(device).manual_seed(s + 1) for s in seeds]
        dims = [(in_dim, hidden), (hidden, mlp_hidden), (mlp_hidden, k)]
        weights, biases = [], []
        for i, (fan_in, fan_out) in enumerate(dims):
            ws, bs = [], []
            for g in init:
                if i == 0:  # GCN layer: glorot weight, zero bias (PyG's GCNConv init)
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    ws.append(_uniform((fan_in, fan_out), bound, g))
                    bs.append(torch.zeros(1, fan_out))
                else:  # nn.Linear's default init
                    bound = 1.0 / math.sqrt(fan_in)
                    ws.append(_uniform((fan_in, fan_out), bound, g))
                    bs.append(_uniform((1, fan_out), bound, g))
            weights.append(torch.nn.Parameter(torch.stack(ws).to(device)))
            biases.append(torch.nn.Parameter(torch.stack(bs).to(device)))
        self.weights, self.biases = torch.nn.ParameterList(weights), torch.nn.ParameterList(biases)

    def forward(self, ax: torch.Tensor) -> torch.Tensor:
        """(B, N, C) propagated features A_hat X of B images -> (B*R, N, K) soft assignments S of
        their R = len(seeds) / B GNNs each (GNN b*R + r belongs to image b)."""
        (w1, w2, w3), (b1, b2, b3) = self.weights, self.biases
        b, n, c = ax.shape
        r = w1.shape[0] // b
        # First layer of an image's R GNNs as one matmul against their concatenated weights:
        # A_hat X is never copied R times.
        w1 = w1.view(b, r, c, -1).permute(0, 2, 1, 3).reshape(b, c, -1)  # (B, C, R*H)
        h = (ax @ w1).view(b, n, r, -1).permute(0, 2, 1, 3).reshape(b * r, n, -1)
        h = F.elu(h + b1)
        h = F.elu(torch.baddbmm(b2, h, w2))
        if self.training and self.dropout > 0:
            keep = torch.stack([torch.rand(h.shape[1:], generator=g, device=h.device) for g in self.generators])
            h = h * (keep >= self.dropout) / (1 - self.dropout)
        return torch.softmax(torch.baddbmm(b3, h, w3), dim=-1)


def _uniform(shape, bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound
