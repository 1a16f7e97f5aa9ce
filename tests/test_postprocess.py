"""Stage 4, post-processing: what the patch grid answers equals the full-size computation, and the
solver's working resolution keeps its edges."""
import numpy as np
import pytest
import torch
from PIL import Image

from deepcut.bilateral import refine_mask
from deepcut.errors import ConfigError
from deepcut.masks import grid_box, grid_coverage, mask_to_box, upsample_labels
from deepcut.postprocess import Postprocess


@pytest.mark.parametrize("seed", range(40))
def test_the_grid_box_is_the_box_of_the_upsampled_mask(seed):
    """Random grids (several components, ties in area included) at sizes that are no multiple of the grid."""
    rng = np.random.default_rng(seed)
    h, w = rng.integers(2, 12, size=2)
    labels = torch.from_numpy((rng.random((h, w)) < rng.uniform(0.1, 0.6)) * rng.integers(1, 4, (h, w)))
    size = (int(h * rng.uniform(1, 9)), int(w * rng.uniform(1, 9)))
    expected = mask_to_box(upsample_labels(labels, size) > 0)
    got = grid_box(labels, size)
    assert (got is None and expected is None) or torch.equal(got, expected)


def test_postprocess_box_and_labels_on_a_photo_sized_grid():
    """The default chain (solver, coarse box) against the full-size box of the same coarse mask."""
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((301, 451, 3)) * 60).astype(np.uint8))
    labels = torch.zeros(16, 16, dtype=torch.long)
    labels[4:10, 3:8], labels[11:14, 10:15] = 1, 2
    full, mask, box = Postprocess(bilateral=True, bilateral_params={"max_side": 200})(labels, image)
    assert torch.equal(box, mask_to_box(upsample_labels(labels, (301, 451)) > 0))
    assert full.shape == mask.shape == (301, 451) and torch.equal(full > 0, mask)


def two_regions(h: int, w: int, edge: int) -> np.ndarray:
    image = np.empty((h, w, 3), np.uint8)
    image[:, :edge], image[:, edge:] = (180, 30, 20), (40, 200, 220)
    return image


@pytest.mark.parametrize("max_side", [None, 160, 100])
def test_the_solver_at_a_working_resolution_snaps_to_the_same_edge(max_side):
    h, w, edge = 240, 320, 181  # an edge off every grid line, at full and reduced size
    truth = np.zeros((h, w), bool)
    truth[:, edge:] = True
    coarse = np.zeros_like(truth)
    coarse[:, edge - 12:] = True  # a patch too far left
    refined = refine_mask(two_regions(h, w, edge), coarse, sigma_spatial=24, sigma_luma=4, sigma_chroma=4, lam=256,
                          max_side=max_side)
    assert refined.shape == truth.shape
    assert (coarse != truth).sum() == 12 * h
    assert (refined != truth).sum() <= 2 * h  # within a pixel of the edge, row by row


def test_bad_post_processing_settings_are_one_paragraph_each():
    with pytest.raises(ConfigError) as err:
        Postprocess(upsample="cubic", box_from="middle", bilateral_params={"max_side": 3, "sigma": 2})
    problems = str(err.value).split("\n\n")
    assert [p.split(":")[0] for p in problems] == ["postprocess.upsample='cubic'", "postprocess.box_from='middle'",
                                                  "postprocess.bilateral_params.sigma",
                                                  "postprocess.bilateral_params.max_side=3"]


def test_overlapped_post_processing_writes_what_the_sequential_path_writes(tmp_path):
    """overlap=true post-processes batch i in a thread while batch i+1 is clustered: the same rows,
    labels and summary as overlap=false, in the same order."""
    import subprocess
    import sys
    from pathlib import Path

    from deepcut.results import read_results
    repo = Path(__file__).resolve().parent.parent
    runs = {}
    for overlap in ("false", "true"):
        out = tmp_path / overlap
        done = subprocess.run([sys.executable, "run.py", "backbone=tiny_random", "backbone.batch_size=2", "device=cpu",
                               f"overlap={overlap}", f"hydra.run.dir={out}", "cache.enabled=false"],
                              cwd=repo, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        runs[overlap] = out
    a, b = (read_results(runs[k] / "results.csv").drop(columns="time_s") for k in ("false", "true"))
    assert a.equals(b) and len(a) == 5
    for name in a["id"]:
        assert np.array_equal(np.asarray(Image.open(runs["false"] / "labels" / f"{name}.png")),
                              np.asarray(Image.open(runs["true"] / "labels" / f"{name}.png")))


@pytest.mark.parametrize("seed", range(12))
def test_the_grid_coverage_is_the_area_average_of_the_upsampled_mask(seed):
    """The solver's target comes from the grid: equal to the full-size mask averaged over each
    working pixel's area, computed here exactly by supersampling (each pixel repeated work times)."""
    rng = np.random.default_rng(seed)
    h, w = rng.integers(2, 9, size=2)
    foreground = torch.from_numpy(rng.random((h, w)) < 0.5)
    size = (int(rng.integers(h, 40)), int(rng.integers(w, 40)))
    work = (int(rng.integers(1, size[0] + 1)), int(rng.integers(1, size[1] + 1)))
    full = upsample_labels(foreground.long(), size).numpy().astype(np.float64)
    fine = full.repeat(work[0], 0).repeat(work[1], 1)  # (H * wh, W * ww): each working pixel is H x W of these
    exact = fine.reshape(work[0], size[0], work[1], size[1]).mean(axis=(1, 3))
    np.testing.assert_allclose(grid_coverage(foreground, size, work), exact, atol=1e-6)
