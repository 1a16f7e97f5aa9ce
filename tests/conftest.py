import pytest

from helpers import SLOW, good_dataset, mask, ok, outcome, photo, run_py


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tests never touch the user's cache: converted weights and features go to a temp dir."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DEEPCUT_CACHE", str(tmp_path_factory.mktemp("deepcut_cache")))
    mp.setenv("WANDB_MODE", "offline")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def clean(tmp_path_factory):
    """An uninterrupted run: what every interrupted and resumed run must reproduce."""
    base = tmp_path_factory.mktemp("clean")
    data = good_dataset(base / "data")
    out = base / "run"
    ok(run_py(out, data, base / "cache", *SLOW))
    return data, out, outcome(out)


@pytest.fixture
def two_datasets(tmp_path):
    """A and B: the same file names, different images; C: other names."""
    a, b, c = good_dataset(tmp_path / "A", 3), tmp_path / "B", tmp_path / "C"
    for i in range(3):
        photo(b / "images" / f"img{i:02d}.png", (40 + 8 * i, 64 - 2 * i), seed=100 + i)
        mask(b / "masks" / f"img{i:02d}.png", (40 + 8 * i, 64 - 2 * i))
        photo(c / "images" / f"other{i}.png", seed=i)
        mask(c / "masks" / f"other{i}.png")
    return a, b, c
