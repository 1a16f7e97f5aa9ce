"""Stage 3c: DeepCut itself. Features -> graph -> a fresh GNN per image trained on the clustering
loss -> hard labels on the patch grid (0 = background, contiguous).

Differences from the original code, on purpose:
  * the prediction is an eval-mode forward (no dropout) after the last step; the original took
    the softmax of the last training pass, which depends on that step's dropout mask;
  * each GNN is initialised from a seed derived from (run seed, image id, restart), so results do
    not depend on image order, batch composition or device;
  * optional restarts, combined by the lowest loss or, for a foreground/background split only
    (N-cut, K = 2), by a foreground majority vote; and a stopping rule; off in the paper recipe;
  * gnn.init=shared starts every image from one initialisation (the original loads one saved
    initialisation for all images), drawn from the run seed, so results still do not depend on
    image order or batching;
  * a collection mode: one GNN trained on the graphs of several images at once (one loss summed
    over the graphs, each graph its own block), so a cluster id names the same cluster in every
    image of the collection.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from deepcut.gnn import GNNBatch, degrees, propagate
from deepcut.graph import AFFINITIES, affinity, node_features, sparse_knn_affinity
from deepcut.losses import cc_loss, ncut_loss
from deepcut.masks import BACKGROUND_RULES, background_of, border_counts, relabel_background_first
from deepcut.validate import ConfigError


def derive_seed(*parts) -> int:
    """A 31-bit seed from any parts (run seed, image id, restart): order- and batch-independent."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little") >> 1


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


# The clustering objectives: (S, W, degrees, ortho_weight) -> one loss per graph (losses.py).
OBJECTIVES = {
    "ncut": ncut_loss,                                                  # paper eq. 3-4
    "cc": lambda s, w, degree, ortho_weight: cc_loss(s, w),             # paper eq. 8
}


def objective(name: str):
    if name not in OBJECTIVES:
        raise ValueError(f"loss.name={name!r}: use one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


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


@dataclass
class DeepCut:
    """The method: `DeepCut(...)(features, grid, seed=...)` -> (h, w) labels, 0 = background.

    mode 'single': one clustering into `k` clusters (K_max for CC).
    mode 'parts':  two stages: foreground/background with K=2, then `k` parts inside the
                   foreground only, on the foreground's own sub-graph; with split_background the
                   background is split into `background_k` parts too: its largest part stays 0 and
                   the others follow the foreground parts, so then every label > 0 is a part, not
                   necessarily foreground.
    background: which clusters are background (masks.background_clusters): "border", the one most on
                the image border (the paper's reading), or "frame", every cluster on it as often as
                the grid's cells; with the frame rule an N-cut of any K is a foreground/background
                split, and its restarts are voted.
    Labels are contiguous per image, except in collection mode (collection_size > 0, see
    `collection`), where they are the collection's; the foreground mask of every method is labels > 0.
    seed: the run seed, which the shared initialisation (gnn.init=shared) is drawn from.
    """
    loss: str = "ncut"
    k: int = 2
    ortho_weight: float = 1.0
    mode: str = "single"
    background: str = "border"  # which clusters are background (masks.background_clusters): border | frame
    split_background: bool = False
    background_k: int = 2
    collection_size: int = 0    # images whose graphs one GNN trains on together; 0: each image alone
    seed: int = 0
    graph: Graph = field(default_factory=Graph)
    gnn: GNN = field(default_factory=GNN)
    optimisation: Optimisation = field(default_factory=Optimisation)

    def __post_init__(self):
        for name, kind in (("graph", Graph), ("gnn", GNN), ("optimisation", Optimisation)):
            if isinstance(getattr(self, name), dict):
                setattr(self, name, kind(**getattr(self, name)))
        objective(self.loss)  # an unknown loss fails here, by its name
        if self.mode not in ("single", "parts"):
            raise ValueError(f"mode={self.mode!r}: use 'single' or 'parts'")
        combine = self.optimisation.combine
        if combine not in ("auto", "best", "vote"):
            raise ConfigError(f"optimizer.combine={combine!r}: use auto, best or vote")
        if self.background not in BACKGROUND_RULES:
            raise ConfigError(f"mode.background={self.background!r}: use one of {', '.join(BACKGROUND_RULES)}")
        if combine == "vote" and not self._splits(self._first_k):
            raise ConfigError(
                f"optimizer.combine=vote cannot be honoured with loss={self.loss}, loss.k={self.k}, mode={self.mode}, "
                f"mode.background={self.background}: the vote merges the restarts into one foreground/background "
                "map, which keeps only an N-cut foreground/background split (K = 2, or any K with "
                "mode.background=frame) intact and would destroy these clusters. Use combine=best (the "
                "lowest-loss restart) or auto (the vote for such a split, best otherwise).")
        if self.gnn.init not in ("per_image", "shared"):
            raise ConfigError(f"gnn.init={self.gnn.init!r}: use per_image or shared")
        if not isinstance(self.collection_size, int) or self.collection_size < 0:
            raise ConfigError(f"mode.collection_size={self.collection_size!r}: a whole number of images >= 0 (0: each image alone)")
        if self.collection_size and self.split_background:
            raise ConfigError("mode.split_background=true with mode.collection_size > 0: the collection mode splits "
                              "the foregrounds only; set one of them off")

    @property
    def _first_k(self) -> int:
        return 2 if self.mode == "parts" else self.k

    @property
    def collects(self) -> bool:
        """Collection mode: the Segmenter hands `collection` all the images of a collection at once."""
        return self.collection_size > 0

    def _splits(self, k: int) -> bool:
        """Whether a K-cluster N-cut is read as a foreground/background split: K = 2, or any K whose
        clusters the frame rule sorts into background and foreground."""
        return self.loss == "ncut" and (k == 2 or self.background == "frame")

    def _votes(self, k: int) -> bool:
        """Whether restarts are combined by the foreground vote: only for a foreground/background split."""
        combine = self.optimisation.combine
        return combine == "vote" or (combine == "auto" and self._splits(k))

    def _init_seeds(self, n: int) -> list[int] | None:
        return [derive_seed(self.seed, "init")] * n if self.gnn.init == "shared" else None

    def __call__(self, features: torch.Tensor, grid: tuple[int, int], *, seed: int = 0) -> torch.Tensor:
        return self.batch(features[None], grid, [seed])[0]

    def batch(self, features: torch.Tensor, grid: tuple[int, int], seeds: list[int], soft: bool = False) -> list:
        """(B, N, C) features of B images on the same (h, w) grid -> B label maps (h, w), or with
        soft=True B pairs (labels, soft assignment (C, h, w)) whose channel i is the probability of
        label i: with combine=best the chosen restart's eval-mode S; with combine=vote two channels,
        1 = the restarts' mean foreground probability (1 - that of each one's background cluster),
        0 = its complement; in mode parts the second stage's S on the foreground (and, with
        split_background, on the background), probability 1 on label 0 elsewhere. Clusters left
        without a patch get the channels after the labels."""
        out = []
        for b, (labels, channels) in enumerate(self._first_stage(features, grid, seeds)):
            if self.mode == "parts":
                labels, channels = self._split(features[b], labels, seeds[b])
            out.append((labels.view(grid), channels.view(-1, *grid)) if soft else labels.view(grid))
        return out

    def _first_stage(self, features: torch.Tensor, grid: tuple[int, int], seeds: list[int]) -> list:
        """(B, N, C) -> per image (N,) labels and (C, N) soft assignment of the single clustering
        (mode single) or the foreground/background stage (mode parts), restarts combined."""
        result = self._fit(features, seeds, self._first_k)
        out = []
        for b in range(len(seeds)):
            if self._votes(self._first_k):
                out.append(vote(result.soft[b], grid, self.background))
            else:  # the restart with the lowest (eval-mode) loss
                r = result.losses[b].argmin()
                labels = relabel_background_first(result.ids[b, r].view(grid), self.background).flatten()
                out.append((labels, in_label_order(result.soft[b, r].T, result.ids[b, r], labels)))
        return out

    def collection(self, items: list[tuple[torch.Tensor, tuple[int, int]]], seeds: list[int]) -> list[torch.Tensor]:
        """Collection mode: [(features (N_i, C), grid_i)] of images of any grid sizes -> their
        (h_i, w_i) labels from one GNN trained on all their graphs together (shared parameters, one
        loss summed over the graphs). Mode single: that GNN clusters every node; 0 = the background
        clusters by the background rule on all the collection's grid borders together (a
        foreground/background split: each image's restarts voted). Mode
        parts: each image's foreground comes from its own first stage, then one GNN splits all the
        foregrounds' sub-graphs into k parts. Cluster ids are numbered by decreasing size over the
        collection, so an id names the same cluster in every image (an image may lack some ids).
        The GNN's randomness comes from the set of seeds and the images are trained in seed order,
        so the order of the items changes nothing."""
        order = sorted(range(len(items)), key=lambda i: seeds[i])
        seed = derive_seed("collection", *sorted(seeds))
        regions = [torch.arange(f.shape[0], device=f.device) for f, _ in items]
        if self.mode == "parts":
            by_grid: dict[tuple, list[int]] = {}
            for i, (_, grid) in enumerate(items):
                by_grid.setdefault(tuple(grid), []).append(i)
            for grid, idx in by_grid.items():
                stage1 = self._first_stage(torch.stack([items[i][0] for i in idx]), grid, [seeds[i] for i in idx])
                for i, (labels, _) in zip(idx, stage1):
                    regions[i] = (labels > 0).nonzero().squeeze(1)
        labels = [torch.zeros(f.shape[0], dtype=torch.long, device=f.device) for f, _ in items]
        used = [i for i in order if len(regions[i])]
        k = self.k
        if not used:
            return [lab.view(grid) for lab, (_, grid) in zip(labels, items)]
        if self.mode == "parts" and sum(len(regions[i]) for i in used) <= k:  # too few nodes to split: one part
            for i in used:
                labels[i][regions[i]] = 1
            return [lab.view(grid) for lab, (_, grid) in zip(labels, items)]
        graphs = [build_graph(items[i][0][regions[i]][None], self.graph, self.loss) for i in used]
        result = fit([g[0] for g in graphs], torch.cat([g[1] for g in graphs], dim=1), [g[2] for g in graphs], [seed],
                     loss=self.loss, k=k, ortho_weight=self.ortho_weight, gnn=self.gnn, opt=self.optimisation,
                     init_seeds=self._init_seeds(1))
        sizes = [len(regions[i]) for i in used]
        if self.mode == "single" and self._votes(k):  # a foreground/background split: each image's vote
            for i, soft in zip(used, result.soft[0].split(sizes, dim=1)):
                labels[i] = vote(soft, items[i][1], self.background)[0]
            return [lab.view(grid) for lab, (_, grid) in zip(labels, items)]
        ids = result.ids[0, result.losses[0].argmin()]
        size = torch.bincount(ids, minlength=k)
        rank = torch.argsort(size, descending=True, stable=True)
        label_of = torch.zeros_like(rank)  # empty clusters rank last: the labels found are contiguous
        if self.mode == "single":  # background (0) by the rule on the whole collection's border
            border = sum(border_counts(part.view(items[i][1]), k) for i, part in zip(used, ids.split(sizes)))
            rest = rank[~background_of(border, size, self.background)[rank]]
            label_of[rest] = torch.arange(1, len(rest) + 1, device=rank.device)
        else:
            label_of[rank] = torch.arange(1, k + 1, device=rank.device)
        for i, part in zip(used, ids.split(sizes)):
            labels[i][regions[i]] = label_of[part]
        return [lab.view(grid) for lab, (_, grid) in zip(labels, items)]

    def _fit(self, features: torch.Tensor, seeds: list[int], k: int) -> Fit:
        b, n, _ = features.shape
        if self.graph.knn is not None and n > self.graph.dense_max_n and b > 1:  # sparse graphs: one image at a time
            fits = [self._fit(features[i:i + 1], [seeds[i]], k) for i in range(b)]
            return Fit(*(torch.cat([getattr(f, name) for f in fits]) for name in ("soft", "losses", "steps")))
        w, ax, degree = build_graph(features, self.graph, self.loss)
        return fit(w, ax, degree, seeds, loss=self.loss, k=k, ortho_weight=self.ortho_weight, gnn=self.gnn,
                   opt=self.optimisation, init_seeds=self._init_seeds(b))

    def _split(self, features: torch.Tensor, stage1: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Second stage: cluster a region's nodes on their own sub-graph. (N,) stage-1 labels ->
        (N,) labels and their (C, N) soft assignment."""
        n = len(stage1)
        parts = torch.zeros_like(stage1)
        channels = self.k + 1 + (self.background_k - 1 if self.split_background else 0)
        probs = torch.zeros(channels, n, device=features.device)
        probs[0] = 1.0  # background without a second stage
        regions = [(stage1 > 0, self.k, 1, "fg")]
        if self.split_background:
            regions.append((stage1 == 0, self.background_k, self.k + 1, "bg"))
        for inside, k, first, tag in regions:
            idx = inside.nonzero().squeeze(1)
            if len(idx) <= k:  # too few nodes to split: one part
                part = torch.full_like(idx, first if tag == "fg" else 0)
                parts[idx], probs[:, idx] = part, 0.0
                probs[part, idx] = 1.0
                continue
            result = self._fit(features[idx][None], [derive_seed(seed, tag)], k)
            best = result.losses[0].argmin()
            cluster = result.ids[0, best]
            # Parts numbered by decreasing size; the background's largest part stays background (0).
            order = torch.argsort(torch.bincount(cluster, minlength=k), descending=True, stable=True)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(k, device=order.device)
            label = rank + first if tag == "fg" else torch.where(rank == 0, 0, rank + first - 1)  # cluster -> label
            parts[idx] = label[cluster]
            probs[:, idx] = 0.0
            probs[label[:, None], idx] = result.soft[0, best].T
        # Empty parts leave gaps: renumber contiguously, keeping 0 for the background.
        values = torch.unique(torch.cat([torch.zeros(1, dtype=parts.dtype, device=parts.device), parts]))
        labels = torch.searchsorted(values, parts)
        return labels, in_label_order(probs, parts, labels)


def vote(soft: torch.Tensor, grid: tuple[int, int], rule: str = "border") -> tuple[torch.Tensor, torch.Tensor]:
    """(R, N, K) eval-mode soft assignments of an image's restarts -> (N,) foreground-majority labels
    and their (2, N) soft assignment. Each restart's foreground is its non-background clusters (by
    the background `rule`); a patch is foreground for most restarts; channel 1 is the restarts' mean
    foreground probability (1 - that of each one's background clusters), channel 0 its complement."""
    ids = soft.argmax(dim=-1)
    restarts = [relabel_background_first(i.view(grid), rule).flatten() for i in ids]
    labels = (torch.stack([lab > 0 for lab in restarts]).float().mean(dim=0) > 0.5).long()
    clusters = torch.zeros(soft.shape[0], soft.shape[-1], dtype=soft.dtype, device=soft.device)
    for r, (i, lab) in enumerate(zip(ids, restarts)):
        clusters[r, i[lab == 0]] = 1.0
    background = (soft * clusters[:, None]).sum(-1)
    foreground = 1 - background.mean(dim=0)
    return labels, torch.stack([1 - foreground, foreground])


def in_label_order(probs: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(C, N) probabilities of cluster ids -> channel i = label i, for (N,) ids and their (N,)
    labels: a renumbering of the ids present, where several ids may share a label (the frame
    rule's background clusters all become 0), their probabilities then summed. Absent ids follow,
    in id order."""
    label_of = torch.full((probs.shape[0],), -1, dtype=torch.long, device=probs.device)
    label_of[ids] = labels
    absent = label_of < 0
    first = int(labels.max()) + 1
    label_of[absent] = torch.arange(first, first + int(absent.sum()), device=probs.device)
    return probs.new_zeros(first + int(absent.sum()), probs.shape[1]).index_add_(0, label_of, probs)
