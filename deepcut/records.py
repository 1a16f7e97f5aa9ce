"""The records of a run directory, read and written here only: `settings.json` (the overrides
given and every setting the results depend on) and `dataset.json` (a content digest of each
image and its ground truth, by id). Light (json only), so the command line can read them before
anything heavy is imported."""
from __future__ import annotations

import json
from pathlib import Path

from deepcut.files import atomic_write_text


def read_settings(out: Path) -> dict | None:
    """settings.json of a run directory: {"overrides": [...], "settings": {...}}, or None."""
    try:
        stored = json.loads((Path(out) / "settings.json").read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(stored, dict) and isinstance(stored.get("settings"), dict) and isinstance(stored.get("overrides"), list)
    return stored if ok else None


def write_settings(out: Path, overrides: list[str], settings: dict) -> None:
    atomic_write_text(Path(out) / "settings.json", json.dumps({"overrides": list(overrides), "settings": settings},
                                                              indent=2, sort_keys=True) + "\n")


def read_fingerprint(out: Path) -> dict | None:
    """dataset.json of a run directory: {image id: digest}, or None."""
    stored = _dataset_json(out)
    images = stored.get("images") if isinstance(stored, dict) else None
    return images if isinstance(images, dict) else None


def fingerprint_digest(out: Path) -> str:
    """How dataset.json's digests were computed (ImageDataset.fingerprint's ``digest``): "sha256",
    or "sampled" for a run directory recorded before whole-file digests."""
    stored = _dataset_json(out)
    return stored.get("digest", "sampled") if isinstance(stored, dict) else "sha256"


def _dataset_json(out: Path):
    try:
        return json.loads((Path(out) / "dataset.json").read_text())
    except (OSError, ValueError):
        return None


def write_fingerprint(out: Path, name: str, images: dict) -> None:
    atomic_write_text(Path(out) / "dataset.json", json.dumps({"name": name, "digest": "sha256", "images": images},
                                                             indent=1, sort_keys=True) + "\n")
