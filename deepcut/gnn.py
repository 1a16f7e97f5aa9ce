"""Stage 3a: the DeepCut GNNs of B images, R restarts each, trained as one batch.

Architecture (paper Sec. 3, the original's GNNpool): one graph convolution with the affinity as
edge weights and symmetric normalisation, ELU, then an MLP 64 -> 32 -> K with ELU and dropout
0.25, softmax over K.

The graph and node features are fixed while a GNN trains, so the propagation A_hat X (A_hat =
D^-1/2 W D^-1/2, paper's GCN) is computed once per image: a step costs two small matmuls instead
of message passing over N^2 edges. Activations are kept transposed, (features, nodes): the first
layer of an image's R GNNs is then one matmul against their stacked weights, every later layer a
batched matmul over the B*R GNNs, all without a copy.

Randomness is per image, never per batch, so a batch gives exactly the per-image results: image b
has one seed; its R restarts are initialised from one draw, and each step draws the dropout masks
of its R restarts at once from a generator seeded by (seed, step). Restart r's numbers come at the
same place of every draw whatever R is, so restart 0 is the single-start run (up to rounding:
the first layer's matmul has R times the rows).
"""
from __future__ import annotations

import hashlib
import itertools
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


def stream_seed(seed: int, *parts) -> int:
    """A 63-bit generator seed for one random stream of an image (its init, a step's dropout)."""
    return int.from_bytes(hashlib.sha256(repr((seed, *parts)).encode()).digest()[:8], "little") >> 1


class GNNBatch(torch.nn.Module):
    """Parameters of B images x R restarts GNNs: one (B, R, P) tensor, each GNN's P numbers holding
    its layers' weights, stored transposed (out, in) for the (features, nodes) activations, and
    biases. P is padded to a multiple of 64, so the optimiser's vectorised update treats every
    image's numbers alike whatever B (a tensor's tail is updated by scalar code that rounds
    differently). Initialised on the CPU, so every device starts from the same parameters."""

    def __init__(self, seeds: list[int], restarts: int, in_dim: int, k: int, hidden: int = 64,
                 mlp_hidden: int = 32, dropout: float = 0.25, device: torch.device | str = "cpu"):
        super().__init__()
        self.seeds, self.restarts, self.dropout = list(seeds), restarts, dropout
        self.device = torch.device(device)
        # (out, in) of the GCN layer and the MLP's two layers; GCN: glorot weight, zero bias (PyG's
        # GCNConv), MLP: nn.Linear's default U(+-1/sqrt(fan_in)) for weight and bias.
        glorot, mlp1, mlp2 = math.sqrt(6.0 / (in_dim + hidden)), 1 / math.sqrt(hidden), 1 / math.sqrt(mlp_hidden)
        self.shapes = [(hidden, in_dim), (hidden, 1), (mlp_hidden, hidden), (mlp_hidden, 1), (k, mlp_hidden), (k, 1)]
        bounds = [glorot, 0.0, mlp1, mlp1, mlp2, mlp2]
        sizes = [math.prod(shape) for shape in self.shapes]
        size = -(-sum(sizes) // 64) * 64
        bound = torch.cat([torch.full((n,), b) for n, b in zip(sizes, bounds)] + [torch.zeros(size - sum(sizes))])
        draws = torch.stack([torch.rand((restarts, size), generator=torch.Generator().manual_seed(stream_seed(s, "init")))
                             for s in seeds])  # (B, R, P): one draw per image
        self.flat = torch.nn.Parameter(((draws * 2 - 1) * bound).to(self.device))
        self.offsets = [0] + list(itertools.accumulate(sizes))
        # Dropout keeps a unit when a uniform 16-bit integer is >= this (p = 0.25 exactly: 2^14/2^16).
        self.keep_from = round(dropout * 65536) - 32768
        self.generator = torch.Generator(self.device)
        self.step = 0

    def layers(self, flat: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Views (B, R, out, in) of w1, b1, w2, b2, w3, b3 into the (B, R, P) parameters."""
        flat = self.flat if flat is None else flat
        return [flat[..., a:z].unflatten(-1, shape) for a, z, shape in zip(self.offsets, self.offsets[1:], self.shapes)]

    def forward(self, axt: torch.Tensor, flat: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, N) transposed propagated features (A_hat X)^T -> (B, R, N, K) soft assignments S
        (of the given parameters, else the module's). In training mode each call is one step and
        draws its dropout masks."""
        w1, b1, w2, b2, w3, b3 = self.layers(flat)
        b, r, h, c = w1.shape
        n = axt.shape[-1]
        x = F.elu(torch.baddbmm(b1.reshape(b, r * h, 1), w1.reshape(b, r * h, c), axt))  # (B, R*H, N)
        x = F.elu(torch.baddbmm(b2.flatten(0, 1), w2.flatten(0, 1), x.view(b * r, h, n)))  # (B*R, M, N)
        if self.training and self.dropout > 0:
            x = x * self._masks(x.shape[1:]).to(x.dtype)
            self.step += 1
        logits = torch.baddbmm(b3.flatten(0, 1), w3.flatten(0, 1), x)  # (B*R, K, N)
        # Softmax of each node's K logits on its own (a softmax across a dim of other sizes would
        # round differently by batch size, breaking batch = one image at a time).
        return torch.softmax(logits.transpose(1, 2), dim=-1).view(b, r, n, -1)

    def _masks(self, shape) -> torch.Tensor:
        """(B*R, M, N) dropout scales (0 or 1/(1-p)): one draw of 16-bit integers per image."""
        count = self.restarts * math.prod(shape)
        masks = []
        for seed in self.seeds:
            self.generator.manual_seed(stream_seed(seed, "dropout", self.step))
            bits = torch.empty((count + 3) // 4, dtype=torch.int64, device=self.device).random_(-2**63, None, generator=self.generator)  # all 64 bits
            masks.append(bits.view(torch.int16)[:count] >= self.keep_from)
        keep = torch.stack(masks).view(-1, *shape)
        return torch.where(keep, 1 / (1 - self.dropout), 0.0)
