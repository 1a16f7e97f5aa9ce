"""On-disk cache of backbone features, shared by every run and sweep job (Deep Spectral Methods'
stage boundary: features are computed once, every later experiment reuses them).

An entry's key hashes everything that determines it: the backbone's parameters, facet, stride,
precision and the preprocessed image tensor (so resolution, resize mode and normalisation too).
Entries are safetensors files written to a temporary name and renamed into place, with a checksum
of the tensor bytes, its shape and dtype: concurrent writers never collide, and a torn or corrupt
entry, or one that is not of the shape and dtype asked for, reads as a miss. Entries are spread
over 256 folders by a hash of the whole key (the key starts with the model's fingerprint, the
same for every entry of a model). A cache folder that cannot be written is used read-only: one
warning, and the run goes on computing what it does not find.

  python -m deepcut.cache info     # size report
  python -m deepcut.cache clear    # delete every entry (and temporary files of killed writers)
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from deepcut.files import atomic_write, cache_dir

log = logging.getLogger("deepcut")

def default_dir() -> Path:
    return cache_dir() / "features"


def tensor_digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_fingerprint(model: torch.nn.Module, **settings) -> str:
    """Digest of the parameters (not the name: two checkpoints of one architecture differ) and
    the extraction settings."""
    h = hashlib.sha256(repr(sorted(settings.items())).encode())
    h.update(tensor_digest(*model.state_dict().values()).encode())
    h.update(str(model.patch_embed.proj.stride).encode())
    return h.hexdigest()


def _layout(t: torch.Tensor) -> str:
    return f"{tuple(t.shape)} {t.dtype}"


class FeatureCache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_dir()
        self.read_only = False

    @classmethod
    def usable(cls, root: str | Path | None = None) -> "FeatureCache":
        """The cache at ``root``, read-only (with one warning) when entries cannot be written there."""
        cache = cls(root)
        try:
            cache.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=cache.root, suffix=".tmp"):
                pass
        except OSError as err:
            cache._read_only(err)
        return cache

    def _read_only(self, err: OSError) -> None:
        if not self.read_only:
            log.warning("cache.dir=%s cannot be written (%s): features are computed without being cached "
                        "(cache.dir=<a writable folder>, or cache.enabled=false)", self.root, err.strerror or err)
        self.read_only = True

    def _path(self, key: str) -> Path:
        return self.root / hashlib.sha256(key.encode()).hexdigest()[:2] / f"{key}.safetensors"

    def get(self, key: str, shape: tuple | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
        """The entry, or None when it is missing, damaged, or not a ``shape`` (when given) ``dtype`` tensor."""
        path = self._path(key)
        try:
            with safe_open(path, "pt") as f:
                meta = f.metadata() or {}
                features = f.get_tensor("features")
        except (SafetensorError, OSError, KeyError):  # missing, torn or foreign file: a miss
            return None
        if meta.get("sha256") != tensor_digest(features) or meta.get("layout") != _layout(features):
            return None
        if features.dtype != dtype or (shape is not None and tuple(features.shape) != tuple(shape)):
            return None
        return features

    def put(self, key: str, features: torch.Tensor) -> None:
        if self.read_only:
            return
        path = self._path(key)
        features = features.detach().cpu().contiguous()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: save_file({"features": features}, tmp, metadata={
                "sha256": tensor_digest(features), "layout": _layout(features)}))
        except OSError as err:  # e.g. a full disk: the run goes on uncached
            self._read_only(err)

    def info(self) -> tuple[int, int]:
        files = list(self.root.rglob("*.safetensors")) if self.root.exists() else []
        return len(files), sum(f.stat().st_size for f in files if f.is_file())

    def clear(self) -> int:
        """Delete every entry and every temporary file; returns the number of entries."""
        n, _ = self.info()
        for f in [*self.root.rglob("*.safetensors*"), *self.root.rglob("*.tmp")] if self.root.exists() else []:
            if f.is_dir() and not f.is_symlink():
                shutil.rmtree(f, ignore_errors=True)
            elif f.exists() or f.is_symlink():
                f.unlink(missing_ok=True)
        return n


def main(argv: list[str]) -> None:
    cache = FeatureCache(argv[1] if len(argv) > 1 else None)
    if argv[:1] == ["clear"]:
        print(f"removed {cache.clear()} entries from {cache.root}")
    elif argv[:1] == ["info"]:
        n, size = cache.info()
        print(f"{cache.root}: {n} entries, {size / 2**20:.1f} MiB")
    else:
        sys.exit("usage: python -m deepcut.cache info|clear [DIR]")


if __name__ == "__main__":
    main(sys.argv[1:])
