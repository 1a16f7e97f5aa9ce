"""run.py and evaluate.py end to end, as a user runs them (subprocesses through Hydra)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TINY = ["backbone=tiny_random", "backbone.resolution=64"]


def run(*args, cwd=ROOT, script="run.py", check=True):
    proc = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "HYDRA_FULL_ERROR": "1"}, timeout=600)
    if check and proc.returncode:
        raise AssertionError(f"{script} {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def labels_of(out: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) for p in sorted((out / "labels").glob("*.png"))}


@pytest.mark.real
def test_default_run_writes_every_artefact_under_the_run_dir(tmp_path):
    out = tmp_path / "run"
    run(f"hydra.run.dir={out}", cwd=tmp_path)
    labels = labels_of(out)
    assert sorted(labels) == ["astronaut", "chelsea", "coffee", "motorcycle", "rocket"]
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 5 and rows["error"].isna().all() and rows[["x0", "y0", "x1", "y1"]].notna().all().all()
    assert len(list((out / "overlays").glob("*.jpg"))) == 5
    assert (out / ".hydra" / "config.yaml").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 5 and summary["n_failed"] == 0
    from deepcut.datasets import Demo
    demo = Demo()
    for i, sid in enumerate(demo.ids):  # label maps at the photo's own size, some foreground, some background
        image = demo[i].image
        assert labels[sid].shape == (image.height, image.width)
        assert 0 < (labels[sid] > 0).mean() < 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing else in the working dir


def test_save_maps_writes_the_soft_assignment_and_changes_no_label(tmp_path):
    """Issue 27, item 17: the soft assignment (DeepCut) or the eigenvector (TokenCut) as .npz
    beside the labels, as TokenCut's and DSM's scripts save them."""
    plain, maps, peer = tmp_path / "plain", tmp_path / "maps", tmp_path / "peer"
    run(f"hydra.run.dir={plain}", *TINY, "dataset.limit=2")
    run(f"hydra.run.dir={maps}", *TINY, "dataset.limit=2", "save_maps=true")
    a, b = labels_of(plain), labels_of(maps)
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    soft = np.load(maps / "maps" / "astronaut.npz")["soft"]
    assert soft.ndim == 3 and np.allclose(soft.sum(0), 1, atol=1e-4)  # (K, h, w), a distribution per patch
    run(f"hydra.run.dir={peer}", *TINY, "dataset.limit=1", "save_maps=true", "method=tokencut")
    assert set(np.load(peer / "maps" / "astronaut.npz")) == {"eigenvector"}
    assert not (plain / "maps").exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_a_runs_files_honour_the_umask(tmp_path, umask, mode):
    """Issue 27, item 13: files written atomically (through mkstemp's 0600 temporaries) came out
    0600 under umask 022, so a colleague could not read results.csv or the labels."""
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "run.py"), f"hydra.run.dir={out}", *TINY, "dataset.limit=2"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: os.umask(umask))
    assert proc.returncode == 0, proc.stderr[-2000:]
    modes = {str(p.relative_to(out)): p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert {"results.csv", "summary.json", "settings.json", "dataset.json", "labels/chelsea.png"} <= set(modes)
    assert set(modes.values()) == {mode}, modes


@pytest.mark.parametrize("overrides", [["loss=cc"], ["mode=parts", "loss.k=3"], ["mode=parts", "mode.split_background=true"],
                                       ["method=tokencut"], ["optimizer.restarts=3", "optimizer.combine=best"],
                                       ["postprocess.largest_component=true", "postprocess.bilateral=true"]])
def test_options_run_and_give_contiguous_labels(tmp_path, overrides):
    run(f"hydra.run.dir={tmp_path}", *TINY, *overrides)
    labels = labels_of(tmp_path)
    assert len(labels) == 5
    for lab in labels.values():
        values = np.unique(lab)
        assert values.tolist() == list(range(len(values)))


def test_resolution_and_aspect_ratio_options(tmp_path):
    run(f"hydra.run.dir={tmp_path}", *TINY, "backbone.resize=short_side", "backbone.stride=4")
    import skimage.data
    assert labels_of(tmp_path)["astronaut"].shape == skimage.data.astronaut().shape[:2]


def test_help_lists_the_config_groups():
    out = run("--help").stdout
    for group in ("backbone", "graph", "gnn", "loss", "optimizer", "mode", "method", "postprocess", "dataset"):
        assert f"{group}:" in out


@pytest.mark.parametrize("post", [[], ["postprocess.bilateral=true"]], ids=["coarse", "bilateral"])
def test_folder_dataset_and_evaluate_reproduce_the_run(tmp_path, post):
    images, masks = tmp_path / "data" / "images", tmp_path / "data" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):  # a bright square on a noisy dark background: its mask is the square
        img = (rng.random((48, 64, 3)) * 60).astype(np.uint8)
        img[10:30, 20:44] = 220
        Image.fromarray(img).save(images / f"im{i}.png")
        m = np.zeros((48, 64), np.uint8)
        m[10:30, 20:44] = 255
        Image.fromarray(m).save(masks / f"im{i}.png")
    out = tmp_path / "run"
    run(f"hydra.run.dir={out}", *TINY, "dataset=folder", f"dataset.root={tmp_path / 'data'}", *post)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 4 and summary["n_evaluated"] == 4
    # The numbers are the saved label maps' against the known square (the refined mask's, with the
    # bilateral solver): IoU and accuracy per image, so evaluate.py re-scores them exactly.
    truth = np.zeros((48, 64), bool)
    truth[10:30, 20:44] = True
    rows = pd.read_csv(out / "results.csv").set_index("id")
    ious = []
    for sid, lab in labels_of(out).items():
        pred = lab > 0
        iou = (pred & truth).sum() / (pred | truth).sum() if (pred | truth).any() else 1.0
        assert rows.loc[sid, "iou"] == pytest.approx(iou) and rows.loc[sid, "acc"] == pytest.approx((pred == truth).mean())
        ious.append(iou)
    assert summary["miou"] == pytest.approx(np.mean(ious))
    run(str(out), script="evaluate.py")
    again = json.loads((out / "evaluation.json").read_text())
    for key in ("miou", "acc", "max_f_beta"):
        assert again[key] == pytest.approx(summary[key], abs=1e-9)


@pytest.mark.real
@pytest.mark.skipif(not (SHARED / "VOCdevkit").exists(), reason="../shared/data is absent")
def test_voc_corloc_and_evaluate_on_real_files(tmp_path):
    out = tmp_path / "voc"
    run(f"hydra.run.dir={out}", "dataset=voc12", f"dataset.root={SHARED}", "dataset.limit=8")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 8 and 0 <= summary["corloc"] <= 100
    run(str(out), script="evaluate.py")
    assert json.loads((out / "evaluation.json").read_text())["corloc"] == pytest.approx(summary["corloc"])


def test_a_signal_after_the_last_image_leaves_a_complete_run_that_exits_0(tmp_path, monkeypatch):
    """Issue 27, item 11: a joblib job that had finished (summary complete) when the sweep got
    SIGTERM was listed as failed with 143; a stop once every image is done stops nothing."""
    import importlib.util
    import signal

    from hydra.utils import instantiate

    from deepcut import sweep
    from deepcut.api import segmenter_from_config
    from deepcut.results import ResultsWriter
    from helpers import config, good_dataset

    spec = importlib.util.spec_from_file_location("run_script", ROOT / "run.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    cfg = config("dataset=folder", f"dataset.root={good_dataset(tmp_path / 'data', 2)}", "save_overlays=false")
    dataset, segmenter = instantiate(cfg.dataset), segmenter_from_config(cfg)
    out = tmp_path / "run"
    writer, logger = ResultsWriter(out, True, False), instantiate(cfg.logger)
    logger.start({}, out, writer.rows)
    add = writer.add

    def add_then_signal(row, *extras):  # SIGTERM arrives as the last image's row is written
        add(row, *extras)
        if len(writer.done) == len(dataset):
            monkeypatch.setattr(sweep.STOP, "signum", int(signal.SIGTERM))

    monkeypatch.setattr(writer, "add", add_then_signal)
    summary, stopped = script.segment(cfg, out, dataset, segmenter, writer, logger)
    assert sweep.STOP.signum == signal.SIGTERM  # the signal did arrive
    assert summary["complete"] and summary["n_images"] == len(dataset) == 3 and stopped == 0
