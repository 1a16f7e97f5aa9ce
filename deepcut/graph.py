"""Stage 2: patch features F (..., N, C) -> affinity W (..., N, N).

N-cut (paper eq. 5-6):  W = max(F F^T, 0) / max(F F^T)
CC    (paper eq. 7):    W = F F^T - max(F F^T) / alpha
(graph.affinity picks the formula, by default the loss's own.) The features arrive prepared by the
features stage (centred per image by default: backbone.center). Options beyond the paper (all off
reproduces it exactly):
  l2      L2-normalise each feature, so F F^T is a cosine similarity.
  power   raise the N-cut affinity to this power: sharpens W towards its strongest edges.
  knn     keep each node's k strongest edges (symmetrised). Above `dense_max_n` nodes the graph
          is built as a sparse tensor, chunk by chunk, so W never exists densely (N = 19k at
          stride 2 would need 1.4 GB per dense W).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def node_features(features: torch.Tensor, l2: bool = False) -> torch.Tensor:
    """The graph's node features: as given, or L2-normalised (F F^T is then a cosine similarity)."""
    return F.normalize(features, dim=-1) if l2 else features


def ncut_affinity(sim: torch.Tensor, peak: torch.Tensor, alpha: float = 3.0, power: float = 1.0) -> torch.Tensor:
    """Paper eq. 5-6: W = max(F F^T, 0) / max(F F^T), raised to `power` (1 in the paper). In place
    on the similarities `sim` (dense, or a sparse graph's edge values); `alpha` is CC's."""
    w = sim.clamp_min_(0).div_(peak.clamp_min(torch.finfo(sim.dtype).tiny))
    return w.pow_(power) if power != 1.0 else w


def cc_affinity(sim: torch.Tensor, peak: torch.Tensor, alpha: float = 3.0, power: float = 1.0) -> torch.Tensor:
    """Paper eq. 7: W = F F^T - max(F F^T) / alpha, in place; `power` is N-cut's."""
    if alpha <= 0:
        raise ValueError(f"graph.alpha={alpha} must be > 0 (paper: 3)")
    return sim.sub_(peak / alpha)


# graph.affinity: the formula of W, by default the loss's own (configs/graph/default.yaml).
AFFINITIES = {"ncut": ncut_affinity, "cc": cc_affinity}


def gram(f: torch.Tensor, out: torch.Tensor | None = None, block: int = 320) -> torch.Tensor:
    """F F^T of (..., N, C) features, into `out` if given. F F^T is symmetric, so only the row
    blocks' products on and right of the diagonal are computed and the rest is mirrored: 5/8 of the
    multiply-adds at N = 1225 (4 blocks). Each entry is still one dot product of two rows, so on CPU
    the result equals f @ f.mT bit for bit."""
    n = f.shape[-2]
    out = f.new_empty(*f.shape[:-1], n) if out is None else out
    step = -(-n // -(-n // block))  # equal blocks of at most `block` rows
    for i in range(0, n, step):
        out[..., i:i + step, i:] = f[..., i:i + step, :] @ f[..., i:, :].mT
        out[..., i:i + step, :i] = out[..., :i, i:i + step].mT
    return out


def affinity(features: torch.Tensor, formula=ncut_affinity, alpha: float = 3.0, l2: bool = False,
             power: float = 1.0, knn: int | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """(..., N, C) features -> dense (..., N, N) W by `formula` (ncut_affinity or cc_affinity),
    into `out` if given."""
    f = node_features(features, l2)
    sim = gram(f, out)
    # In place: one N x N buffer instead of three (N = 19k at stride 2: 1.4 GB each).
    w = formula(sim, sim.amax(dim=(-1, -2), keepdim=True), alpha, power)
    return keep_knn(w, knn) if knn else w  # in place too: the result is always `out`'s storage


def sparse_knn_affinity(features: torch.Tensor, k: int, formula=ncut_affinity, alpha: float = 3.0,
                        l2: bool = False, power: float = 1.0, chunk: int = 2048) -> torch.Tensor:
    """The kNN affinity of one image's (N, C) features as a sparse (N, N) tensor with the same
    values as `affinity(..., knn=k)` on the kept edges."""
    f = node_features(features, l2)
    n = f.shape[0]
    k = min(k, n)
    rows, cols, peak = [], [], None
    for start in range(0, n, chunk):
        top = (f[start:start + chunk] @ f.T).topk(k, dim=-1)
        rows.append(torch.arange(start, start + len(top.indices), device=f.device).repeat_interleave(k))
        cols.append(top.indices.flatten())
        chunk_peak = top.values[:, 0].max()  # each row's maximum is its first top-k value
        peak = chunk_peak if peak is None else torch.maximum(peak, chunk_peak)
    i, j = torch.cat(rows), torch.cat(cols)
    edges = torch.unique(torch.cat([i * n + j, j * n + i]))  # kept by either end: symmetric
    i, j = edges // n, edges % n
    values = formula(edge_similarities(f, i, j), peak, alpha, power)
    return torch.sparse_coo_tensor(torch.stack([i, j]), values, (n, n), check_invariants=False).coalesce()


def edge_similarities(f: torch.Tensor, i: torch.Tensor, j: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """(f[i] * f[j]).sum(-1), the dot products of the edges (i, j), `chunk` edges at a time: the
    same numbers, without gathering two (E, C) copies of the features (14k nodes, 20 neighbours and
    a 768-wide hypercolumn would take 4 GB; 70k nodes or log-binned features, all the memory)."""
    return torch.cat([(f[i[s:s + chunk]] * f[j[s:s + chunk]]).sum(-1) for s in range(0, len(i), chunk)]) \
        if len(i) else f.new_zeros(0)


def keep_knn(w: torch.Tensor, k: int) -> torch.Tensor:
    """Zero all but each node's k strongest edges, in place; an edge kept by either end stays (W symmetric)."""
    k = min(k, w.shape[-1])
    keep = torch.zeros_like(w, dtype=torch.bool).scatter_(-1, w.topk(k, dim=-1).indices, True)
    return w.mul_(keep | keep.transpose(-1, -2))


def cosegmentation_affinity(features: list[torch.Tensor], k: int, formula=ncut_affinity, alpha: float = 3.0,
                            l2: bool = False, power: float = 1.0, chunk: int = 1024) -> torch.Tensor:
    """One sparse (N, N) W over the nodes of G images (N = N_1 + ... + N_G, image after image):
    each image's own dense affinity as its diagonal block, plus edges between images, each node to
    its k mutual nearest neighbours among the other images' nodes (i and j are linked when each is
    among the other's k nearest), weighted by the same formula with the collection's peak
    similarity. Memory is the blocks plus N * k cross edges; the neighbour search goes `chunk`
    rows at a time. The same nodes in another image order give the same graph, permuted."""
    f = [node_features(x, l2) for x in features]
    sizes = torch.tensor([len(x) for x in f])
    offsets = torch.cumsum(sizes, 0) - sizes
    x = torch.cat(f)
    n = len(x)
    image = torch.repeat_interleave(torch.arange(len(f)), sizes).to(x.device)
    k = min(k, n - int(sizes.max()))
    peak = max(float((part @ part.T).amax()) for part in f)
    rows, cols = [], []
    if k > 0:
        for start in range(0, n, chunk):
            sim = x[start:start + chunk] @ x.T
            sim[image[start:start + chunk, None] == image[None, :]] = -torch.inf  # other images only
            top = sim.topk(k, dim=-1).indices
            rows.append(torch.arange(start, start + len(top), device=x.device).repeat_interleave(k))
            cols.append(top.flatten())
    i, j = (torch.cat(rows), torch.cat(cols)) if rows else (x.new_zeros(0, dtype=torch.long),) * 2
    directed = i * n + j
    mutual = torch.isin(directed, j * n + i)  # j also counts i among its k nearest
    i, j = i[mutual], j[mutual]
    blocks = [torch.cartesian_prod(torch.arange(s), torch.arange(s)) + o for s, o in zip(sizes.tolist(), offsets.tolist())]
    within = torch.cat(blocks).to(x.device)
    i, j = torch.cat([within[:, 0], i]), torch.cat([within[:, 1], j])
    values = formula(edge_similarities(x, i, j), torch.tensor(peak, dtype=x.dtype, device=x.device), alpha, power)
    return torch.sparse_coo_tensor(torch.stack([i, j]), values, (n, n), check_invariants=False).coalesce()


def grid_edges(cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2) distinct (row, col) grid cells of one image's nodes -> the node pairs (i, j), both
    ways, whose cells are 8-neighbours: the image's own spatial adjacency among those nodes."""
    if len(cells) == 0:
        return (cells.new_zeros(0),) * 2
    origin = cells.min(dim=0).values
    rc = cells - origin
    h, w = (int(v) + 1 for v in rc.max(dim=0).values)
    index = torch.full((h + 2, w + 2), -1, dtype=torch.long, device=cells.device)  # a frame of -1: no wrap-around
    index[rc[:, 0] + 1, rc[:, 1] + 1] = torch.arange(len(cells), device=cells.device)
    rows, cols = [], []
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):  # each unordered pair once, then mirrored
        other = index[rc[:, 0] + 1 + dy, rc[:, 1] + 1 + dx]
        keep = other >= 0
        rows.append(torch.arange(len(cells), device=cells.device)[keep])
        cols.append(other[keep])
    i, j = torch.cat(rows), torch.cat(cols)
    return torch.cat([i, j]), torch.cat([j, i])


def joint_affinity(features: list[torch.Tensor], cells: list[torch.Tensor], k: int, formula=ncut_affinity,
                   alpha: float = 3.0, l2: bool = False, power: float = 1.0, spatial_weight: float = 1.0) -> torch.Tensor:
    """One sparse (N, N) W over the nodes of G images (N = N_1 + ... + N_G, image after image) for a
    loss on the whole collection: each node linked to its k nearest nodes of the collection, in any
    image (`sparse_knn_affinity` on the pooled nodes: a part meets its kind in the other images),
    plus, with weight `spatial_weight`, to its 8-neighbours on its own image's grid (`cells`, (N_g, 2)
    rows and columns), so that a part is also a region of its image. Memory and time are linear in
    N * k (the neighbour search goes chunk by chunk); the same nodes in another image order give the
    same graph, permuted."""
    w = sparse_knn_affinity(torch.cat(features), k, formula, alpha, l2, power)
    if not spatial_weight:
        return w
    sizes = [len(f) for f in features]
    offsets = torch.cumsum(torch.tensor([0] + sizes[:-1]), 0).tolist()
    pairs = [tuple(e + o for e in grid_edges(c)) for c, o in zip(cells, offsets)]
    i, j = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    spatial = torch.sparse_coo_tensor(torch.stack([i, j]), w.values().new_full((len(i),), spatial_weight), w.shape,
                                      check_invariants=False)
    return (w + spatial).coalesce()
