"""On-disk cache of backbone features, shared by every run and sweep job (Deep Spectral Methods'
stage boundary: features are computed once, every later experiment reuses them).

An entry's key hashes everything that determines it: the backbone's parameters, facet, stride,
precision and the preprocessed image tensor (so resolution, resize mode and normalisation too).
Entries are safetensors files written to a temporary name and renamed into place, with a checksum
of the tensor bytes: concurrent writers never collide and a torn or corrupt entry reads as a miss.

  python -m deepcut.cache info     # size report
  python -m deepcut.cache clear    # delete every entry
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from deepcut.offline import cache_dir


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


class FeatureCache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_dir()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        path = self._path(key)
        try:
            with safe_open(path, "pt") as f:
                expected = (f.metadata() or {}).get("sha256")
                features = f.get_tensor("features")
        except (SafetensorError, OSError, KeyError):  # missing, torn or foreign file: a miss
            return None
        return features if expected == tensor_digest(features) else None

    def put(self, key: str, features: torch.Tensor) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        features = features.detach().cpu().contiguous()
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file({"features": features}, tmp, metadata={"sha256": tensor_digest(features)})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def info(self) -> tuple[int, int]:
        files = list(self.root.rglob("*.safetensors")) if self.root.exists() else []
        return len(files), sum(f.stat().st_size for f in files)

    def clear(self) -> int:
        n, _ = self.info()
        for f in self.root.rglob("*.safetensors*"):
            f.unlink()
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
