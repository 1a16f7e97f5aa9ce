"""MaskCut (CutLER) on synthetic patch features whose answer is known."""
import importlib
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from deepcut.methods.maskcut import maskcut
from deepcut.registry import create_method, method_entry

REPO = Path(__file__).resolve().parent.parent
C = 8
GRID = (20, 20)


def square(top, left, size, grid=GRID):
    m = torch.zeros(grid, dtype=torch.bool)
    m[top:top + size, left:left + size] = True
    return m


# Three separated square objects of different sizes (equal ones would make the cut degenerate).
OBJECTS = [square(2, 2, 6), square(3, 12, 5), square(12, 6, 4)]


def features(regions, grid=GRID, *, noise=0.02, seed=0):
    """(h*w, C): basis direction 0 everywhere (the background), direction k on the k-th region."""
    eye = torch.eye(C, dtype=torch.float64)
    f = eye[0].expand(*grid, C).clone()
    for k, mask in enumerate(regions, start=1):
        f[mask] = eye[k]
    f = f + noise * torch.randn(*grid, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return f.reshape(-1, C).float()


def test_three_objects_are_labels_one_to_three():
    labels = maskcut(features(OBJECTS), GRID, n_masks=3)
    assert labels.shape == GRID and labels.dtype == torch.long
    assert sorted(labels.unique().tolist()) == [0, 1, 2, 3]
    found = [labels == k for k in (1, 2, 3)]
    assert all(any(torch.equal(m, obj) for obj in OBJECTS) for m in found)
    assert all(any(torch.equal(m, obj) for m in found) for obj in OBJECTS)
    assert torch.equal(labels == 0, ~(OBJECTS[0] | OBJECTS[1] | OBJECTS[2]))


def test_one_mask_is_one_object_and_details_give_the_first_eigenvector():
    labels, extra = maskcut(features(OBJECTS), GRID, n_masks=1, details=True)
    assert sorted(labels.unique().tolist()) == [0, 1]
    assert any(torch.equal(labels == 1, obj) for obj in OBJECTS)
    assert extra["eigenvector"].shape == GRID and extra["eigenvector"].dtype == torch.float32
    assert torch.equal(maskcut(features(OBJECTS), GRID, n_masks=3, seed=7) == 1, labels == 1)


def test_more_masks_than_objects_drop_the_repeats_and_tiny_ones():
    grid = (12, 12)
    obj = square(3, 3, 5, grid)
    labels = maskcut(features([obj], grid), grid, n_masks=3)
    assert torch.equal(labels, obj.long())


def test_a_later_mask_of_at_most_min_area_is_dropped():
    big, tiny = square(3, 3, 6), square(13, 13, 2)  # the tiny one covers 4 / 400 = 1% of the grid
    f = features([big, tiny])
    assert torch.equal(maskcut(f, GRID), big.long())
    assert torch.equal(maskcut(f, GRID, min_area=0.0), big.long() + 2 * tiny.long())


def test_a_region_on_three_corners_is_not_foreground():
    """A Γ (the top row and the left column: 3 corners) of its own direction is the smaller, more
    salient side of the cut, which TokenCut's seed rule alone would keep; the corner rule says it
    is the background, so the rest of the grid is the object."""
    grid = (12, 12)
    gamma = torch.zeros(grid, dtype=torch.bool)
    gamma[0, :] = gamma[:, 0] = True
    labels = maskcut(features([gamma], grid), grid, n_masks=1)
    assert torch.equal(labels, (~gamma).long())


def test_the_eigenvectors_sign_does_not_matter(monkeypatch):
    """eigh's sign is arbitrary; the seed's side is taken as v > mean before the corner rule."""
    module = importlib.import_module("deepcut.methods.maskcut")  # the package's `maskcut` is the function
    grid = (12, 12)
    gamma = torch.zeros(grid, dtype=torch.bool)
    gamma[0, :] = gamma[:, 0] = True
    cases = [(features(OBJECTS), GRID), (features([gamma], grid), grid)]
    before = [maskcut(f, g) for f, g in cases]
    flipped = module.fiedler_vector
    monkeypatch.setattr(module, "fiedler_vector", lambda W, n: -flipped(W, n))
    assert all(torch.equal(maskcut(f, g), out) for (f, g), out in zip(cases, before))


def test_check_names_the_setting():
    check = method_entry("maskcut").check
    base = OmegaConf.load(REPO / "configs" / "method" / "maskcut.yaml")
    assert check(OmegaConf.create({"method": base})) == []
    bad = OmegaConf.create({"method": {**OmegaConf.to_container(base), "n_masks": 0, "tau": 2}})
    problems = check(bad)
    assert len(problems) == 2
    assert any(p.startswith("method.n_masks=0: ") for p in problems)
    assert any(p.startswith("method.tau=2: ") for p in problems)
    for key, value in (("min_area", 1.0), ("max_overlap", 0), ("n_masks", 1.5)):
        assert check(OmegaConf.create({"method": {key: value}}))[0].startswith(f"method.{key}={value!r}: ")


def test_builds_from_its_config_file():
    cfg = OmegaConf.create({"method": OmegaConf.load(REPO / "configs" / "method" / "maskcut.yaml")})
    assert cfg.method.name == "maskcut"
    method = create_method(cfg)
    assert callable(method)
    assert sorted(method(features(OBJECTS), GRID, seed=0).unique().tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_and_dtype(dtype):
    f = features(OBJECTS).to(dtype)
    out = maskcut(f, GRID)
    assert out.device == f.device and out.dtype == torch.long
