"""DeepCut (Aflalo et al. 2022), the method: features -> `deepcut.fit` (graph + GNNs trained on the
clustering loss) -> hard labels on the patch grid (0 = background, contiguous), with its settings'
checks and its registration. Built from the groups of its stages: graph, gnn, loss (objective),
optimizer, mode.

Beyond the paper, on purpose:
  * optional restarts, combined by the lowest loss or, for a foreground/background split
    (N-cut with K = 2, or any K read with the frame rule), by a foreground majority vote;
  * gnn.init=shared starts every image from one initialisation (the original loads one saved
    initialisation for all images), drawn from the run seed, so results still do not depend on
    image order or batching;
  * a collection mode: one GNN trained on several images at once, so a cluster id names the same
    cluster in every image of the collection: on their graphs side by side (one loss summed over
    the graphs, each its own block), or on one joint graph over all their patches (each linked to
    its nearest patches in any image and to its grid neighbours) with one loss;
  * parts on centred foreground features (mode.center_parts), so that the parts of objects that
    look different are matched by their place in the object.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from omegaconf import DictConfig, OmegaConf

from deepcut.errors import ConfigError, check_key, is_number, is_whole
from deepcut.fit import GNN, Fit, Graph, Optimisation, build_cosegmentation_graph, build_graph, build_joint_graph, fit
from deepcut.graph import AFFINITIES
from deepcut.losses import LOSSES
from deepcut.masks import BACKGROUND_ALLOWED, BACKGROUND_RULES, background_of, border_counts, relabel_background_first
from deepcut.registry import METHOD_GROUPS, register_method
from deepcut.seeds import derive_seed

MODES = ("single", "parts")
FOREGROUNDS = ("default", "k2_border")  # mode.foreground.source of parts mode
COMBINE = ("auto", "best", "vote")
COLLECTION_GRAPHS = ("blocks", "joint")  # mode.collection_graph
INITS = ("per_image", "shared")
STAGE1_BATCH = 8  # images whose stage-1 GNNs a collection trains together (the backbone's default batch)


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
    cross_knn: int = 0          # collection mode: blocks: links to the k mutual nearest nodes of the other images
                                # (0: none); joint: each node's k nearest nodes of the collection
    collection_graph: str = "blocks"  # blocks: a graph and a loss per image, one GNN | joint: one graph, one loss
    spatial_weight: float = 1.0  # joint graph: weight of the edges between grid neighbours of an image
    center_parts: bool = False  # parts mode: each image's foreground features minus their mean before the parts
    merge_to: int | None = None  # parts mode: the k parts found merged to this many by Ward's rule (None: kept)
    foreground: dict | None = None  # mode parts, stage 1: {"source": "default", "background", "graph", "gnn", "loss",
                                    # "optimizer"}: the default object recipe; None or source k2_border: the paper's K = 2 cut
    seed: int = 0
    graph: Graph = field(default_factory=Graph)
    gnn: GNN = field(default_factory=GNN)
    optimisation: Optimisation = field(default_factory=Optimisation)

    def __post_init__(self):
        for name, kind in (("graph", Graph), ("gnn", GNN), ("optimisation", Optimisation)):
            if isinstance(getattr(self, name), dict):
                setattr(self, name, kind(**getattr(self, name)))
        problems = check(OmegaConf.create(self.settings()))  # the rules run.py's validation applies
        if problems:
            raise ConfigError("\n\n".join(problems))
        fg = self.foreground
        # Stage 1 of parts mode as its own DeepCut: the object recipe, on the same seeds as a default run.
        self._objects = None if self.mode != "parts" or not fg or fg["source"] != "default" else DeepCut(
            loss=fg["loss"]["name"], k=fg["loss"]["k"], ortho_weight=fg["loss"]["ortho_weight"], background=fg["background"],
            seed=self.seed, graph=fg["graph"], gnn=fg["gnn"], optimisation=fg["optimizer"])

    def settings(self) -> dict:
        """This DeepCut's settings as the config groups of its stages hold them."""
        return {"loss": {"name": self.loss, "k": self.k, "ortho_weight": self.ortho_weight},
                "mode": {"name": self.mode, "background": self.background, "split_background": self.split_background,
                         "background_k": self.background_k, "collection_size": self.collection_size,
                         "cross_knn": self.cross_knn, "collection_graph": self.collection_graph,
                         "spatial_weight": self.spatial_weight, "center_parts": self.center_parts,
                         "merge_to": self.merge_to,
                         **({"foreground": self.foreground} if self.foreground else {})},
                "optimizer": asdict(self.optimisation), "graph": asdict(self.graph), "gnn": asdict(self.gnn)}

    @property
    def _first_k(self) -> int:
        return 2 if self.mode == "parts" else self.k

    @property
    def n_parts(self) -> int | None:
        """The parts an N-cut parts run asks each image for (labels > 0: k, and background_k - 1
        more with split_background), or None: CC's k is only an upper bound, and mode single
        makes objects, not parts."""
        if self.mode != "parts" or self.loss != "ncut":
            return None
        return (self.merge_to or self.k) + (self.background_k - 1 if self.split_background else 0)

    @property
    def collects(self) -> bool:
        """Collection mode: the Segmenter hands `collection` all the images of a collection at once."""
        return self.collection_size > 0

    def _splits(self, k: int) -> bool:
        return splits(self.loss, k, self.background)

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
        if self._objects is not None:  # parts on the default object recipe's foreground
            return self._objects._first_stage(features, grid, seeds)
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
            for grid, same in by_grid.items():
                # Stage 1 trains each image's own GNNs: a few images at a time, as a run's batches do
                # (the results do not depend on it), so 200 images' GNNs are never in memory at once.
                for start in range(0, len(same), STAGE1_BATCH):
                    idx = same[start:start + STAGE1_BATCH]
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
        nodes = [self._part_features(items[i][0][regions[i]]) for i in used]
        if self.collection_graph == "joint":
            # One graph and one loss over the collection: a part is a set of patches that resemble
            # each other across the images (kNN edges) and form regions within each (grid edges).
            cells = [torch.stack([regions[i] // items[i][1][1], regions[i] % items[i][1][1]], dim=1) for i in used]
            w, ax, degree = build_joint_graph(nodes, cells, self.graph, self.loss, self.cross_knn, self.spatial_weight)
        else:
            graphs = [build_graph(f[None], self.graph, self.loss) for f in nodes]  # the loss: a block per image
            w, ax, degree = [g[0] for g in graphs], torch.cat([g[1] for g in graphs], dim=1), [g[2] for g in graphs]
            if self.cross_knn:
                # The GNN's input A_hat X comes from one graph that also links the images' mutual nearest
                # nodes, so a part's nodes in every image are drawn together; the loss stays per image:
                # on these dense blocks joined by a few edges the cheapest cut would separate the images.
                ax = build_cosegmentation_graph(nodes, self.graph, self.loss, self.cross_knn)[1]
        result = fit(w, ax, degree, [seed], loss=self.loss, k=k, ortho_weight=self.ortho_weight, gnn=self.gnn,
                     opt=self.optimisation, init_seeds=self._init_seeds(1))
        sizes = [len(regions[i]) for i in used]
        if self.mode == "single" and self._votes(k):  # a foreground/background split: each image's vote
            for i, soft in zip(used, result.soft[0].split(sizes, dim=1)):
                labels[i] = vote(soft, items[i][1], self.background)[0]
            return [lab.view(grid) for lab, (_, grid) in zip(labels, items)]
        ids = result.ids[0, result.losses[0].argmin()]
        if self.mode == "parts" and self.merge_to:
            ids = ward_merge(torch.cat(nodes), ids, k, self.merge_to)[ids]
            k = self.merge_to
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

    def _part_features(self, features: torch.Tensor) -> torch.Tensor:
        """A region's (n, C) features as the parts stage sees them: with center_parts, minus their
        mean, so that the object's own look (its species, colour, light), shared by all its patches,
        drops out and its parts are told apart, and matched across images, by what differs within it."""
        return features - features.mean(dim=0) if self.mode == "parts" and self.center_parts and len(features) else features

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
            nodes = self._part_features(features[idx])
            result = self._fit(nodes[None], [derive_seed(seed, tag)], k)
            best = result.losses[0].argmin()
            cluster, soft = result.ids[0, best], result.soft[0, best].T
            if tag == "fg" and self.merge_to:  # over-clustered: the k parts merged, their probabilities summed
                group = ward_merge(nodes, cluster, k, self.merge_to)
                cluster, soft, k = group[cluster], soft.new_zeros(self.merge_to, len(idx)).index_add_(0, group, soft), self.merge_to
            # Parts numbered by decreasing size; the background's largest part stays background (0).
            order = torch.argsort(torch.bincount(cluster, minlength=k), descending=True, stable=True)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(k, device=order.device)
            label = rank + first if tag == "fg" else torch.where(rank == 0, 0, rank + first - 1)  # cluster -> label
            parts[idx] = label[cluster]
            probs[:, idx] = 0.0
            probs[label[:, None], idx] = soft
        # Empty parts leave gaps: renumber contiguously, keeping 0 for the background.
        values = torch.unique(torch.cat([torch.zeros(1, dtype=parts.dtype, device=parts.device), parts]))
        labels = torch.searchsorted(values, parts)
        return labels, in_label_order(probs, parts, labels)


def ward_merge(features: torch.Tensor, ids: torch.Tensor, k: int, merge_to: int) -> torch.Tensor:
    """Over-clustering merged: (N, C) features with their (N,) cluster ids in [0, k) -> (k,) the group
    in [0, merge_to) of each cluster. Ward's rule: repeatedly the two groups whose union least raises
    the features' within-group sum of squares (n_a n_b / (n_a + n_b) |mean_a - mean_b|^2); a cluster
    without nodes joins group 0."""
    found = [int(c) for c in ids.unique()]
    groups = [[c] for c in found]
    count = [int((ids == c).sum()) for c in found]
    mean = [features[ids == c].double().mean(dim=0) for c in found]
    while len(groups) > merge_to:
        _, a, b = min((count[a] * count[b] / (count[a] + count[b]) * float((mean[a] - mean[b]).square().sum()), a, b)
                      for a in range(len(groups)) for b in range(a + 1, len(groups)))
        mean[a] = (count[a] * mean[a] + count[b] * mean[b]) / (count[a] + count[b])
        count[a] += count[b]
        groups[a] += groups.pop(b)
        del count[b], mean[b]
    group = torch.zeros(k, dtype=torch.long, device=ids.device)
    for g, members in enumerate(groups):
        group[members] = g
    return group


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



def splits(loss: str, k: int, background: str) -> bool:
    """Whether a K-cluster clustering is read as a foreground/background split: an N-cut with K = 2,
    or of any K whose clusters the frame rule sorts into background and foreground."""
    return loss == "ncut" and (k == 2 or background == "frame")


def check(cfg: DictConfig) -> list[str]:
    """DeepCut's settings, the groups of its stages (loss, mode, optimizer, graph, gnn): one
    paragraph per problem. run.py's validation and DeepCut's constructor both apply these rules."""
    problems: list[str] = []
    loss, mode, opt, graph, gnn = (cfg.get(g) for g in ("loss", "mode", "optimizer", "graph", "gnn"))
    check_key(problems, loss, "loss", "name", lambda v: v in LOSSES, f"use one of {', '.join(LOSSES)}")
    check_key(problems, loss, "loss", "k", lambda v: is_whole(v) and v >= 2,
              "the number of clusters K must be a whole number >= 2")
    check_key(problems, graph, "graph", "affinity", lambda v: v is None or v in AFFINITIES,
              f"use null (the loss's own formula) or one of {', '.join(AFFINITIES)}")
    if graph is not None and (graph.get("affinity") or (loss or {}).get("name")) == "cc":  # the N-cut formula has no alpha
        check_key(problems, graph, "graph", "alpha", lambda v: is_number(v) and v > 0, "CC's affinity shift alpha must be > 0")
    check_key(problems, loss, "loss", "ortho_weight", lambda v: is_number(v) and math.isfinite(v) and v >= 0,
              "the orthogonality weight must be a finite number >= 0")
    check_key(problems, mode, "mode", "name", lambda v: v in MODES, f"use one of {', '.join(MODES)}")
    check_key(problems, mode, "mode", "background", lambda v: v in BACKGROUND_RULES, BACKGROUND_ALLOWED)
    if mode is not None and mode.get("split_background"):
        check_key(problems, mode, "mode", "background_k", lambda v: is_whole(v) and v >= 2, "must be a whole number >= 2")
    check_key(problems, mode, "mode", "collection_size", lambda v: is_whole(v) and v >= 0,
              "a whole number of images >= 0 (0: each image alone)")
    check_key(problems, mode, "mode", "cross_knn", lambda v: is_whole(v) and v >= 0,
              "a whole number of neighbours >= 0 in the collection's other images (0: no edges between images)")
    check_key(problems, mode, "mode", "collection_graph", lambda v: v in COLLECTION_GRAPHS,
              "use blocks (a graph and a loss per image, one GNN) or joint (one graph over the collection, one loss)")
    check_key(problems, mode, "mode", "spatial_weight", lambda v: is_number(v) and math.isfinite(v) and v >= 0,
              "the weight of the joint graph's edges between grid neighbours: a finite number >= 0")
    check_key(problems, mode, "mode", "center_parts", lambda v: isinstance(v, bool), "use true or false")
    if mode is not None and mode.get("merge_to") is not None:
        check_key(problems, mode, "mode", "merge_to", lambda v: is_whole(v) and v >= 1,
                  "null (keep the loss.k parts) or a whole number of parts >= 1 to merge them to")
        if mode.get("name") != "parts":
            problems.append(f"mode.merge_to={mode.merge_to} with mode={mode.get('name')}: merging applies to the parts "
                            "of mode=parts; set mode=parts or mode.merge_to=null")
        elif loss is not None and is_whole(mode.merge_to) and is_whole(loss.get("k")) and mode.merge_to >= loss.k:
            problems.append(f"mode.merge_to={mode.merge_to} with loss.k={loss.k}: merging over-clustered parts needs "
                            "loss.k > merge_to (e.g. loss.k=8 mode.merge_to=4), or mode.merge_to=null")
    if mode is not None and mode.get("collection_graph") == "joint" and not mode.get("cross_knn"):
        problems.append("mode.collection_graph=joint with mode.cross_knn=0: the joint graph links each patch to its "
                        "cross_knn nearest patches of the collection; set cross_knn >= 1 (e.g. 20)")
    foreground = (mode or {}).get("foreground")
    if foreground is not None:
        check_key(problems, foreground, "mode.foreground", "source", lambda v: v in FOREGROUNDS,
                  f"use one of {', '.join(FOREGROUNDS)}")
        if foreground.get("source") == "default":
            check_key(problems, foreground, "mode.foreground", "background", lambda v: v in BACKGROUND_RULES, BACKGROUND_ALLOWED)
            problems += [p.replace("loss.", "mode.foreground.loss.", 1).replace("optimizer.", "mode.foreground.optimizer.", 1)
                         .replace("graph.", "mode.foreground.graph.", 1).replace("gnn.", "mode.foreground.gnn.", 1)
                         for p in check(OmegaConf.create({g: foreground.get(g) for g in ("loss", "optimizer", "graph", "gnn")}))]
    if mode is not None and mode.get("collection_size") and mode.get("split_background"):
        problems.append("mode.split_background=true with mode.collection_size > 0: the collection mode splits the "
                        "foregrounds only; set one of them off")
    for key, ok, allowed in (
            ("steps", lambda v: is_whole(v) and v >= 1, "the number of optimisation steps must be >= 1"),
            ("lr", lambda v: is_number(v) and v > 0, "the learning rate must be > 0"),
            ("restarts", lambda v: is_whole(v) and v >= 1, "must be a whole number >= 1"),
            ("weight_decay", lambda v: is_number(v) and v >= 0, "must be >= 0"),
            ("patience", lambda v: is_whole(v) and v >= 1, "must be a whole number >= 1"),
            ("tol", lambda v: v is None or (is_number(v) and v >= 0), "must be null or >= 0"),
            ("combine", lambda v: v in COMBINE, f"use one of {', '.join(COMBINE)}")):
        check_key(problems, opt, "optimizer", key, ok, allowed)
    check_key(problems, graph, "graph", "power", lambda v: is_number(v) and math.isfinite(v) and v > 0,
              "the affinity exponent must be a finite number > 0")
    check_key(problems, graph, "graph", "knn", lambda v: v is None or (is_whole(v) and v >= 1),
              "must be null (dense graph) or a whole number of neighbours >= 1")
    check_key(problems, gnn, "gnn", "dropout", lambda v: is_number(v) and 0 <= v < 1, "must be in [0, 1)")
    for key in ("hidden", "mlp_hidden"):
        check_key(problems, gnn, "gnn", key, lambda v: is_whole(v) and v >= 1, "must be a whole number >= 1")
    check_key(problems, gnn, "gnn", "init", lambda v: v in INITS, f"use one of {', '.join(INITS)}")
    if not problems and None not in (loss, mode, opt) and opt.get("combine") == "vote":
        first_k = 2 if mode.name == "parts" else loss.k
        if not splits(loss.name, first_k, mode.background):
            problems.append(
                f"optimizer.combine=vote cannot be honoured with loss={loss.name}, loss.k={loss.k}, mode={mode.name}, "
                f"mode.background={mode.background}: the vote merges the restarts into one foreground/background "
                "map, which keeps only an N-cut foreground/background split (K = 2, or any K with "
                "mode.background=frame) intact and would destroy these clusters. Use combine=best (the "
                "lowest-loss restart) or auto (the vote for such a split, best otherwise).")
    return problems


def build(cfg: DictConfig) -> DeepCut:
    """DeepCut from the groups of its stages: graph, gnn, loss (objective), optimizer, mode."""
    group = lambda name: OmegaConf.to_container(cfg[name], resolve=True)  # noqa: E731
    return DeepCut(loss=cfg.loss.name, k=cfg.loss.k, ortho_weight=cfg.loss.ortho_weight,
                   mode=cfg.mode.name, background=cfg.mode.background, split_background=cfg.mode.split_background,
                   background_k=cfg.mode.background_k, collection_size=cfg.mode.collection_size,
                   cross_knn=cfg.mode.cross_knn, collection_graph=cfg.mode.collection_graph,
                   spatial_weight=cfg.mode.spatial_weight, center_parts=cfg.mode.center_parts,
                   merge_to=cfg.mode.get("merge_to"), foreground=OmegaConf.to_container(cfg.mode.get("foreground"), resolve=True)
                   if cfg.mode.get("foreground") is not None else None, seed=cfg.seed,
                   graph=group("graph"), gnn=group("gnn"), optimisation=group("optimizer"))


register_method("deepcut", groups=METHOD_GROUPS, build=build, check=check)(DeepCut)
