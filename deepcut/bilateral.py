"""Fast bilateral solver (Barron & Poole, ECCV 2016) for refining a coarse mask to image edges.

The solver finds the x that stays close to the target t where the confidence c is high and is
smooth between pixels that are close in position *and* colour (B&P eq. 1):

    min_x  lam/2 * sum_ij W_ij (x_i - x_j)^2  +  sum_i c_i (x_i - t_i)^2

with the bilateral affinity W (eq. 2) factorised through a coarse 5-D bilateral grid,
W ~ S^T B S (eq. 3): S "splats" pixels onto grid vertices, B blurs between neighbouring vertices.
The problem then lives on the vertices y (x = S^T y) and is a sparse SPD linear system
A y = b (eqs. 5-8), solved by preconditioned conjugate gradients.

Memory and time are linear in the number of pixels N = H*W: the grid has V <= N vertices, S has
N non-zeros, B has at most 11*V (the centre plus +-1 along 5 axes) and A the same pattern; the
rest are a few per-pixel float64/int64 vectors. Measured peak: ~120 bytes per pixel on a natural
photo (V ~ 0.01 N with the default sigmas, 1.9 s at 5 megapixels), ~175 bytes per pixel in the
worst case V ~ N (pure noise), i.e. about 1 GB for a 6-megapixel image.

Follows TokenCut's `bilateral_solver.py` (itself Barron's reference notebook); see the notes on
`bilateral_solve` for where it differs.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import cg

# JPEG's RGB -> YUV (BT.601 full range), chroma shifted by 128 so all channels lie in [0, 255].
RGB_TO_YUV = np.array([[0.299, 0.587, 0.114],
                       [-0.168736, -0.331264, 0.5],
                       [0.5, -0.418688, -0.081312]])
YUV_OFFSET = np.array([0.0, 128.0, 128.0])

BISTOCHASTIC_ITERS = 10  # as TokenCut / the reference code
A_DIAG_MIN = 1e-5        # floor on the Jacobi preconditioner's diagonal, as TokenCut


def bilateral_grid(image: np.ndarray, sigma_spatial: float, sigma_luma: float,
                   sigma_chroma: float) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Splat matrix S (V, N) and blur matrix B (V, V) of the simplified bilateral grid (eq. 3).

    Each pixel falls in the vertex floor((x, y, luma, u, v) / sigma); B is the [1 2 1] blur along
    each of the 5 axes, summed, between the vertices that exist.
    """
    h, w = image.shape[:2]
    yuv = image.astype(np.float64) @ RGB_TO_YUV.T + YUV_OFFSET
    coords = [(np.arange(w) / sigma_spatial).astype(np.int64)[None, :],
              (np.arange(h) / sigma_spatial).astype(np.int64)[:, None],
              (yuv[..., 0] / sigma_luma).astype(np.int64),
              (yuv[..., 1] / sigma_chroma).astype(np.int64),
              (yuv[..., 2] / sigma_chroma).astype(np.int64)]
    # Mixed-radix hash of the coordinates shifted by 1 in a box one cell wider on each side, so
    # the +-1 neighbours of every vertex hash without wrap-around (unlike the reference's 255**d
    # hash, which collides once a coordinate reaches 255, e.g. very wide images).
    extents = [int(c.max()) + 3 for c in coords]
    if np.prod(np.array(extents, dtype=np.float64)) >= 2.0 ** 62:
        raise ValueError("bilateral grid too fine to hash in int64; increase the sigmas")
    key = np.zeros((h, w), dtype=np.int64)
    for c, e in zip(coords, extents):
        key = key * e + (c + 1)
    vertices, pixel_vertex = np.unique(key.ravel(), return_inverse=True)
    n_vertices, n_pixels = len(vertices), h * w
    splat = sparse.csr_matrix((np.ones(n_pixels), (pixel_vertex.ravel(), np.arange(n_pixels))),
                              shape=(n_vertices, n_pixels))

    # Neighbour along axis d is the key +-stride_d; it is a vertex iff that key occurs in the grid.
    strides = np.cumprod([1] + extents[:0:-1])[::-1]
    rows, cols = [], []
    for stride in strides:
        for offset in (-stride, stride):
            pos = np.searchsorted(vertices, vertices + offset).clip(max=n_vertices - 1)
            found = np.flatnonzero(vertices[pos] == vertices + offset)
            rows.append(found)
            cols.append(pos[found])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    blur = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_vertices, n_vertices))
    blur = blur + 2 * len(coords) * sparse.identity(n_vertices, format="csr")
    return splat, blur


def bistochastize(splat: sparse.csr_matrix, blur: sparse.csr_matrix,
                  iters: int = BISTOCHASTIC_ITERS) -> tuple[np.ndarray, np.ndarray]:
    """Diagonals m, n such that S^T D_m^-1 D_n B D_n D_m^-1 S is bistochastic (eq. 4; B&P suppl.).

    Sinkhorn-style fixed point n <- sqrt(n * m / (B n)) starting from the vertex masses m = S 1.
    m is then recomputed as n * (B n) so that D_m - D_n B D_n has zero row sums whatever the
    number of iterations: constants are then exactly in the smoothness term's null space.
    """
    m = splat @ np.ones(splat.shape[1])
    n = np.ones_like(m)
    for _ in range(iters):
        n = np.sqrt(n * m / (blur @ n))
    return n * (blur @ n), n


def bilateral_solve(image: np.ndarray, target: np.ndarray, confidence: np.ndarray | None = None,
                    *, sigma_spatial: float = 16, sigma_luma: float = 16, sigma_chroma: float = 8,
                    lam: float = 128, cg_tol: float = 1e-5, cg_maxiter: int = 25) -> np.ndarray:
    """Edge-aware smoothing of `target` (H, W) guided by the RGB `image` (H, W, 3).

    `confidence` (H, W) in [0, 1] weighs the data term (default: all ones). Returns float64 (H, W).

    Differences from TokenCut's reference: the default confidence is 1 rather than 0.999 (the
    same as lam / 0.999); vertices with zero total confidence start CG from their mean target
    instead of NaN; the grid hash is collision-free (see `bilateral_grid`); `cg_tol` is SciPy's
    `rtol`.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != target.shape:
        raise ValueError(f"need image (H, W, 3), target (H, W); got {image.shape}, {target.shape}")
    t = target.astype(np.float64).ravel()
    c = np.ones_like(t) if confidence is None else confidence.astype(np.float64).ravel()

    splat, blur = bilateral_grid(image, sigma_spatial, sigma_luma, sigma_chroma)
    m, n = bistochastize(splat, blur)
    # Eq. 7: A = lam (D_m - D_n B D_n) + diag(S c),  b = S (c * t).
    c_splat = splat @ c
    a = (lam * (sparse.diags(m) - sparse.diags(n) @ blur @ sparse.diags(n))
         + sparse.diags(c_splat)).tocsr()
    b = splat @ (c * t)
    # Jacobi preconditioner and the "flat" start y0 = S(c t) / S(c) (B&P sec. 4, as TokenCut).
    # Where no pixel of a vertex has confidence, the system may not pin it down (an isolated
    # vertex has an all-zero row), so it starts from, and there keeps, its plain mean S t / S 1.
    precond = sparse.diags(1.0 / np.maximum(a.diagonal(), A_DIAG_MIN))
    y0 = np.divide(b, c_splat, out=(splat @ t) / (splat @ np.ones_like(t)), where=c_splat > 0)
    y, _ = cg(a, b, x0=y0, rtol=cg_tol, maxiter=cg_maxiter, M=precond)
    # Eq. 8: slice the vertex solution back to the pixels, x = S^T y.
    return (splat.T @ y).reshape(target.shape)


def refine_mask(image: np.ndarray, mask: np.ndarray, **kwargs) -> np.ndarray:
    """Snap a coarse boolean mask (H, W) to the image's edges: solver output > 0.5, as TokenCut.

    TokenCut then also fills holes and keeps the largest component; that is left to the caller
    (see `deepcut.masks.largest_component`).
    """
    return bilateral_solve(image, mask.astype(np.float64), **kwargs) > 0.5
