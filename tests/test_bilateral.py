import numpy as np
import pytest
from skimage import data

from deepcut.bilateral import bilateral_solve, refine_mask

EDGE = 30  # not on a multiple of sigma_spatial, so grid cells straddle the colour edge


def two_region_image(size: int = 64) -> np.ndarray:
    """Left half dark red, right half light blue-green: different in luma and both chromas."""
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:, :EDGE] = (180, 30, 20)
    image[:, EDGE:] = (40, 200, 220)
    return image


@pytest.mark.parametrize("shift", [-4, 4])
def test_mask_snaps_to_colour_edge(shift):
    image = two_region_image()
    truth = np.zeros((64, 64), dtype=bool)
    truth[:, EDGE:] = True
    coarse = np.zeros_like(truth)
    coarse[:, EDGE + shift:] = True
    refined = refine_mask(image, coarse)
    assert (coarse == truth).mean() < 0.95
    assert (refined == truth).mean() >= 0.98


def test_constant_target_stays_constant():
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    confidence = np.random.default_rng(1).random((40, 50))
    confidence[:10] = 0.0  # vertices with no confidence at all must not produce NaNs
    out = bilateral_solve(image, np.full((40, 50), 0.3), confidence)
    np.testing.assert_allclose(out, 0.3, atol=1e-3)


def test_flat_image_smooths_and_keeps_mean():
    # With a constant image the grid is purely spatial; the bistochastic smoothness term has
    # constants in its null space on both sides, so the solution preserves the target's sum.
    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    rng = np.random.default_rng(0)
    target = np.linspace(0, 1, 64) + 0.3 * rng.standard_normal((64, 64))
    out = bilateral_solve(image, target)
    assert abs(out.mean() - target.mean()) < 1e-3
    assert out.std() < 0.5 * target.std()
    ramp = np.broadcast_to(np.linspace(0, 1, 64), (64, 64))
    assert np.corrcoef(out.ravel(), ramp.ravel())[0, 1] > 0.9


def test_output_shape_and_dtype():
    image = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    target = np.random.default_rng(1).random((17, 23))
    out = bilateral_solve(image, target)
    assert out.shape == (17, 23) and out.dtype == np.float64 and np.isfinite(out).all()
    mask = refine_mask(image, target > 0.5)
    assert mask.shape == (17, 23) and mask.dtype == bool
    with pytest.raises(ValueError):
        bilateral_solve(image, target.T)


def test_runs_on_chelsea():
    image = data.chelsea()  # (300, 451, 3) uint8
    h, w = image.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    coarse = ((yy - 150) / 110) ** 2 + ((xx - 200) / 150) ** 2 < 1  # rough blob over the cat
    mask = refine_mask(image, coarse)
    assert mask.shape == (h, w) and mask.dtype == bool
    assert 0 < mask.mean() < 1
    iou = (mask & coarse).sum() / (mask | coarse).sum()
    assert iou > 0.5


@pytest.mark.parametrize("seed", range(3))
def test_the_torch_solver_gives_the_numpy_solvers_answer(seed):
    """The CUDA path's solver, run on the CPU: the same grid, system and iterations, so the same
    solution to 1e-9 (float64 sums in another order) and the same mask."""
    import torch

    from deepcut.bilateral import bilateral_solve_torch
    rng = np.random.default_rng(seed)
    image = data.chelsea()[::2, ::2].copy() if seed == 0 else rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    target = rng.random(image.shape[:2])
    confidence = None if seed < 2 else rng.random(image.shape[:2])
    params = dict(sigma_spatial=12, sigma_luma=4, sigma_chroma=4, lam=256)
    expected = bilateral_solve(image, target, confidence, **params)
    got = bilateral_solve_torch(torch.from_numpy(image), torch.from_numpy(target),
                                None if confidence is None else torch.from_numpy(confidence), **params)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-9)


def test_conjugate_gradients_agree_with_scipy():
    from scipy import sparse
    from scipy.sparse.linalg import cg

    from deepcut.bilateral import conjugate_gradients
    rng = np.random.default_rng(0)
    m = sparse.random(300, 300, density=0.02, random_state=0)
    a = (m @ m.T + sparse.identity(300) * 2).tocsr()  # symmetric positive definite
    b = rng.standard_normal(300)
    for maxiter in (3, 25):
        expected, _ = cg(a, b, x0=np.zeros(300), rtol=1e-5, maxiter=maxiter, M=sparse.diags(1 / a.diagonal()))
        np.testing.assert_allclose(conjugate_gradients(a.dot, b, np.zeros(300), 1 / a.diagonal(), 1e-5, maxiter),
                                   expected, rtol=1e-10, atol=1e-12)
