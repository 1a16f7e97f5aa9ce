"""Stage 3c: DeepCut itself. Features -> graph -> a fresh GNN per image trained on the clustering
loss -> hard labels on the patch grid (0 = background, contiguous).

Differences from the original code, on purpose:
  * the prediction is an eval-mode forward (no dropout) after the last step; the original took
    the softmax of the last training pass, which depends on that step's dropout mask;
  * each GNN is initialised from a seed derived from (run seed, image id, restart), so results do
    not depend on image order, batch composition or device;
  * optional restarts, combined by the lowest loss or by a foreground majority vote (the vote
    yields a binary foreground/background map), and a stopping rule; off in the paper recipe.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from deepcut.gnn import GNNBatch, degrees, propagate
from deepcut.graph import affinity, prepare_features, sparse_knn_affinity
from deepcut.losses import cc_loss, ncut_loss
from deepcut.masks import relabel_background_first


def derive_seed(*parts) -> int:
    """A 31-bit seed from any parts (run seed, image id, restart): order- and batch-independent."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little") >> 1


@dataclass
class Optimisation:
    steps: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.01  # torch AdamW's default, as in the original
    restarts: int = 1
    combine: str = "best"       # over restarts: "best" (lowest loss) or "vote" (foreground majority)
    tol: float | None = None    # stop a GNN once its loss improved by < tol (relative) ...
    patience: int = 10          # ... for this many consecutive steps


@dataclass
class Graph:
    center: bool = False
    l2: bool = False
    power: float = 1.0
    knn: int | None = None
    dense_max_n: int = 5000     # with knn, larger graphs are built and trained sparse


@dataclass
class GNN:
    hidden: int = 64
    mlp_hidden: int = 32
    dropout: float = 0.25


def cluster(features: torch.Tensor, seeds: list[int], *, loss: str = "ncut", k: int = 2, alpha: float = 3.0,
            ortho_weight: float = 1.0, graph: Graph = Graph(), gnn: GNN = GNN(), opt: Optimisation = Optimisation()) -> torch.Tensor:
    """(B, N, C) features of B images with equal N -> (B, N) hard cluster ids (not yet relabelled).

    All B x restarts GNNs train as one batch; GNN (b, r) has seed derive_seed(seeds[b], r).
    """
    if k < 2:
        raise ValueError(f"loss.k={k}: DeepCut needs at least 2 clusters")
    b, n, _ = features.shape
    r = opt.restarts
    sparse = graph.knn is not None and n > graph.dense_max_n
    if sparse and b > 1:  # sparse graphs train one image at a time (no batched sparse matmul)
        out = [cluster(features[i:i + 1], [seeds[i]], loss=loss, k=k, alpha=alpha, ortho_weight=ortho_weight,
                       graph=graph, gnn=gnn, opt=opt) for i in range(b)]
        return torch.cat([ids for ids, _ in out]), torch.cat([losses for _, losses in out])
    if sparse:
        w = sparse_knn_affinity(features[0], graph.knn, loss, alpha, graph.center, graph.l2, graph.power)
        shared = w  # (N, N), shared by the R restarts
    else:
        w = affinity(features, loss, alpha, graph.center, graph.l2, graph.power, graph.knn)  # (B, N, N)
        shared = w[:, None]
    x = prepare_features(features, graph.center, graph.l2)
    ax = propagate(w, x)  # fixed during training: computed once
    degree = degrees(w).view(-1, 1, n)  # (B, 1, N)

    def objective(s: torch.Tensor) -> torch.Tensor:  # (B*R, N, K) -> (B, R)
        s = s.view(b, r, n, -1)
        return ncut_loss(s, shared, degree, ortho_weight) if loss == "ncut" else cc_loss(s, shared)

    model = GNNBatch([derive_seed(s, i) for s in seeds for i in range(r)], x.shape[-1], k,
                     gnn.hidden, gnn.mlp_hidden, gnn.dropout, device=features.device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay, fused=True)
    final = torch.zeros(b * r, n, k, device=features.device)
    done = torch.zeros(b * r, dtype=torch.bool, device=features.device)
    best = torch.full((b * r,), float("inf"), device=features.device)
    stale = torch.zeros(b * r, dtype=torch.long, device=features.device)
    for _ in range(opt.steps):
        model.train()
        losses = objective(model(ax)).flatten()
        optimiser.zero_grad(set_to_none=True)
        losses.sum().backward()  # GNNs share no parameters: the sum's gradient is each one's own
        optimiser.step()
        if opt.tol is not None:
            improved = losses.detach() < best - opt.tol * best.abs()
            best = torch.minimum(best, losses.detach())
            stale = torch.where(improved, 0, stale + 1)
            stopping = (stale >= opt.patience) & ~done
            if stopping.any():
                final[stopping] = _predict(model, ax)[stopping]
                done |= stopping
            if done.all():
                break
    if not done.all():
        final[~done] = _predict(model, ax)[~done]
    with torch.no_grad():
        losses = objective(final)
    if not torch.isfinite(losses).all():  # NaN/Inf features or a broken graph: fail, don't guess
        raise FloatingPointError(f"non-finite {loss} loss")
    return final.view(b, r, n, k).argmax(dim=-1), losses


@torch.no_grad()
def _predict(model: GNNBatch, ax: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(ax)


@dataclass
class DeepCut:
    """The method: `DeepCut(...)(features, grid, seed=...)` -> (h, w) labels, 0 = background.

    mode 'single': one clustering into `k` clusters (K_max for CC).
    mode 'parts':  two stages: foreground/background with K=2, then `k` parts inside the
                   foreground only, on the foreground's own sub-graph; with split_background the
                   background is split into `background_k` parts too: its largest part stays 0 and
                   the others follow the foreground parts, so then every label > 0 is a part, not
                   necessarily foreground.
    Labels are always contiguous; the foreground mask of every method is labels > 0.
    """
    loss: str = "ncut"
    k: int = 2
    alpha: float = 3.0
    ortho_weight: float = 1.0
    mode: str = "single"
    split_background: bool = False
    background_k: int = 2
    graph: Graph = field(default_factory=Graph)
    gnn: GNN = field(default_factory=GNN)
    optimisation: Optimisation = field(default_factory=Optimisation)

    def __post_init__(self):
        for name, kind in (("graph", Graph), ("gnn", GNN), ("optimisation", Optimisation)):
            if isinstance(getattr(self, name), dict):
                setattr(self, name, kind(**getattr(self, name)))
        if self.mode not in ("single", "parts"):
            raise ValueError(f"mode={self.mode!r}: use 'single' or 'parts'")
        if self.optimisation.combine not in ("best", "vote"):
            raise ValueError(f"optimizer.combine={self.optimisation.combine!r}: use 'best' or 'vote'")

    def __call__(self, features: torch.Tensor, grid: tuple[int, int], *, seed: int = 0) -> torch.Tensor:
        return self.batch(features[None], grid, [seed])[0]

    def batch(self, features: torch.Tensor, grid: tuple[int, int], seeds: list[int]) -> list[torch.Tensor]:
        """(B, N, C) features of B images on the same (h, w) grid -> B label maps."""
        first_k = 2 if self.mode == "parts" else self.k
        ids, losses = self._cluster(features, seeds, first_k)
        if self.optimisation.combine == "vote":
            # Each restart's foreground by the border rule; a patch is foreground for most of them.
            votes = torch.stack([torch.stack([relabel_background_first(i.view(grid)) > 0 for i in per_image])
                                 for per_image in ids]).float().mean(dim=1)
            labels = [(v > 0.5).long() for v in votes]
        else:  # the restart with the lowest (eval-mode) loss
            best = ids[torch.arange(len(ids)), losses.argmin(dim=1)]
            labels = [relabel_background_first(i.view(grid)) for i in best]
        if self.mode == "parts":
            labels = [self._split(features[j], labels[j], seeds[j]) for j in range(len(labels))]
        return labels

    def _cluster(self, features, seeds, k):
        return cluster(features, seeds, loss=self.loss, k=k, alpha=self.alpha, ortho_weight=self.ortho_weight, graph=self.graph,
                       gnn=self.gnn, opt=self.optimisation)

    def _split(self, features: torch.Tensor, stage1: torch.Tensor, seed: int) -> torch.Tensor:
        """Second stage: cluster a region's nodes on their own sub-graph."""
        out = torch.zeros_like(stage1)
        regions = [(stage1.flatten() > 0, self.k, 1, "fg")]
        if self.split_background:
            regions.append((stage1.flatten() == 0, self.background_k, self.k + 1, "bg"))
        for inside, k, first, tag in regions:
            idx = inside.nonzero().squeeze(1)
            if len(idx) <= k:  # too few nodes to split: one part
                out.view(-1)[idx] = first if tag == "fg" else 0
                continue
            ids, losses = self._cluster(features[idx][None], [derive_seed(seed, tag)], k)
            part = ids[0, losses[0].argmin()]
            # Parts numbered by decreasing size; the background's largest part stays background (0).
            order = torch.argsort(torch.bincount(part, minlength=k), descending=True, stable=True)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(k, device=order.device)
            rank = rank[part]
            out.view(-1)[idx] = rank + first if tag == "fg" else torch.where(rank == 0, 0, rank + first - 1)
        # Empty parts leave gaps: renumber contiguously, keeping 0 for the background.
        values = torch.unique(torch.cat([torch.zeros(1, dtype=out.dtype, device=out.device), out.flatten()]))
        return torch.searchsorted(values, out)
