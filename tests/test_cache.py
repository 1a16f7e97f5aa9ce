"""Tests of deepcut/cache.py: the feature cache (unwritable folders, bad entries, shards, clear)."""
import subprocess
import sys

import torch
from PIL import Image

from deepcut.cache import FeatureCache, tensor_digest
from deepcut.pipeline import Extractor
from helpers import REPO, TINY


def test_unwritable_cache_dir_warns_once_and_computes(tmp_path, caplog):
    (tmp_path / "file").write_text("")
    cache = FeatureCache.usable(tmp_path / "file" / "cache")
    extractor = Extractor(**TINY, device="cpu", cache=cache)
    tensors = [extractor.preprocess(Image.new("RGB", (64, 48), (i * 40, 0, 0))) for i in range(3)]
    with caplog.at_level("WARNING", logger="deepcut"):
        out = extractor(tensors)
        extractor(tensors)
    assert all(torch.isfinite(f).all() for f, _ in out)
    assert cache.read_only and "cannot be written" in caplog.text
    # a folder that goes away mid-run: the next put fails, warns once, and the run goes on
    store = FeatureCache.usable(tmp_path / "gone")
    assert not store.read_only
    import shutil
    shutil.rmtree(tmp_path / "gone")
    (tmp_path / "gone").write_text("")
    store.put("k" * 64, torch.zeros(2, 2))
    assert store.read_only


def test_cache_entry_of_the_wrong_shape_or_dtype_is_a_miss(tmp_path):
    store = FeatureCache(tmp_path)
    store.put("key", torch.ones(4, 8))
    assert store.get("key", (4, 8)) is not None
    assert store.get("key", (8, 4)) is None and store.get("key", (4, 8), torch.float16) is None
    store.put("key", torch.ones(4, 8, dtype=torch.float64))
    assert store.get("key", (4, 8)) is None


def test_cache_entries_spread_over_shards_and_clear_removes_everything(tmp_path):
    store = FeatureCache(tmp_path)
    fingerprint = "f" * 64  # every key of one model starts with it
    for i in range(32):
        store.put(fingerprint + tensor_digest(torch.tensor([i])), torch.zeros(1))
    assert len({p.parent for p in tmp_path.rglob("*.safetensors")}) > 8
    (tmp_path / "ab" / "odd.safetensors").mkdir(parents=True)  # a directory where an entry should be
    (tmp_path / "ab" / "odd.safetensors" / "x").write_text("")
    (tmp_path / "cd").mkdir(exist_ok=True)
    (tmp_path / "cd" / "tmpq1w2e3.tmp").write_text("half")  # left by a killed writer
    proc = subprocess.run([sys.executable, "-m", "deepcut.cache", "clear", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
