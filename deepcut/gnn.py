"""Stage 3a: the DeepCut GNNs of B images, R restarts each, trained as one batch.

Architecture (paper Sec. 3, the original's GNNpool): one graph convolution with the affinity as
edge weights and symmetric normalisation, ELU, then an MLP 64 -> 32 -> K with ELU and dropout
0.25, softmax over K.

The graph and node features are fixed while a GNN trains, so the propagation A_hat X (A_hat =
D^-1/2 W D^-1/2, paper's GCN) is computed once per image: a step costs two small matmuls instead
of message passing over N^2 edges. The first layer of an image's R GNNs is one matmul against their
weights side by side; the later layers are batched matmuls over the GNNs that read their blocks of
it in place.

Randomness is per image, never per batch, so a batch gives exactly the per-image results: image b
has one seed; its R restarts are initialised from one draw, and each step draws the dropout masks
of its R restarts at once from a generator seeded by (seed, step). Restart r's numbers come at the
same place of every draw whatever R is, so restart 0 is the single-start run (up to rounding:
the first layer's matmul has R times the rows).
"""
from __future__ import annotations

import itertools
import math

import torch

from deepcut.seeds import stream_seed


def propagate(w: torch.Tensor, x: torch.Tensor, d: torch.Tensor | None = None) -> torch.Tensor:
    """A_hat X with A_hat = D^-1/2 W D^-1/2, D = diag(row sums of W), as in PyG's GCNConv
    (W already holds its self loops on the diagonal); d: those row sums, if already at hand. CC
    affinities can have non-positive row sums, where D^-1/2 is undefined; those graphs are
    normalised by their absolute degree, the signed-graph convention (Kunegis et al. 2010)."""
    d = degrees(w) if d is None else d
    if (d <= 0).any():
        d = torch.where((d <= 0).any(-1, keepdim=True), degrees(w.abs()), d)
    s = d.clamp_min(torch.finfo(d.dtype).tiny).rsqrt()
    wx = torch.sparse.mm(w, s[:, None] * x.reshape(s.shape[0], -1)).reshape(x.shape) if w.is_sparse else w @ (s[..., :, None] * x)
    return s[..., :, None] * wx


def degrees(w: torch.Tensor) -> torch.Tensor:
    """Row sums of a dense (..., N, N) or sparse (N, N) affinity."""
    return torch.sparse.sum(w, dim=1).to_dense() if w.is_sparse else w.sum(-1)


class GNNBatch(torch.nn.Module):
    """Parameters of B images x R restarts GNNs: one (B, R, P) tensor, each GNN's P numbers holding
    its layers' weights (in, out) and biases. P is padded to a multiple of 64, so the optimiser's vectorised update treats every
    image's numbers alike whatever B (a tensor's tail is updated by scalar code that rounds
    differently). Initialised on the CPU, so every device starts from the same parameters: image b's
    from init_seeds[b] (default: its seed; one init seed for all images = the original's shared
    initialisation), its dropout masks always from seeds[b]."""

    def __init__(self, seeds: list[int], restarts: int, in_dim: int, k: int, hidden: int = 64,
                 mlp_hidden: int = 32, dropout: float = 0.25, device: torch.device | str = "cpu",
                 init_seeds: list[int] | None = None):
        super().__init__()
        self.seeds, self.restarts, self.dropout = list(seeds), restarts, dropout
        self.device = torch.device(device)
        # (in, out) of the GCN layer (its bias as an extra row: the GNN's input gets a column of
        # ones, so the bias comes with the matmul) and the MLP's two layers. GCN: glorot weight,
        # zero bias (PyG's GCNConv); MLP: nn.Linear's default U(+-1/sqrt(fan_in)), weight and bias.
        glorot, mlp1, mlp2 = math.sqrt(6.0 / (in_dim + hidden)), 1 / math.sqrt(hidden), 1 / math.sqrt(mlp_hidden)
        self.shapes = [(in_dim + 1, hidden), (hidden, mlp_hidden), (1, mlp_hidden), (mlp_hidden, k), (1, k)]
        gcn = torch.full((in_dim + 1, hidden), glorot)
        gcn[-1] = 0.0
        bounds = [gcn.flatten()] + [torch.full((math.prod(shape),), b) for shape, b in zip(self.shapes[1:], (mlp1, mlp1, mlp2, mlp2))]
        sizes = [len(b) for b in bounds]
        size = -(-sum(sizes) // 64) * 64
        bound = torch.cat(bounds + [torch.zeros(size - sum(sizes))])
        draws = torch.stack([torch.rand((restarts, size), generator=torch.Generator().manual_seed(stream_seed(s, "init")))
                             for s in (seeds if init_seeds is None else init_seeds)])  # (B, R, P): one draw per image
        self.flat = torch.nn.Parameter(((draws * 2 - 1) * bound).to(self.device))
        self.offsets = [0] + list(itertools.accumulate(sizes))
        # Dropout keeps a unit when a uniform 16-bit integer is >= this (p = 0.25 exactly: 2^14/2^16).
        self.keep_from = round(dropout * 65536) - 32768
        self.generator = torch.Generator(self.device)
        self.step = 0

    def layers(self, flat: torch.Tensor | None = None) -> list[torch.Tensor]:
        """(B, R, in, out) w1 (with its bias row), w2, b2, w3, b3 from the (B, R, P) parameters."""
        return _Layers.apply(self.flat if flat is None else flat, self.offsets, self.shapes)

    @staticmethod
    def inputs(ax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, C) propagated features A_hat X -> the GNNs' input X~ (B, N, C + 1), a column of
        ones appended for the first layer's bias, and its transpose (B, C + 1, N), stored once for
        the first layer's backward."""
        x = torch.cat([ax, ax.new_ones(*ax.shape[:-1], 1)], dim=-1)
        return x, x.mT.contiguous()

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor], flat: torch.Tensor | None = None) -> torch.Tensor:
        """`inputs(A_hat X)` -> (B, R, N, K) soft assignments S (of the given parameters, else the
        module's). In training mode each call is one step and draws its dropout masks."""
        w1, w2, b2, w3, b3 = self.layers(flat)
        b, r, c, h = w1.shape
        n = inputs[0].shape[-2]
        # First layer of an image's R GNNs: one matmul against their weights side by side, (B, N, R*H).
        x = _ELU.apply(_FirstLayer.apply(*inputs, w1.permute(0, 2, 1, 3).reshape(b, c, r * h)))
        # Second layer, (B*R, N, M): one batched matmul when each image has one GNN; else per image,
        # where restart r's (N, H) block of the first layer's output is a strided matrix (no copy).
        if r == 1:
            x = torch.baddbmm(b2.flatten(0, 1), x, w2.flatten(0, 1))
        else:
            x = [torch.baddbmm(b2[i], xi.view(n, r, h).transpose(0, 1), w2[i]) for i, xi in enumerate(x.unbind(0))]
            x = x[0] if b == 1 else torch.cat(x)
        x = _ELU.apply(x)
        if self.training and self.dropout > 0:
            x = x * self._masks(x.shape[1:]).to(x.dtype)
            self.step += 1
        logits = torch.baddbmm(b3.flatten(0, 1), x, w3.flatten(0, 1))  # (B*R, N, K)
        return torch.softmax(logits, dim=-1).view(b, r, n, -1)

    def _masks(self, shape) -> torch.Tensor:
        """(B*R, M, N) dropout scales (0 or 1/(1-p)): one draw of 16-bit integers per image."""
        count = self.restarts * math.prod(shape)
        masks = []
        for seed in self.seeds:
            self.generator.manual_seed(stream_seed(seed, "dropout", self.step))
            bits = torch.empty((count + 3) // 4, dtype=torch.int64, device=self.device).random_(-2**63, None, generator=self.generator)  # all 64 bits
            masks.append(bits.view(torch.int16)[:count] >= self.keep_from)
        return torch.stack(masks).view(-1, *shape).float().mul_(1 / (1 - self.dropout))


class _FirstLayer(torch.autograd.Function):
    """X~ W for the constant input X~ (B, N, C + 1): the weight's gradient X~^T dZ reads the
    transpose stored by `GNNBatch.inputs`, a contiguous matrix, where autograd would read X~
    transposed in place (1.7x slower on CPU at N = 1225, the largest matmul of a step)."""

    @staticmethod
    def forward(ctx, x, x_t, weight):
        ctx.save_for_backward(x_t)
        return x @ weight

    @staticmethod
    def backward(ctx, grad):
        x_t, = ctx.saved_tensors
        return None, None, x_t @ grad


class _ELU(torch.autograd.Function):
    """ELU as exp(min(x, 0)) - 1 + max(x, 0), in place: torch's CPU ELU computes expm1 one element
    at a time, 6x slower than its vectorised exp (0.29 against 0.05 ms at N = 256, R = 4: the
    largest part of a step's forward); the two differ by under 1e-7. Backward reads the output
    only, as torch's in-place ELU does."""

    @staticmethod
    def forward(ctx, x):
        positive = torch.relu(x)
        out = x.clamp_(max=0).exp_().sub_(1).add_(positive)
        ctx.mark_dirty(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        out, = ctx.saved_tensors
        return torch.ops.aten.elu_backward(grad, 1.0, 1.0, 1.0, True, out)


class _Layers(torch.autograd.Function):
    """Views of the layers in the flat parameters. Backward writes their gradients into one flat
    gradient in one go (autograd would zero-fill and add a full-size buffer per view)."""

    @staticmethod
    def forward(ctx, flat, offsets, shapes):
        ctx.size = flat.shape[-1] - offsets[-1]
        return tuple(flat[..., a:z].unflatten(-1, shape) for a, z, shape in zip(offsets, offsets[1:], shapes))

    @staticmethod
    def backward(ctx, *grads):
        lead = grads[0].shape[:2]
        pad = grads[0].new_zeros(*lead, ctx.size)
        return torch.cat([g.reshape(*lead, -1) for g in grads] + [pad], dim=-1), None, None
