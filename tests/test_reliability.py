"""Faults injected into real `python run.py` runs (tiny random backbone, CPU): bad files and ground
truth, NaN features, degenerate clusterings, SIGKILL + resume, SIGTERM, concurrent runs, corrupted
cache entries, wrong settings. Plus the pieces in-process: results.csv, locks, the cache, validation."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from deepcut.api import compose_config
from deepcut.cache import FeatureCache, tensor_digest
from deepcut.datasets import Folder, Sample, load_image
from deepcut.pipeline import Extractor, Loaded, Segmenter
from deepcut.postprocess import Postprocess
from deepcut.sweep import JOBS_DIR, new_sweep, stop_requested
from deepcut.preflight import preflight
from deepcut.results import ResultsWriter, read_results, read_rows
from deepcut.rundir import Lock, RunDir, RunDirBusy
from deepcut.errors import ConfigError, one_paragraph
from deepcut.files import writable_dir
from deepcut.validate import validate

REPO = Path(__file__).resolve().parent.parent
TINY = compose_config(backbone="tiny_random").backbone
# Slow enough (~0.2 s per image) that a signal lands mid-run; one image per batch.
SLOW = ["optimizer.steps=200", "backbone.batch_size=1"]
N_GOOD = 10


# ---------------------------------------------------------------- helpers


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


def env(cache: Path) -> dict:
    e = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return {**e, "DEEPCUT_CACHE": str(cache), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def command(out: Path, data: Path, *extra: str) -> list[str]:
    return [sys.executable, "run.py", f"hydra.run.dir={out}", "backbone=tiny_random", "dataset=folder",
            f"dataset.root={data}", *extra]


def run_py(out: Path, data: Path, cache: Path, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(command(out, data, *extra), cwd=REPO, env=env(cache), capture_output=True, text=True,
                          timeout=timeout)


def start(out: Path, data: Path, cache: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(command(out, data, *extra), cwd=REPO, env=env(cache), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def n_rows(out: Path) -> int:
    path = out / "results.csv"
    return max(0, path.read_text().count("\n") - 1) if path.exists() else 0


def wait_rows(proc: subprocess.Popen, out: Path, k: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while n_rows(out) < k:
        assert proc.poll() is None, f"the run ended before {k} rows: {proc.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.005)


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


# ---------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """Every kind of bad input next to every odd but valid image format. Returns (root, cache,
    expected error substrings by id)."""
    root = tmp_path_factory.mktemp("faulty")
    images, masks = root / "images", root / "masks"
    for stem, save in {"rgb": {}, "grey": {"mode": "L"}, "rgba": {"mode": "RGBA"}, "palette": {"mode": "P"},
                       "onebit": {"mode": "1"}}.items():
        photo(images / f"{stem}.png", seed=len(stem), **save)
    photo(images / "cmyk.jpg", mode="CMYK", quality=95)
    Image.fromarray((np.random.default_rng(3).random((48, 64)) * 65535).astype(np.uint16)).save(images / "i16.png")
    photo(images / "tiny.png", size=(3, 2))                       # smaller than one 8 px patch
    photo(images / "big.png", size=(240, 180))                    # > max_pixels=10000 below: downscaled
    Image.new("RGB", (64, 48), (90, 140, 30)).save(images / "flat.png")  # one colour: one cluster
    photo(images / "nan.png", seed=7)                             # its cached features are NaN
    (images / "empty.png").write_bytes(b"")
    whole = (images / "rgb.png").read_bytes()
    (images / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (images / "text.jpg").write_text("not a picture\n")
    photo(images / "mask_size.png")
    photo(images / "mask_bad.png")
    for p in images.iterdir():
        size = {"tiny": (3, 2), "big": (240, 180)}.get(p.stem, (64, 48))
        mask(masks / f"{p.stem}.png", size)
    mask(masks / "mask_size.png", (30, 20))
    (masks / "mask_bad.png").write_bytes(b"\x89PNG garbage")
    # NaN features for nan.png: a cache entry under the key the run will compute.
    cache = root.parent / f"{root.name}_cache"
    store = FeatureCache(cache / "features")
    extractor = Extractor(**TINY, device="cpu", cache=store)
    tensor = extractor.preprocess(load_image(images / "nan.png"))
    (features, _), = extractor([tensor])
    store.put(extractor.fingerprint + tensor_digest(tensor), torch.full_like(features, float("nan")))
    errors = {"empty": "empty file", "truncated": "not a readable image", "text": "not a readable image",
              "mask_size": "mask is 30x20", "mask_bad": "not a readable image", "nan": "non-finite"}
    return root, cache, errors


@pytest.mark.slow
def test_bad_input_is_recorded_and_the_run_goes_on(faulty, tmp_path):
    root, cache, errors = faulty
    out = tmp_path / "run"
    proc = run_py(out, root, cache, "++max_pixels=10000")
    ok(proc)
    rows = {r["id"]: r for r in read_rows(out / "results.csv")}
    ids = {p.stem for p in (root / "images").iterdir()}
    assert set(rows) == ids
    for sid, expected in errors.items():
        assert expected in rows[sid].get("error", ""), rows[sid]
        assert "iou" not in rows[sid]
    for sid in ids - errors.keys():
        assert not rows[sid].get("error"), rows[sid]
        assert 0 <= rows[sid]["iou"] <= 1
        assert (out / "labels" / f"{sid}.png").is_file()
    assert "downscaled from 240x180" in rows["big"]["note"]
    assert rows["flat"]["degenerate"] is True and rows["flat"]["n_labels"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == len(ids) and summary["n_failed"] == len(errors)
    assert summary["n_evaluated"] == len(ids) - len(errors)
    assert summary["n_degenerate"] >= 1 and summary["complete"] is True
    assert "Traceback" not in proc.stdout + proc.stderr
    # strict=true: the same run (failed images retried, the rest skipped) now exits 1, summary written.
    (out / "summary.json").unlink()
    strict = run_py(out, root, cache, "++max_pixels=10000", "strict=true")
    ok(strict, 1)
    assert "resuming" in strict.stdout and "strict=true" in strict.stdout
    again = json.loads((out / "summary.json").read_text())
    assert {k: v for k, v in again.items() if k != "time_s"} == {k: v for k, v in summary.items() if k != "time_s"}


def test_process_isolates_the_failing_image():
    """A method failing on one image of a batch (e.g. a NaN loss raising) fails that image only;
    a method putting every patch in one cluster gives a degenerate row, not an error."""
    def extractor(tensors):
        return [(t.flatten()[:16].reshape(16, 1).repeat(1, 4), (4, 4)) for t in tensors]

    def method(features, grid, *, seed=0):
        if features[0, 0] == 1:
            raise FloatingPointError("non-finite loss")
        if features[0, 0] == 2:
            return torch.zeros(grid, dtype=torch.long)
        return (torch.arange(16).reshape(grid) % 2)

    segmenter = Segmenter(extractor, method, Postprocess(), seed=0)
    batch = []
    for i, value in enumerate([0.5, 1, 2]):
        image = Image.new("RGB", (16, 16))
        sample = Sample(f"s{i}", "", image, np.ones((16, 16), bool))
        batch.append((sample, torch.full((3, 16, 16), float(value)), None, None))
    batch.append(("s3", None, "DatasetError: empty file", None))
    rows = {row["id"]: (row, extras) for row, extras in segmenter.process(batch)}
    assert rows["s3"][0]["error"].startswith("DatasetError") and rows["s3"][1] == ()
    assert rows["s1"][0]["error"] == "FloatingPointError: non-finite loss"
    assert rows["s2"][0]["degenerate"] is True and rows["s2"][0]["iou"] == 0.0
    assert rows["s0"][0]["degenerate"] is False and "error" not in rows["s0"][0]


def test_huge_image_is_downscaled_before_processing(tmp_path):
    """A 10000x10000 photo decodes (PIL's bomb limit is ~179 Mpx) and is bounded to max_pixels
    before anything full-size (labels, overlay, metrics) is computed."""
    (tmp_path / "images").mkdir()
    Image.new("RGB", (10000, 10000), (200, 30, 60)).save(tmp_path / "images" / "huge.png")
    mask(tmp_path / "masks" / "huge.png", (10000, 10000))
    extractor = Extractor(**TINY, device="cpu")
    with pytest.warns(Image.DecompressionBombWarning):  # PIL warns above ~89 Mpx, raises above ~179 Mpx
        sample, tensor, error, note = Loaded(Folder(root=tmp_path), [0], extractor.preprocess, 4096 * 4096)[0]
    assert error is None and note.startswith("downscaled from 10000x10000")
    assert sample.image.size == sample.mask.shape[::-1] == (4096, 4096)
    assert tensor.shape == (3, 64, 64)


# ---------------------------------------------------------------- kill, signal, resume


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """An uninterrupted run: what every interrupted and resumed run must reproduce."""
    base = tmp_path_factory.mktemp("clean")
    data = good_dataset(base / "data")
    out = base / "run"
    ok(run_py(out, data, base / "cache", *SLOW))
    return data, out, outcome(out)


@pytest.mark.slow
def test_sigkill_at_a_random_point_then_resume_is_identical(clean, tmp_path):
    data, _, expected = clean
    out, cache = tmp_path / "run", tmp_path / "cache"  # its own cache: features are recomputed too
    k = random.Random().randint(1, N_GOOD - 2)
    proc = start(out, data, cache, *SLOW)
    wait_rows(proc, out, k)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    killed_at = n_rows(out)
    assert killed_at < N_GOOD + 1, "the run ended before the kill"
    assert not (out / "summary.json").exists()
    done = sum(not r.get("error") for r in read_rows(out / "results.csv"))  # failed images are retried
    resumed = run_py(out, data, cache, *SLOW)
    ok(resumed)
    assert not done or f"{done} of {N_GOOD + 1} images already done" in resumed.stdout
    assert outcome(out) == expected, f"killed after {killed_at} rows"
    no_temporaries(out)


@pytest.mark.slow
def test_sigterm_finishes_the_image_writes_the_summary_and_resumes(clean, tmp_path):
    data, _, expected = clean
    out, cache = tmp_path / "run", tmp_path / "cache"
    proc = start(out, data, cache, *SLOW)
    wait_rows(proc, out, 2)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "Traceback" not in output and "resume=" in output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["n_images"] == n_rows(out) < N_GOOD + 1
    # resume=<dir> alone continues it with its own settings (and may change operational ones).
    resumed = subprocess.run([sys.executable, "run.py", f"resume={out}", "num_workers=1"], cwd=REPO,
                             env=env(cache), capture_output=True, text=True, timeout=180)
    ok(resumed)
    assert outcome(out) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "run"]  # no second run directory
    no_temporaries(out)


def test_torn_last_line_is_dropped_and_kept_rows_are_rewritten_atomically(tmp_path):
    w = ResultsWriter(tmp_path)
    w.add({"id": "a", "iou": 0.1 + 0.2, "corloc": True})
    w.add({"id": "b", "error": "DatasetError: empty file"})
    w.add({"id": "c", "iou": 1 / 3, "kp_gt": "3", "kp_pred": "1"})
    w.close()
    with open(tmp_path / "results.csv", "a") as f:
        f.write("d,,,False,0.5,0.")  # killed mid-line
    (tmp_path / "labels" / ".d.png.123.tmp").write_bytes(b"half")
    w = ResultsWriter(tmp_path)
    try:
        assert w.done == {"a", "c"}  # b failed: retried
        rows = read_rows(tmp_path / "results.csv")
        assert rows == [{"id": "a", "iou": 0.1 + 0.2, "corloc": True}, {"id": "c", "iou": 1 / 3, "kp_gt": "3", "kp_pred": "1"}]
        assert read_results(tmp_path / "results.csv")["id"].tolist() == ["a", "c"]
        no_temporaries(tmp_path)
    finally:
        w.close()


# ---------------------------------------------------------------- concurrency and the cache


def test_one_directory_has_one_writer(tmp_path):
    first = Lock(tmp_path)
    with pytest.raises(RunDirBusy, match="in use by another run"):
        Lock(tmp_path)
    first.release()
    Lock(tmp_path).release()  # released on close (and by the OS when a process dies)


def test_resume_becomes_the_runs_own_command(tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps(
        {"settings": {"loss.k": 3}, "overrides": ["backbone=tiny_random", "loss.k=3", "num_workers=2"]}))
    argv = preflight([f"resume={tmp_path}", "num_workers=0", "device=cpu"])
    assert argv == ["backbone=tiny_random", "loss.k=3", "num_workers=0", "device=cpu", f"hydra.run.dir={tmp_path}"]
    assert preflight(["--cfg", "job", f"resume={tmp_path}", "loss.k=3"])[:2] == ["--cfg", "job"]


@pytest.mark.parametrize("argv, message", [
    (["resume={run}", "-m"], "cannot be swept"),
    (["resume={run}/nothing"], "not the directory of a run"),
    (["hydra.run.dir={run}/file/sub"], "hydra.run.dir="),
    (["-m", "hydra.sweep.dir={run}/file/sub"], "hydra.sweep.dir="),
])
def test_preflight_refuses_before_hydra_touches_the_directory(tmp_path, capsys, argv, message):
    (tmp_path / "settings.json").write_text(json.dumps({"settings": {}, "overrides": ["backbone=tiny_random"]}))
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as err:
        preflight([a.format(run=tmp_path) for a in argv])
    assert err.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_same_run_dir_started_twice_at_once(clean, tmp_path):
    """Two runs given one directory (e.g. two started in the same second with a per-second
    default): one works, the other stops with exit 2 or finds everything done; never mixed rows."""
    data, _, expected = clean
    out = tmp_path / "run"
    procs = [start(out, data, tmp_path / "cache", *SLOW) for _ in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 0], [0, 2]), outputs
    if codes == [0, 2]:
        assert "in use by another run" in outputs[[p.returncode for p in procs].index(2)]
    assert outcome(out) == expected


@pytest.mark.slow
def test_concurrent_runs_share_a_cache_then_corrupted_entries_are_recomputed(clean, tmp_path):
    data, _, expected = clean
    cache = tmp_path / "cache"
    procs = [start(tmp_path / f"run{i}", data, cache, *SLOW) for i in range(2)]
    for p in procs:
        output = p.communicate(timeout=240)[0]
        assert p.returncode == 0, output[-3000:]
    for i in range(2):
        assert outcome(tmp_path / f"run{i}") == expected
    entries = sorted((cache / "features").rglob("*.safetensors"))
    assert len(entries) == N_GOOD
    store = FeatureCache(cache / "features")
    assert all(store.get(p.stem) is not None for p in entries)
    no_temporaries(cache)
    # Corrupt every entry (a flipped byte in the data, in the header, a truncation, garbage, empty).
    for i, p in enumerate(entries):
        data_bytes = bytearray(p.read_bytes())
        kind = i % 5
        if kind == 0:
            data_bytes[-5] ^= 0xFF
        elif kind == 1:
            data_bytes[12] ^= 0x55
        elif kind == 2:
            data_bytes = data_bytes[: len(data_bytes) // 2]
        elif kind == 3:
            data_bytes = bytearray(os.urandom(len(data_bytes)))
        else:
            data_bytes = bytearray()
        p.write_bytes(bytes(data_bytes))
        assert store.get(p.stem) is None
    out = tmp_path / "after"
    ok(run_py(out, data, cache, *SLOW))
    assert outcome(out) == expected
    assert all(store.get(p.stem) is not None for p in entries), "corrupted entries were not rewritten"


# ---------------------------------------------------------------- settings


def config(*overrides: str):
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        return compose("config", overrides=["backbone=tiny_random", *overrides])


@pytest.mark.parametrize("overrides, setting", [
    (["backbone.name=vit_nonexistent_patch8"], "backbone.name='vit_nonexistent_patch8'"),
    (["backbone.stride=3"], "backbone.stride=3"),
    (["backbone.layer=5"], "backbone.layer=5"),
    (["backbone.resolution=4"], "backbone.resolution=4"),
    (["+backbone.model_kwargs.nonsense=1"], "backbone.model_kwargs"),
    (["loss.k=1"], "loss.k=1"),
    (["loss=cc", "graph.alpha=0"], "graph.alpha=0"),
    (["optimizer.steps=0"], "optimizer.steps=0"),
    (["optimizer.lr=-0.001"], "optimizer.lr=-0.001"),
    (["mode=parts", "loss.k=1"], "loss.k=1"),
    (["method=kmeans", "method.k=1"], "method.k=1"),
    (["backbone.weights=/no/such/checkpoint.pth"], "backbone.weights='/no/such/checkpoint.pth'"),
    (["num_workers=-1"], "num_workers=-1"),
])
def test_validation_names_the_setting(overrides, setting):
    with pytest.raises(ConfigError) as err:
        validate(config(*overrides))
    assert setting in str(err.value)
    assert "\n" not in str(err.value)  # one paragraph


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        validate(config("backbone.stride=3", "loss.k=1", "optimizer.lr=0"))
    assert len(one_paragraph(err.value).splitlines()) == 3


def test_validation_passes_every_shipped_backbone_and_method():
    for group in ("backbone", "method", "loss", "mode"):
        for option in sorted((REPO / "configs" / group).glob("*.yaml")):
            cfg = config(f"{group}={option.stem}")
            weights = str(cfg.backbone.weights)
            if weights.endswith((".pth", ".pt", ".safetensors")):
                # A backbone shipped as a local checkpoint (MoCo-v3) is valid once its file exists;
                # without it, validation names the file and the allowed values.
                with pytest.raises(ConfigError, match="no such file.*use hub, random, offline"):
                    validate(cfg)
                continue
            validate(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_a_setting_error():
    with pytest.raises(ConfigError, match="device='cuda'"):
        validate(config("device=cuda"))


def test_unwritable_output_dir(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="hydra.run.dir=.*cannot be written"):
        writable_dir(tmp_path / "file" / "run", "hydra.run.dir")


@pytest.mark.slow
def test_user_errors_exit_2_with_one_paragraph_and_no_traceback(tmp_path):
    (tmp_path / "file").write_text("")
    data = good_dataset(tmp_path / "data", 1)
    torch.save({"model": {"blocks.0.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    cases = {  # the arguments and what the message must name
        "backbone": (["backbone.name=vit_nonexistent_patch8"], "backbone.name"),
        "root": ([f"dataset.root={tmp_path / 'missing'}"], f"expected the folder {tmp_path / 'missing'}"),
        "checkpoint": ([f"backbone.weights={tmp_path / 'other.pth'}"], "does not fit backbone.name"),
        "run_dir": ([f"hydra.run.dir={tmp_path / 'file' / 'run'}"], "hydra.run.dir"),
        "resume": ([f"resume={tmp_path / 'file'}"], "resume="),
    }
    procs = {}
    for name, (args, _) in cases.items():
        cmd = command(tmp_path / name, data, *args)
        if name == "run_dir":
            cmd.pop(2)  # its own hydra.run.dir instead
        procs[name] = subprocess.Popen(cmd, cwd=REPO, env=env(tmp_path / "cache"), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 2, (name, stdout[-2000:], stderr[-2000:])
        assert cases[name][1] in stdout + stderr, (name, stdout[-2000:], stderr[-2000:])
        assert "Traceback" not in stdout + stderr, name


# ---------------------------------------------------------------- a reused directory (issue 11)


def folder_config(root: Path, *overrides: str):
    return config("dataset=folder", f"dataset.root={root}", *overrides)


def hold(out: Path, cfg, rows=("img00",)) -> None:
    """A run into ``out`` that finished the images ``rows`` (results.csv rows as run.py writes them)."""
    from hydra.utils import instantiate
    held = RunDir.open(out, cfg, instantiate(cfg.dataset), ["loss.k=2"])
    writer = ResultsWriter(out)
    for sid in rows:
        writer.add({"id": sid, "iou": 0.5})
    writer.close()
    held.close()


def reopen(out: Path, cfg):
    from hydra.utils import instantiate
    RunDir.open(out, cfg, instantiate(cfg.dataset), []).close()


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


def test_reused_dir_refuses_other_data_and_accepts_the_same_data_moved(two_datasets, tmp_path):
    a, b, c = two_datasets
    out = tmp_path / "run"
    hold(out, folder_config(a))
    with pytest.raises(ValueError, match="files are not the ones given now .first: img00"):
        reopen(out, folder_config(b))  # same names, other pictures
    with pytest.raises(ValueError, match="not in this folder data set .first: img00"):
        reopen(out, folder_config(c))  # other names: results.csv would mix two data sets
    import shutil
    moved = tmp_path / "moved"
    shutil.copytree(a, moved, copy_function=shutil.copyfile)  # new paths and times, same content
    reopen(out, folder_config(moved))
    reopen(out, folder_config(moved, "dataset.limit=1"))  # a shorter or longer selection of the same data
    (moved / "masks" / "img00.png").write_bytes((b / "masks" / "img01.png").read_bytes())  # other ground truth
    with pytest.raises(ValueError, match="files are not the ones"):
        reopen(out, folder_config(moved))


@pytest.mark.parametrize("damage", ["missing", "corrupt", "no_dataset_json"])
def test_results_that_cannot_be_verified_are_not_continued(two_datasets, tmp_path, damage):
    a, _, _ = two_datasets
    out = tmp_path / "run"
    hold(out, folder_config(a))
    if damage == "missing":
        (out / "settings.json").unlink()
    elif damage == "corrupt":
        (out / "settings.json").write_text('{"overrides": ["loss.k=2"], "sett')
    else:
        (out / "dataset.json").unlink()
    with pytest.raises(ValueError, match="cannot be verified"):  # (settings.json would have refused k=3)
        reopen(out, folder_config(a, *(["loss.k=3"] if damage != "no_dataset_json" else [])))


def test_settings_are_compared_resolved_so_a_default_given_is_no_change(two_datasets, tmp_path):
    a, _, _ = two_datasets
    out = tmp_path / "run"
    hold(out, folder_config(a))
    k = folder_config(a).loss.k
    reopen(out, folder_config(a, f"loss.k={k}", "num_workers=2", "device=cpu"))  # the default, and operational keys
    with pytest.raises(ValueError, match=rf"loss.k={k} \(now {k + 1}\)"):
        reopen(out, folder_config(a, f"loss.k={k + 1}"))


def test_refused_or_concurrent_run_leaves_the_directory_as_it_was(two_datasets, tmp_path):
    """The lock comes first, then the checks; .hydra/, settings.json and dataset.json are written
    only by the run that holds the directory and continues its results."""
    from hydra.utils import instantiate
    a, b, _ = two_datasets
    out = tmp_path / "run"
    cfg = folder_config(a, "loss.k=2")
    hc = OmegaConf.create({"overrides": {"task": ["loss.k=2"]}, "runtime": {"choices": {}}})
    held = RunDir.open(out, cfg, instantiate(cfg.dataset), ["loss.k=2"], hc)
    ResultsWriter(out).add({"id": "img00", "iou": 0.5})
    before = {p.name: p.read_bytes() for p in [*out.glob("*.json"), *(out / ".hydra").iterdir()]}
    assert OmegaConf.load(out / ".hydra" / "config.yaml").loss.k == 2
    other = folder_config(a, "loss.k=4")
    with pytest.raises(RunDirBusy):
        RunDir.open(out, other, instantiate(other.dataset), ["loss.k=4"], hc)
    held.close()
    with pytest.raises(ValueError, match="loss.k=2 .now 4."):
        RunDir.open(out, other, instantiate(other.dataset), ["loss.k=4"], hc)
    with pytest.raises(ValueError, match="files are not the ones"):
        RunDir.open(out, folder_config(b, "loss.k=2"), instantiate(folder_config(b).dataset), ["loss.k=2"], hc)
    assert {p.name: p.read_bytes() for p in [*out.glob("*.json"), *(out / ".hydra").iterdir()]} == before


def test_damaged_cell_on_resume_is_recomputed_not_a_crash(tmp_path):
    w = ResultsWriter(tmp_path)
    w.add({"id": "a", "iou": 0.5})
    w.add({"id": "b", "iou": 0.25})
    w.close()
    text = (tmp_path / "results.csv").read_text().replace("0.25", "0.2x5")
    (tmp_path / "results.csv").write_text(text)
    w = ResultsWriter(tmp_path)
    assert w.done == {"a"} and [r["id"] for r in read_rows(tmp_path / "results.csv")] == ["a"]
    w.close()


# ---------------------------------------------------------------- settings that fail every image (issue 11)


@pytest.mark.parametrize("overrides, setting", [
    (["backbone.resolution=9"], "backbone.resolution=9"),   # tiny_random: 8 px patches, stride 8: one patch
    (["graph.knn=-1"], "graph.knn=-1"),
    (["graph.power=-1"], "graph.power=-1"),
    (["loss.ortho_weight=nan"], "loss.ortho_weight=nan"),
    (["seed=abc"], "seed='abc'"),
    (["objective=bogus"], "objective='bogus'"),
    (["dataset.limit=abc"], "dataset.limit='abc'"),
])
def test_validation_round_two(overrides, setting):
    with pytest.raises(ConfigError) as err:
        validate(config(*overrides))
    assert setting in str(err.value) and "\n" not in str(err.value)


def test_damaged_checkpoint_is_a_backbone_error(tmp_path):
    from deepcut.backbone import BackboneError, read_checkpoint
    (tmp_path / "garbage.pth").write_bytes(os.urandom(1000))
    (tmp_path / "garbage.safetensors").write_bytes(os.urandom(1000))
    for name in ("garbage.pth", "garbage.safetensors"):
        with pytest.raises(BackboneError, match="not a readable checkpoint"):
            read_checkpoint(tmp_path / name)


# ---------------------------------------------------------------- the cache (issue 11)


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


def test_tf32_is_not_left_on_for_later_extractors():
    torch.backends.cuda.matmul.allow_tf32 = False
    image = [Extractor(**TINY, device="cpu").preprocess(Image.new("RGB", (64, 48)))]
    Extractor(**{**TINY, "precision": "tf32"}, device="cpu")(image)
    assert torch.backends.cuda.matmul.allow_tf32 is False


# ---------------------------------------------------------------- sweeps (issue 11)


def sweep(sweep_dir: Path, data: Path, cache: Path, *extra: str, timeout: float = 400) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "run.py", "-m", f"hydra.sweep.dir={sweep_dir}", "backbone=tiny_random", "dataset=folder",
           f"dataset.root={data}", *extra]
    return subprocess.run(cmd, cwd=REPO, env=env(cache), capture_output=True, text=True, timeout=timeout)


def jobs(sweep_dir: Path) -> dict[str, tuple[str, dict | None]]:
    """Per job: its overrides (as one string) -> (error.txt or '', summary or None)."""
    out = {}
    for job in sorted(p for p in sweep_dir.iterdir() if p.name.isdigit()):
        overrides = json.loads((job / "settings.json").read_text())["overrides"] if (job / "settings.json").exists() \
            else None
        error = (job / "error.txt").read_text() if (job / "error.txt").exists() else ""
        summary = json.loads((job / "summary.json").read_text()) if (job / "summary.json").exists() else None
        out[job.name] = (" ".join(overrides or []), error, summary)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_every_job_of_a_sweep_runs_and_failed_ones_are_listed(tmp_path, launcher):
    """A bad value, strict=true with a bad image, and a good job: the good one runs whatever the
    order; each failure's reason is in its directory; the sweep exits non-zero and lists them."""
    data = good_dataset(tmp_path / "data", 2)  # and broken.png
    proc = sweep(tmp_path / "sweep", data, tmp_path / "cache", f"launcher={launcher}", "hydra.launcher.n_jobs=2"
                 if launcher == "joblib" else "seed=0", "loss.k=abc,2", "strict=true,false")
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = jobs(tmp_path / "sweep")
    assert len(result) == 4
    errors = sorted(error.split("\n")[0] for _, error, _ in result.values())
    assert errors == ["", "exit 1", "exit 2", "exit 2"], result
    assert sum("loss.k='abc'" in error for _, error, _ in result.values()) == 2
    good = [summary for _, error, summary in result.values() if not error]
    assert good[0]["complete"] is True and good[0]["n_images"] == 3 and good[0]["n_failed"] == 1
    assert "3 job(s) of the sweep failed" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_refused_sweep_keeps_the_jobs_config(tmp_path):
    data = good_dataset(tmp_path / "data", 1)
    ok(sweep(tmp_path / "sweep", data, tmp_path / "cache", "launcher=basic", "loss.k=2,3"))
    proc = sweep(tmp_path / "sweep", data, tmp_path / "cache", "launcher=basic", "loss.k=4,5")
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    for job, k in (("0", 2), ("1", 3)):
        assert OmegaConf.load(tmp_path / "sweep" / job / ".hydra" / "config.yaml").loss.k == k
        assert f"loss.k={k}" in OmegaConf.load(tmp_path / "sweep" / job / ".hydra" / "overrides.yaml")
        assert "holds results computed with loss.k" in (tmp_path / "sweep" / job / "error.txt").read_text()
    ok(sweep(tmp_path / "sweep", data, tmp_path / "cache", "launcher=basic", "loss.k=2,3"))  # the same sweep resumes
    assert not list((tmp_path / "sweep").glob("*/error.txt"))


def children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (Linux /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            pass
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parents.items() if pp == p}
        todo += list(kids - found)
        found |= kids
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # zombies are gone
    except (OSError, IndexError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigterm_to_a_joblib_sweep_stops_its_jobs_cleanly_and_leaves_no_process(clean, tmp_path):
    data, _, _ = clean
    cmd = [sys.executable, "run.py", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", "backbone=tiny_random",
           "dataset=folder", f"dataset.root={data}", "hydra.launcher.n_jobs=2", "loss.k=2,3,4", *SLOW]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(tmp_path / "cache"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    first = tmp_path / "sweep" / "0"
    deadline = time.monotonic() + 240
    while n_rows(first) < 2:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    family = children(proc.pid)
    assert family, "the sweep has no worker processes"
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
    deadline = time.monotonic() + 30
    while [p for p in family if alive(p)]:
        assert time.monotonic() < deadline, f"processes outlived the sweep: {[p for p in family if alive(p)]}"
        time.sleep(0.2)
    result = jobs(tmp_path / "sweep")
    for name, (_, error, summary) in result.items():
        assert error.startswith("exit 143"), (name, error)
        if summary is not None:  # a job that was running: stopped after its images in flight
            assert summary["complete"] is False and summary["n_images"] < N_GOOD + 1
    assert result["0"][2] is not None and "not started" in result["2"][1]
    assert "Traceback" not in output and "hydra.sweep.dir=" in output


# ---------------------------------------------------------------- evaluate.py (issue 11)


@pytest.fixture
def scored_run(two_datasets, tmp_path):
    """A run directory as run.py leaves it (labels, .hydra/config.yaml, dataset.json) for data A."""
    from hydra.utils import instantiate
    a, b, _ = two_datasets
    out = tmp_path / "run"
    cfg = folder_config(a)
    dataset = instantiate(cfg.dataset)
    RunDir.open(out, cfg, dataset, [], OmegaConf.create({"overrides": {"task": []}})).close()
    (out / "labels").mkdir()
    for i, sid in enumerate(dataset.ids):
        if sid == "broken":  # an empty file: run.py writes no labels for it
            continue
        image = dataset[i].image
        Image.fromarray(np.ones((image.height, image.width), np.uint8)).save(out / "labels" / f"{sid}.png")
    return out, a, b


def evaluate_main(*argv):
    import evaluate
    return evaluate.main([str(a) for a in argv])


def test_evaluate_scores_and_reports_a_damaged_label_map_as_its_row(scored_run):
    out, _, _ = scored_run
    (out / "labels" / "img01.png").write_bytes(b"\x89PNG damaged")
    summary = evaluate_main(out)
    assert summary["n_images"] == 4 and summary["n_failed"] == 2 and summary["n_evaluated"] == 2  # + broken.png
    assert "not a readable label map" in (out / "evaluation.csv").read_text()


@pytest.mark.parametrize("case, message", [
    ("moved", "expected the folder"),
    ("empty", "is empty"),
    ("no_hydra", "no .hydra/config.yaml"),
    ("other_data", "not the files the run's labels were computed on"),
])
def test_evaluate_errors_are_one_paragraph_exit_2(scored_run, capsys, case, message):
    out, a, b = scored_run
    argv = [out]
    if case == "moved":
        a.rename(a.with_name("elsewhere"))
    elif case == "empty":
        (out / ".hydra" / "config.yaml").write_text("")
    elif case == "no_hydra":
        import shutil
        shutil.rmtree(out / ".hydra")
    else:
        argv.append(f"dataset.root={b}")
    with pytest.raises(SystemExit) as err:
        evaluate_main(*argv)
    text = capsys.readouterr().err
    assert err.value.code == 2 and message in text and "Traceback" not in text and len(text.strip().splitlines()) == 1


def test_evaluate_without_hydra_needs_the_data_set_and_types_overrides(scored_run):
    import shutil

    import evaluate
    out, a, _ = scored_run
    shutil.rmtree(out / ".hydra")
    summary = evaluate_main(out, "backbone=tiny_random", "dataset=folder", f"dataset.root={a}", "dataset.limit=2")
    assert summary["n_images"] == 2 and summary["n_failed"] == 1  # broken.png and img00
    (out / ".hydra").mkdir()
    OmegaConf.save(folder_config(a), out / ".hydra" / "config.yaml")
    cfg = evaluate.run_config(out, ["dataset.limit=8", "dataset.root=null"])  # typed as Hydra types them
    assert cfg.dataset.limit == 8 and cfg.dataset.root is None


@pytest.mark.slow
def test_round_two_errors_and_exit_codes_end_to_end(tmp_path):
    """Hydra's own errors exit 2 like ours; a damaged checkpoint and W&B without a login are one
    paragraph; a run where every image failed exits 1; an unwritable cache.dir warns and runs."""
    (tmp_path / "file").write_text("")
    data = good_dataset(tmp_path / "data", 1)
    broken = tmp_path / "broken"
    (broken / "images").mkdir(parents=True)
    (broken / "images" / "a.png").write_bytes(b"")
    (tmp_path / "garbage.pth").write_bytes(os.urandom(2000))
    cases = {  # arguments, the exit code, what the output must say
        "typo": (["loss.kk=3"], 2, "Could not override 'loss.kk'"),
        "option": (["loss=bogus"], 2, "bogus"),
        "weights": ([f"backbone.weights={tmp_path / 'garbage.pth'}"], 2, "not a readable checkpoint"),
        "wandb": (["logger=wandb", "logger.mode=online"], 2, "wandb login"),
        "all_failed": ([f"dataset.root={broken}"], 1, "every image failed"),
        "cache": ([f"cache.dir={tmp_path / 'file' / 'cache'}"], 0, "cannot be written"),
    }
    procs = {}
    for name, (args, _, _) in cases.items():
        e = {**env(tmp_path / "cache"), "HOME": str(tmp_path), "WANDB_CONFIG_DIR": str(tmp_path / "wandb")}
        e.pop("WANDB_API_KEY", None)
        procs[name] = subprocess.Popen(command(tmp_path / name, data, *args), cwd=REPO, env=e, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    for name, proc in procs.items():
        output = proc.communicate(timeout=300)[0]
        code, message = cases[name][1:]
        assert proc.returncode == code and message in output, (name, output[-3000:])
        assert "Traceback" not in output, name
    assert json.loads((tmp_path / "cache" / "summary.json").read_text())["n_failed"] == 1  # broken.png only


@pytest.mark.slow
def test_two_runs_with_different_settings_into_one_dir_at_once(clean, tmp_path):
    """One holds the directory; the other is refused (busy, or other settings) and writes nothing
    there: .hydra/config.yaml, overrides.yaml and settings.json all come from the one that ran."""
    data, _, _ = clean
    out = tmp_path / "run"
    procs = {k: start(out, data, tmp_path / "cache", f"loss.k={k}") for k in (2, 3)}
    codes = {k: (p.wait(timeout=300), p.communicate()[0]) for k, p in procs.items()}
    assert sorted(c for c, _ in codes.values()) == [0, 2], codes
    winner = next(k for k, (c, _) in codes.items() if c == 0)
    assert OmegaConf.load(out / ".hydra" / "config.yaml").loss.k == winner
    assert f"loss.k={winner}" in OmegaConf.load(out / ".hydra" / "overrides.yaml")
    assert json.loads((out / "settings.json").read_text())["settings"]["loss.k"] == winner


def test_a_stopped_sweep_continued_in_its_directory_runs_again(tmp_path):
    """The stop mark a signal leaves for the sweep's jobs not yet started is cleared by the next sweep."""
    (tmp_path / JOBS_DIR).mkdir()
    (tmp_path / JOBS_DIR / "stop").write_text(str(int(signal.SIGTERM)))
    (tmp_path / JOBS_DIR / "12345").write_text("1")
    assert stop_requested(tmp_path) == signal.SIGTERM
    new_sweep(tmp_path)
    assert stop_requested(tmp_path) == 0 and not list((tmp_path / JOBS_DIR).iterdir())
