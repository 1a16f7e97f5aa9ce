import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tests never touch the user's cache: converted weights and features go to a temp dir."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DEEPCUT_CACHE", str(tmp_path_factory.mktemp("deepcut_cache")))
    mp.setenv("WANDB_MODE", "offline")
    yield
    mp.undo()
