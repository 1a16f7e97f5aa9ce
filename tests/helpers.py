"""Helpers shared by the tests of run directories, results, the cache, validation, sweeps, evaluate.py and faults."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from PIL import Image

from deepcut.api import compose_config
from deepcut.results import read_rows

REPO = Path(__file__).resolve().parent.parent
TINY = compose_config(backbone="tiny_random").backbone
# Slow enough (~0.2 s per image) that a signal lands mid-run; one image per batch.
SLOW = ["optimizer.steps=200", "backbone.batch_size=1"]
N_GOOD = 10


def photo(path: Path, size=(64, 48), seed=0, mode="RGB", **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode).save(path, **save)
    return path


def mask(path: Path, size=(64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.zeros((size[1], size[0]), np.uint8)
    a[size[1] // 4: 3 * size[1] // 4, size[0] // 4: 3 * size[0] // 4] = 255
    Image.fromarray(a).save(path)
    return path


def good_dataset(root: Path, n: int = N_GOOD) -> Path:
    for i in range(n):
        size = (40 + 8 * i, 64 - 2 * i)
        photo(root / "images" / f"img{i:02d}.png", size, seed=i)
        mask(root / "masks" / f"img{i:02d}.png", size)
    (root / "images" / "broken.png").write_bytes(b"")  # failures belong in a resumed run too
    mask(root / "masks" / "broken.png")
    return root


def coco(root: Path, year=2014, split="train") -> Path:
    """Images 1, 2: ordinary; 3: only a crowd annotation; 4: annotated but its file is absent. Image 1's
    first object has a polygon (a 10 x 20 rectangle), its crowd region an uncompressed RLE."""
    name = (lambda i: f"COCO_train2014_{i:012d}.jpg") if year == 2014 else (lambda i: f"{i:012d}.jpg")
    for i in (1, 2, 3):
        photo(root / f"{split}{year}" / name(i), size=(64, 48), seed=i)
    anns = [(1, [1.5, 2.0, 10.0, 20.0], 0), (1, [0, 0, 64, 48], 1), (2, [5, 6, 7, 8], 0), (3, [0, 0, 9, 9], 1),
            (4, [1, 1, 2, 2], 0)]
    data = {"images": [{"id": i, "file_name": name(i), "width": 64, "height": 48} for i in (1, 2, 3, 4)],
            "annotations": [{"id": k, "image_id": i, "bbox": b, "iscrowd": c, "area": b[2] * b[3], "category_id": 1}
                            for k, (i, b, c) in enumerate(anns, 1)],
            "categories": [{"id": 1, "name": "thing"}]}
    data["annotations"][0]["segmentation"] = [[1.5, 2.0, 11.5, 2.0, 11.5, 22.0, 1.5, 22.0]]
    data["annotations"][1]["segmentation"] = {"size": [48, 64], "counts": [0, 48 * 32, 48 * 32]}  # the left half
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / f"instances_{split}{year}.json").write_text(json.dumps(data))
    return root


def env(cache: Path) -> dict:
    e = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return {**e, "DEEPCUT_CACHE": str(cache), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def command(out: Path, data: Path, *extra: str) -> list[str]:
    return [sys.executable, "run.py", f"hydra.run.dir={out}", "backbone=tiny_random", "dataset=folder",
            f"dataset.root={data}", *extra]


def run_py(out: Path, data: Path, cache: Path, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(command(out, data, *extra), cwd=REPO, env=env(cache), capture_output=True, text=True,
                          timeout=timeout)


def n_rows(out: Path) -> int:
    path = out / "results.csv"
    return max(0, path.read_text().count("\n") - 1) if path.exists() else 0


def outcome(out: Path) -> tuple[list[dict], dict, dict]:
    """Rows by id and summary without timings, and the label PNGs' bytes."""
    rows = sorted(read_rows(out / "results.csv"), key=lambda r: r["id"])
    for r in rows:
        r.pop("time_s", None)
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("time_s", None)
    labels = {p.name: p.read_bytes() for p in (out / "labels").iterdir()}
    return rows, summary, labels


def no_temporaries(out: Path) -> None:
    assert not [p for p in out.rglob("*.tmp")], "a temporary file was left behind"


def ok(proc, code=0) -> None:
    output = proc.stdout + (proc.stderr or "")
    assert proc.returncode == code, output[-4000:]


def config(*overrides: str):
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        return compose("config", overrides=["backbone=tiny_random", *overrides])


def folder_config(root: Path, *overrides: str):
    return config("dataset=folder", f"dataset.root={root}", *overrides)


def job_dirs(sweep: Path) -> dict[str, Path]:
    """deepcut.sweep.job_dirs keyed by the job number as a string ("0", "1", ...), as the tests index them."""
    from deepcut.sweep import job_dirs as numbered
    return {str(num): path for num, path in numbered(sweep).items()}
