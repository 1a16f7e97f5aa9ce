"""End-to-end fault injection into real `python run.py` runs, across modules: bad input, SIGKILL/SIGTERM and resume, concurrent runs, corrupted cache entries, wrong settings."""
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
from omegaconf import OmegaConf
from PIL import Image

from deepcut.cache import FeatureCache, tensor_digest
from deepcut.datasets import load_image
from deepcut.pipeline import Extractor
from deepcut.results import read_rows
from helpers import (N_GOOD, REPO, SLOW, TINY, command, env, good_dataset, job_dirs, mask, n_rows, no_temporaries, ok,
                     outcome, photo, run_py)


def start(out: Path, data: Path, cache: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(command(out, data, *extra), cwd=REPO, env=env(cache), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_rows(proc: subprocess.Popen, out: Path, k: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while n_rows(out) < k:
        assert proc.poll() is None, f"the run ended before {k} rows: {proc.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.005)


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


@pytest.mark.slow
@pytest.mark.parametrize("bad", [["postprocess.upsample=cubic"], ["optimizer.combine=vote", "loss=cc"]])
def test_a_rejected_setting_leaves_its_directory_free_for_the_corrected_command(tmp_path, bad):
    """Issue 27: the rejected run wrote settings.json and dataset.json first, so the corrected
    command into the same directory was refused ("holds results computed with ...")."""
    data, out = good_dataset(tmp_path / "data", 1), tmp_path / "run"
    ok(run_py(out, data, tmp_path / "cache", *bad), code=2)
    assert not (out / "settings.json").exists() and not (out / "dataset.json").exists()
    ok(run_py(out, data, tmp_path / "cache"))
    assert json.loads((out / "summary.json").read_text())["complete"]


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


@pytest.mark.slow
def test_a_sweep_whose_objective_the_data_cannot_give_stops_at_its_first_trial(tmp_path):
    """Issue 27, item 7: optuna on the bundled photos (no masks) ran every trial, then ended in a
    raw traceback ("Return value must be float-castable. Got 'None'")."""
    cmd = [sys.executable, "run.py", "-m", "sweeper=optuna", "backbone=tiny_random", "hydra.sweeper.n_trials=4",
           f"hydra.sweep.dir={tmp_path / 'sweep'}", "launcher=basic"]
    done = subprocess.run(cmd, cwd=REPO, env=env(tmp_path / "cache"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert "objective=miou: needs masks as ground truth, and demo has none" in done.stderr
    assert list(job_dirs(tmp_path / "sweep")) == ["0"]  # no second trial


@pytest.mark.slow
def test_a_single_run_goes_on_without_its_objectives_ground_truth(tmp_path):
    """Only a sweep reads the objective: a paper experiment's objective=nmi (experiment=cub_parts)
    must not stop a single run on one's own photos, which have no parts to score."""
    cmd = [sys.executable, "run.py", "experiment=cub_parts", "dataset=demo", "backbone=tiny_random", "backbone.layer=-1",
           "dataset.limit=2", f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run(cmd, cwd=REPO, env=env(tmp_path / "cache"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n_images"] == 2 and summary["complete"] and "nmi" not in summary
