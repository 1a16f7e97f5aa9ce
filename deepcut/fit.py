"""Stage 3c: DeepCut's fit loop. Features -> graph (W, degrees, A_hat X) -> R fresh GNNs per image
trained together on the clustering loss -> their eval-mode soft assignments S and losses. The
method around it (restarts combined, labels, parts, collections) is deepcut/methods/deepcut.py.

Differences from the original code, on purpose:
  * the prediction is an eval-mode forward (no dropout) after the last step; the original took
    the softmax of the last training pass, which depends on that step's dropout mask;
  * each GNN is initialised from a seed derived from (run seed, image id, restart), so results do
    not depend on image order, batch composition or device;
  * an optional stopping rule (optimizer.tol), off in the paper recipe.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from deepcut.errors import ConfigError
from deepcut.gnn import GNNBatch, degrees, propagate
from deepcut.graph import AFFINITIES, affinity, cosegmentation_affinity, joint_affinity, node_features, sparse_knn_affinity
from deepcut.losses import LOSSES


@dataclass
class Optimisation:
    steps: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.01  # torch AdamW's default, as in the original
    restarts: int = 1
    combine: str = "auto"       # over restarts: "best" (lowest loss), "vote" (foreground majority: N-cut
                                # K = 2 only) or "auto" (vote for N-cut K = 2, best otherwise)
    tol: float | None = None    # stop a GNN once its loss improved by < tol (relative) ...
    patience: int = 10          # ... for this many consecutive steps


@dataclass
class Graph:
    affinity: str | None = None  # the formula of W (graph.py): "ncut" (eq. 5-6), "cc" (eq. 7); None: the loss's
    alpha: float = 3.0          # CC's shift of F F^T by max / alpha
    l2: bool = False
    power: float = 1.0
    knn: int | None = None
    dense_max_n: int = 5000     # with knn, larger graphs are built and trained sparse


@dataclass
class GNN:
    hidden: int = 64
    mlp_hidden: int = 32
    dropout: float = 0.25
    init: str = "per_image"     # "per_image": each image's GNN from its own seed; "shared": all from one




def objective(name: str):
    """The loss of that name (deepcut.losses.LOSSES)."""
    if name not in LOSSES:
        raise ConfigError(f"loss.name={name!r}: use one of {', '.join(LOSSES)}")
    return LOSSES[name]


def build_graph(features: torch.Tensor, graph: Graph = Graph(), loss: str = "ncut") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, N, C) features -> W, the propagated features A_hat X (B, N, C) and W's degrees (B, N).
    W is dense (B, N, N), or one image's sparse (N, N) kNN graph above graph.dense_max_n nodes;
    its formula is graph.affinity, or the loss's own. The graph is fixed while the GNNs train, so
    all of this is computed once."""
    name = graph.affinity or loss
    if name not in AFFINITIES:
        raise ValueError(f"graph.affinity={name!r}: use one of {', '.join(AFFINITIES)} (null: the loss's own)")
    formula = AFFINITIES[name]
    b, n, _ = features.shape
    if graph.knn is not None and n > graph.dense_max_n:
        if b > 1:
            raise ValueError("sparse graphs are built one image at a time (no batched sparse matmul)")
        w = sparse_knn_affinity(features[0], graph.knn, formula, graph.alpha, graph.l2, graph.power)
        degree = degrees(w)
        return w, propagate(w, node_features(features[0], graph.l2), degree)[None], degree.view(b, n)
    # One image at a time: its W (6 MB at N = 1225) is still in cache when it is propagated; a
    # batch's (48 MB for 8 images) would come back from memory.
    # The node features once (L2-normalised if asked), for the affinity and the propagation alike.
    w, x = features.new_empty(b, n, n), node_features(features, graph.l2)
    ax, degree = torch.empty_like(x), features.new_empty(b, n)
    for i in range(b):
        affinity(x[i], formula, graph.alpha, l2=False, power=graph.power, knn=graph.knn, out=w[i])  # x: already normalised
        degree[i] = degrees(w[i])
        ax[i] = propagate(w[i], x[i], degree[i])
    return w, ax, degree


def build_cosegmentation_graph(features: list[torch.Tensor], graph: Graph = Graph(), loss: str = "ncut",
                               cross_knn: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (N_g, C) node features of G images -> one sparse graph over all their nodes (the images'
    own affinities plus edges between images: graph.cosegmentation_affinity), its A_hat X
    (1, N, C) and degrees (1, N), as `build_graph` gives for one image."""
    name = graph.affinity or loss
    w = cosegmentation_affinity(features, cross_knn, AFFINITIES[name], graph.alpha, graph.l2, graph.power)
    degree = degrees(w)
    return w, propagate(w, node_features(torch.cat(features), graph.l2), degree)[None], degree[None]


def build_joint_graph(features: list[torch.Tensor], cells: list[torch.Tensor], graph: Graph = Graph(), loss: str = "ncut",
                      knn: int = 20, spatial_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (N_g, C) node features of G images and their (N_g, 2) grid cells -> one sparse graph for
    one loss over all their nodes (graph.joint_affinity), its A_hat X (1, N, C) and degrees (1, N)."""
    name = graph.affinity or loss
    w = joint_affinity(features, cells, knn, AFFINITIES[name], graph.alpha, graph.l2, graph.power, spatial_weight)
    degree = degrees(w)
    return w, propagate(w, node_features(torch.cat(features), graph.l2), degree)[None], degree[None]


@dataclass
class Fit:
    """What `fit` returns for B images x R restarts: the eval-mode soft assignments S (B, R, N, K),
    their losses (B, R) and the optimisation steps each GNN took (B, R) (fewer when it stopped)."""
    soft: torch.Tensor
    losses: torch.Tensor
    steps: torch.Tensor

    @property
    def ids(self) -> torch.Tensor:
        """(B, R, N) hard cluster ids (not yet relabelled)."""
        return self.soft.argmax(dim=-1)


def fit(w: torch.Tensor, ax: torch.Tensor, degree: torch.Tensor, seeds: list[int], *, loss: str = "ncut", k: int = 2,
        ortho_weight: float = 1.0, gnn: GNN = GNN(), opt: Optimisation = Optimisation(),
        init_seeds: list[int] | None = None) -> Fit:
    """Train R = opt.restarts GNNs per image on the graph of `build_graph`, all B*R as one batch;
    image b's GNNs draw their randomness from seeds[b] only. The prediction is an eval-mode forward
    (no dropout) after a GNN's last step. init_seeds: where image b's initialisation comes from
    (default: seeds[b]; one value for all = a shared initialisation).

    A collection (one GNN over G graphs, B = 1): ax (1, N_1 + ... + N_G, C) holds the graphs' nodes
    one after another, w and degree are lists of each graph's W (1, N_g, N_g) (or sparse (N_g, N_g))
    and degrees (1, N_g); the loss is the sum of the graphs' losses, each on its own block of S, so
    no dense union of all nodes is ever built.

    With the stopping rule (opt.tol), a GNN stops once its loss has improved by less than tol
    (relative) for `patience` consecutive steps; its parameters are kept from then on, while the
    batch trains on without a host synchronisation per step (all done: checked every patience steps)."""
    if k < 2:
        raise ValueError(f"loss.k={k}: DeepCut needs at least 2 clusters")
    loss_of = objective(loss)
    b, n, c = ax.shape
    r = opt.restarts
    if isinstance(w, list):  # a collection: a block per graph
        sizes = [int(d.shape[-1]) for d in degree]
        blocks = [(wg if wg.is_sparse else wg[:, None], dg.view(1, 1, -1)) for wg, dg in zip(w, degree)]

        def losses(s: torch.Tensor) -> torch.Tensor:  # (1, R, sum N_g, K) -> (1, R)
            return sum(loss_of(sg, wg, dg, ortho_weight) for sg, (wg, dg) in zip(s.split(sizes, dim=-2), blocks))
    else:
        shared = w if w.is_sparse else w[:, None]  # (B, 1, N, N): one W for an image's R restarts, no copies
        degree = degree.view(b, 1, n)

        def losses(s: torch.Tensor) -> torch.Tensor:  # (B, R, N, K) -> (B, R)
            return loss_of(s, shared, degree, ortho_weight)

    model = GNNBatch(seeds, r, c, k, gnn.hidden, gnn.mlp_hidden, gnn.dropout, device=ax.device, init_seeds=init_seeds)
    inputs = model.inputs(ax)
    optimiser = torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay, fused=True)
    steps = torch.full((b, r), opt.steps, device=ax.device)
    if opt.tol is not None:
        best = torch.full((b, r), float("inf"), device=ax.device)
        stale = torch.zeros((b, r), dtype=torch.long, device=ax.device)
        done = torch.zeros((b, r), dtype=torch.bool, device=ax.device)
        kept = model.flat.detach().clone()  # the parameters of each GNN as it stopped
    model.train()
    for step in range(opt.steps):
        train_losses = losses(model(inputs))
        optimiser.zero_grad(set_to_none=True)
        train_losses.sum().backward()  # GNNs share no parameters: the sum's gradient is each one's own
        optimiser.step()
        if opt.tol is not None:
            current = train_losses.detach()
            # The first step always improves on "nothing yet" (inf - tol * inf would be NaN).
            improved = torch.isinf(best) | (current < best - opt.tol * best.abs())
            best = torch.minimum(best, current)
            stale = torch.where(improved, 0, stale + 1)
            stopping = (stale >= opt.patience) & ~done
            kept = torch.where(stopping[..., None], model.flat.detach(), kept)
            steps = torch.where(stopping, step + 1, steps)
            done |= stopping
            if (step + 1) % opt.patience == 0 and bool(done.all()):
                break
    model.eval()
    with torch.no_grad():
        params = None if opt.tol is None else torch.where(done[..., None], kept, model.flat)
        if opt.tol is not None:
            steps = torch.where(done, steps, step + 1)
        s = model(inputs, params)
        final = losses(s)
    if not torch.isfinite(final).all():  # NaN/Inf features or a broken graph: fail, don't guess
        raise FloatingPointError(f"non-finite {loss} loss")
    return Fit(s, final, steps)

