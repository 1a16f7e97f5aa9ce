"""Fast bilateral solver (Barron & Poole, ECCV 2016) for refining a coarse mask to image edges.

The solver finds the x that stays close to the target t where the confidence c is high and is
smooth between pixels that are close in position *and* colour (B&P eq. 1):

    min_x  lam/2 * sum_ij W_ij (x_i - x_j)^2  +  sum_i c_i (x_i - t_i)^2

with the bilateral affinity W (eq. 2) factorised through a coarse 5-D bilateral grid,
W ~ S^T B S (eq. 3): S "splats" pixels onto grid vertices, B blurs between neighbouring vertices.
The problem then lives on the vertices y (x = S^T y) and is a sparse SPD linear system
A y = b (eqs. 5-8), solved by preconditioned conjugate gradients.

Memory and time are linear in the number of pixels N = H*W: the grid has V <= N vertices, S is
one vertex index per pixel, B is 2 * AXES * I plus a 0/1 neighbour matrix of at most 10*V
non-zeros (+-1 along 5 axes), and A is never assembled (`system`: diagonals around B); the rest
are a few per-pixel float64/int64 vectors (~120 bytes per pixel on a natural photo, ~175 in the
worst case V ~ N, pure noise). Vertices are found by hashing, not by sorting the pixels, and the
conjugate gradients run on the V vertices with plain array arithmetic: a BLAS call on vectors
this short costs more in thread hand-offs than it computes (scipy's cg took 20x longer on two
busy cores).

Two backends, one algorithm: NumPy/SciPy (`bilateral_solve`, the CPU path) and torch
(`bilateral_solve_torch`, any device: the CUDA path), sharing `conjugate_gradients`; a test holds
them to the same answer. Follows TokenCut's `bilateral_solver.py` (itself Barron's reference
notebook); see the notes on `bilateral_solve` for where it differs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from PIL import Image
from scipy import sparse

# JPEG's RGB -> YUV (BT.601 full range), chroma shifted by 128 so all channels lie in [0, 255.5].
RGB_TO_YUV = np.array([[0.299, 0.587, 0.114],
                       [-0.168736, -0.331264, 0.5],
                       [0.5, -0.418688, -0.081312]])
YUV_OFFSET = np.array([0.0, 128.0, 128.0])
YUV_MAX = (255.0, 255.5, 255.5)  # each channel's bound over all uint8 RGB: the hash's extents need no pass over the image

BISTOCHASTIC_ITERS = 10  # as TokenCut / the reference code
A_DIAG_MIN = 1e-5        # floor on the Jacobi preconditioner's diagonal, as TokenCut
AXES = 5                 # x, y, luma, u, v
# The solver's settings (postprocess.bilateral_params) and their defaults, TokenCut's.
DEFAULTS = {"sigma_spatial": 16, "sigma_luma": 16, "sigma_chroma": 8, "lam": 128, "cg_tol": 1e-5, "cg_maxiter": 25}


def _grid_extents(h: int, w: int, sigmas: tuple[float, float, float]) -> list[int]:
    """Sizes of the box that holds every vertex coordinate shifted by 1, one cell wider on each side,
    so the +-1 neighbours of every vertex hash without wrap-around (unlike the reference's 255**d
    hash, which collides once a coordinate reaches 255, e.g. very wide images). Vertices are
    numbered in key order, which the extents do not change."""
    spatial, luma, chroma = sigmas
    extents = [int((w - 1) / spatial) + 3, int((h - 1) / spatial) + 3,
               int(YUV_MAX[0] / luma) + 3, int(YUV_MAX[1] / chroma) + 3, int(YUV_MAX[2] / chroma) + 3]
    if np.prod(np.array(extents, dtype=np.float64)) >= 2.0 ** 62:
        raise ValueError("bilateral grid too fine to hash in int64; increase the sigmas")
    return extents


def _strides(extents: list[int]) -> list[int]:
    """The key distance of a step along each axis (the mixed radix of `extents`)."""
    return [int(v) for v in np.cumprod([1] + extents[:0:-1])[::-1]]


def bilateral_grid(image: np.ndarray, sigma_spatial: float, sigma_luma: float,
                   sigma_chroma: float) -> tuple[np.ndarray, sparse.csr_matrix]:
    """The simplified bilateral grid (eq. 3): each pixel's vertex (N,) (the splat S as an index:
    pixel i falls in vertex floor((x, y, luma, u, v) / sigma)) and the grid's neighbours (V, V),
    1 between vertices one step apart along one of the 5 axes: B, the [1 2 1] blur along each
    axis summed, is 2 * AXES * I + neighbours. Vertices are numbered as they first occur."""
    h, w = image.shape[:2]
    extents = _grid_extents(h, w, (sigma_spatial, sigma_luma, sigma_chroma))
    strides = _strides(extents)
    rgb = image.transpose(2, 0, 1).astype(np.float64)  # channel planes: three axpys, not an (N, 3) x (3, 3) matmul
    yuv = [sum(rgb[c] * RGB_TO_YUV[i, c] for c in range(3)) + YUV_OFFSET[i] for i in range(3)]
    # A pixel's key is sum_d (coordinate_d + 1) * stride_d: the +1s are one constant, the spatial
    # terms two small vectors, and each colour adds its term in place.
    key = ((np.arange(w) / sigma_spatial).astype(np.int64) * strides[0])[None, :] \
        + ((np.arange(h) / sigma_spatial).astype(np.int64) * strides[1] + sum(strides))[:, None]
    for channel, sigma, stride in zip(yuv, (sigma_luma, sigma_chroma, sigma_chroma), strides[2:]):
        key += (channel / sigma).astype(np.int64) * stride
    # Vertices by hashing the N keys (O(N), no sort: the answer does not depend on their order).
    vertex, vertices = pd.factorize(key.ravel())
    n_vertices = len(vertices)
    # Vertex i's neighbour along axis d has the key + stride_d, if that key occurs in the grid (the
    # - stride_d neighbours are the same pairs reversed): one hashed lookup of all 5 V keys.
    found_at = pd.Index(vertices).get_indexer((vertices[None, :] + np.array(strides)[:, None]).ravel())
    hit = np.flatnonzero(found_at >= 0)
    i, j = hit % n_vertices, found_at[hit]
    neighbours = sparse.coo_matrix((np.ones(2 * len(hit)), (np.concatenate([i, j]), np.concatenate([j, i]))),
                                   shape=(n_vertices, n_vertices))
    # Each pair occurs once, so scipy need not sort the pairs to sum duplicates (a sort as long as the rest of the grid).
    neighbours.has_canonical_format = True
    return vertex, neighbours.tocsr()


def bistochastize(mass, blur_matvec, iters: int = BISTOCHASTIC_ITERS):
    """Diagonals m, n such that S^T D_m^-1 D_n B D_n D_m^-1 S is bistochastic (eq. 4; B&P suppl.).

    Sinkhorn-style fixed point n <- sqrt(n * m / (B n)) starting from the vertex masses m = S 1.
    m is then recomputed as n * (B n) so that D_m - D_n B D_n has zero row sums whatever the
    number of iterations: constants are then exactly in the smoothness term's null space.
    Arrays of either backend (NumPy or torch)."""
    n = mass * 0 + 1
    for _ in range(iters):
        n = (n * mass / blur_matvec(n)) ** 0.5
    return n * blur_matvec(n), n


def system(spread, mass, c_splat, lam: float):
    """Eq. 7's A = lam (D_m - D_n B D_n) + diag(S c) as its diagonal and a matvec, never assembled:
    B y = 2 * AXES * y + spread(y) with ``spread`` the grid's neighbours applied (1 between
    vertices one step apart), D_m and D_n from `bistochastize`. Arrays of either backend."""
    m, n = bistochastize(mass, lambda y: spread(y) + 2.0 * AXES * y)
    diagonal = lam * (m - 2.0 * AXES * n * n) + c_splat
    lam_n = lam * n

    def matvec(y):
        smooth = spread(n * y)
        smooth *= lam_n
        return diagonal * y - smooth
    return diagonal, matvec


def conjugate_gradients(matvec, b, x0, inverse_diagonal, rtol: float, maxiter: int):
    """Jacobi-preconditioned conjugate gradients for A x = b, as scipy.sparse.linalg.cg(rtol=rtol,
    atol=0, maxiter=maxiter, M=diag(inverse_diagonal)) computes them, on NumPy arrays or torch
    tensors alike; reductions are array sums, never BLAS calls (see the module's note), and the
    iterates are updated in place (a V-vector allocation costs as much as the arithmetic)."""
    limit = rtol * float((b * b).sum()) ** 0.5
    if limit == 0:  # b = 0: x = 0, as scipy answers
        return b * 0
    x = x0 * 1
    r = b - matvec(x)
    z = inverse_diagonal * r
    p, rz = z, float((r * z).sum())  # p may start as z: z is rebound, never updated in place
    for _ in range(maxiter):
        if float((r * r).sum()) ** 0.5 < limit:
            break
        ap = matvec(p)
        alpha = rz / float((p * ap).sum())
        x += alpha * p
        r -= alpha * ap
        z = inverse_diagonal * r
        rz, previous = float((r * z).sum()), rz
        p *= rz / previous
        p += z
    return x


def bilateral_solve(image: np.ndarray, target: np.ndarray, confidence: np.ndarray | None = None,
                    *, sigma_spatial: float = DEFAULTS["sigma_spatial"], sigma_luma: float = DEFAULTS["sigma_luma"],
                    sigma_chroma: float = DEFAULTS["sigma_chroma"], lam: float = DEFAULTS["lam"],
                    cg_tol: float = DEFAULTS["cg_tol"], cg_maxiter: int = DEFAULTS["cg_maxiter"]) -> np.ndarray:
    """Edge-aware smoothing of `target` (H, W) guided by the RGB `image` (H, W, 3).

    `confidence` (H, W) in [0, 1] weighs the data term (default: all ones). Returns float64 (H, W).

    Differences from TokenCut's reference: the default confidence is 1 rather than 0.999 (the
    same as lam / 0.999); vertices with zero total confidence start CG from their mean target
    instead of NaN; the grid hash is collision-free (see `_grid_extents`); `cg_tol` is SciPy's
    `rtol`.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != target.shape:
        raise ValueError(f"need image (H, W, 3), target (H, W); got {image.shape}, {target.shape}")
    t = target.astype(np.float64).ravel()
    c = np.ones_like(t) if confidence is None else confidence.astype(np.float64).ravel()

    vertex, neighbours = bilateral_grid(image, sigma_spatial, sigma_luma, sigma_chroma)
    v = neighbours.shape[0]
    splat = lambda values: np.bincount(vertex, weights=values, minlength=v)  # noqa: E731 - S values
    mass = np.bincount(vertex, minlength=v).astype(np.float64)  # S 1
    c_splat = mass if confidence is None else splat(c)
    diagonal, matvec = system(neighbours.dot, mass, c_splat, lam)
    b = splat(c * t)
    # Jacobi preconditioner and the "flat" start y0 = S(c t) / S(c) (B&P sec. 4, as TokenCut).
    # Where no pixel of a vertex has confidence, the system may not pin it down (an isolated
    # vertex has an all-zero row), so it starts from, and there keeps, its plain mean S t / S 1.
    y0 = np.divide(b, c_splat, out=splat(t) / mass, where=c_splat > 0)
    y = conjugate_gradients(matvec, b, y0, 1.0 / np.maximum(diagonal, A_DIAG_MIN), cg_tol, cg_maxiter)
    # Eq. 8: slice the vertex solution back to the pixels, x = S^T y.
    return y[vertex].reshape(target.shape)


def bilateral_solve_torch(image: torch.Tensor, target: torch.Tensor, confidence: torch.Tensor | None = None,
                          *, sigma_spatial: float = DEFAULTS["sigma_spatial"], sigma_luma: float = DEFAULTS["sigma_luma"],
                          sigma_chroma: float = DEFAULTS["sigma_chroma"], lam: float = DEFAULTS["lam"],
                          cg_tol: float = DEFAULTS["cg_tol"], cg_maxiter: int = DEFAULTS["cg_maxiter"]) -> torch.Tensor:
    """`bilateral_solve` in torch, on the device of ``image`` (uint8 (H, W, 3)) and ``target`` (H, W):
    the same grid, system and iterations in float64, so the answers agree to rounding (tested)."""
    h, w = target.shape
    device = image.device
    extents = _grid_extents(h, w, (sigma_spatial, sigma_luma, sigma_chroma))
    rgb = image.permute(2, 0, 1).double()
    yuv = [sum(rgb[c] * float(RGB_TO_YUV[i, c]) for c in range(3)) + float(YUV_OFFSET[i]) for i in range(3)]
    scale = lambda n, sigma: (torch.arange(n, device=device, dtype=torch.float64) / sigma).long()  # noqa: E731
    coords = [scale(w, sigma_spatial)[None, :], scale(h, sigma_spatial)[:, None], (yuv[0] / sigma_luma).long(),
              (yuv[1] / sigma_chroma).long(), (yuv[2] / sigma_chroma).long()]
    key = torch.zeros((h, w), dtype=torch.long, device=device)
    for c, e in zip(coords, extents):
        key = key * e + (c + 1)
    vertices, vertex = torch.unique(key.flatten(), return_inverse=True)  # sorted; the order does not change the answer
    v = len(vertices)
    rows, cols = [], []
    for stride in _strides(extents):
        for offset in (-stride, stride):
            pos = torch.searchsorted(vertices, vertices + offset).clamp(max=v - 1)
            hit = torch.nonzero(vertices[pos] == vertices + offset).squeeze(1)
            rows.append(hit)
            cols.append(pos[hit])
    rows, cols = torch.cat(rows), torch.cat(cols)
    neighbours = torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.ones(len(rows), dtype=torch.float64, device=device),
                                         (v, v), check_invariants=False).coalesce()
    spread = lambda y: torch.sparse.mm(neighbours, y[:, None])[:, 0]  # noqa: E731
    t = target.double().flatten()
    c = torch.ones_like(t) if confidence is None else confidence.double().flatten()
    splat = lambda values: torch.zeros(v, dtype=torch.float64, device=device).index_add_(0, vertex, values)  # noqa: E731
    mass = splat(torch.ones_like(t))
    c_splat = splat(c)
    diagonal, matvec = system(spread, mass, c_splat, lam)
    b = splat(c * t)
    y0 = torch.where(c_splat > 0, b / c_splat.clamp_min(torch.finfo(torch.float64).tiny), splat(t) / mass)
    y = conjugate_gradients(matvec, b, y0, 1.0 / diagonal.clamp_min(A_DIAG_MIN), cg_tol, cg_maxiter)
    return y[vertex].view(h, w)


def working_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(h, w) the solver works at: the image shrunk so that its longer side is at most ``max_side``
    (None: its own size)."""
    scale = 1.0 if max_side is None else min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def refine(image: Image.Image | np.ndarray, target: np.ndarray, *, device: str = "cpu", **params) -> np.ndarray:
    """Snap a soft foreground ``target`` (h, w) in [0, 1], given at the working size, to the edges of
    ``image`` (H, W, 3): the image is shrunk to (h, w) (area average) with sigma_spatial scaled
    alike, solved there, and the solution brought back bilinearly to (H, W); foreground where it
    is > 0.5, as TokenCut. ``device``: where the solver runs, NumPy/SciPy on the CPU, torch
    elsewhere (CUDA). ``params``: the solver's settings (`DEFAULTS`)."""
    image = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    (h, w), full = target.shape, (image.width, image.height)
    if (w, h) != full:
        image = image.resize((w, h), Image.BOX)
        params["sigma_spatial"] = params.get("sigma_spatial", DEFAULTS["sigma_spatial"]) * w / full[0]
    pixels = np.asarray(image.convert("RGB"))
    if torch.device(device).type == "cpu":
        solution = bilateral_solve(pixels, target, **params)
    else:
        solution = bilateral_solve_torch(torch.from_numpy(np.ascontiguousarray(pixels)).to(device),
                                         torch.from_numpy(np.ascontiguousarray(target)).to(device), **params).cpu().numpy()
    if (w, h) != full:
        solution = np.asarray(Image.fromarray(solution.astype(np.float32)).resize(full, Image.BILINEAR))
    return solution > 0.5


def refine_mask(image: Image.Image | np.ndarray, mask: np.ndarray, *, max_side: int | None = None, device: str = "cpu",
                **params) -> np.ndarray:
    """Snap a coarse boolean mask (H, W) to the image's edges (`refine`), solving at
    `working_size(H, W, max_side)` on the mask's area average there.

    TokenCut then also fills holes and keeps the largest component; that is left to the caller
    (see `deepcut.masks.largest_component`).
    """
    h, w = working_size(*mask.shape, max_side)
    target = mask.astype(np.float32)
    if (h, w) != mask.shape:
        target = np.asarray(Image.fromarray(target).resize((w, h), Image.BOX))  # each small pixel's foreground share
    return refine(image, target, device=device, **params)
