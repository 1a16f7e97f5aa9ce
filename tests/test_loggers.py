"""Loggers: the default writes local files only and never imports wandb; WandbLogger runs W&B for
real in offline mode (no mocks), and what it logged is read back from the offline run's files."""
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from deepcut.loggers import WandbLogger
from helpers import job_dirs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _wandb_files_in_tmp(tmp_path_factory, monkeypatch):
    """W&B's own settings, cache, staging and temp files go to a test dir, not ~ or /tmp."""
    home = tmp_path_factory.mktemp("wandb_home")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(home / var.lower()))
    monkeypatch.setenv("TMPDIR", str(home))  # wandb's media/artifact temp dirs (subprocesses)
    monkeypatch.setattr("tempfile.tempdir", str(home))  # ... and in this process
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")


# ------------------------------------------------------------------ reading an offline run

def records(path: Path):
    """The records of a W&B transaction log (run-<id>.wandb): LevelDB log framing around wandb's own
    protobuf Record messages (wandb 0.2x+ writes it from its Go core and ships no Python reader)."""
    from wandb.proto import wandb_internal_pb2 as pb
    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    block, pos, chunks = 32768, 7, []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if pos + 7 + length > len(data):  # a record still being written
            return
        chunks.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(b"".join(chunks))
            chunks = []
            yield record
        elif kind == 0:
            chunks = []


def offline_run(run_dir: Path, wait_s: float = 30) -> dict:
    """What one offline run recorded: run (project, group, name), config, summary, history, exit code.
    wandb.finish() can return before wandb-core has written the log's tail: wait for the exit record."""
    files = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    deadline = time.monotonic() + wait_s
    while True:
        out = parse_run(files[0])
        if out["exit"] is not None or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def parse_run(path: Path) -> dict:
    out = {"config": {}, "summary": {}, "history": [], "exit": None, "dir": path.parent}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out["run"] = {"project": r.run.project, "group": r.run.run_group, "name": r.run.display_name}
            out["config"].update({u.key: json.loads(u.value_json) for u in r.run.config.update})
        elif kind == "config":
            out["config"].update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "summary":
            out["summary"].update({u.key or ".".join(u.nested_key): json.loads(u.value_json) for u in r.summary.update})
        elif kind == "history":
            out["history"].append({i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
        elif kind == "exit":
            out["exit"] = r.exit.exit_code
    return out


def table_rows(run: dict, key: str = "per_image") -> pd.DataFrame:
    path = run["dir"] / "files" / run["summary"][f"{key}.path"]
    table = json.loads(path.read_text())
    return pd.DataFrame(table["data"], columns=table["columns"])


# ------------------------------------------------------------------ unit tests

def test_default_logger_writes_run_info_and_never_imports_wandb(tmp_path):
    code = ("import sys, pathlib; from deepcut.loggers import RunLogger; lg = RunLogger(); "
            f"lg.start({{}}, pathlib.Path({str(tmp_path)!r})); lg.log_image({{'id': 'a'}}); lg.log_summary({{}}); "
            "lg.finish(); assert 'wandb' not in sys.modules, 'wandb imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
    info = json.loads((tmp_path / "run_info.json").read_text())
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert info["commit"] == head and isinstance(info["dirty"], bool)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_info.json"]


def test_wandb_mode_comes_from_config_or_env(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert WandbLogger().mode == "disabled"
    assert WandbLogger(mode="offline").mode == "offline"
    monkeypatch.delenv("WANDB_MODE")
    assert WandbLogger().mode == "online"
    with pytest.raises(ValueError, match="online, offline or disabled"):
        WandbLogger(mode="dryrun")
    monkeypatch.setenv("WANDB_MODE", "offline")
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        assert compose("config", overrides=["logger=wandb"]).logger.mode == "offline"
        assert compose("config", overrides=["logger=wandb", "logger.mode=disabled"]).logger.mode == "disabled"


def _fake_run(out: Path, n: int = 3) -> list[dict]:
    """results.csv and overlays as run.py leaves them, for n images."""
    rows = [{"id": f"img{i}", "iou": 0.2 * (i + 1), "corloc": i % 2 == 0, "time_s": 0.1 * (i + 1), "n_labels": 2}
            for i in range(n)]
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    (out / "overlays").mkdir()
    for r in rows:
        Image.fromarray(np.full((8, 8, 3), 40 * len(r["id"]), np.uint8)).save(out / "overlays" / f"{r['id']}.jpg")
    return rows


def test_wandb_offline_logs_config_metrics_table_overlays_and_summary(tmp_path):
    rows = _fake_run(tmp_path)
    logger = WandbLogger(project="deepcut-test", group="g", name="n", log_images=2)
    logger.start({"loss": {"name": "cc", "alpha": 3.0}, "seed": 0}, tmp_path)
    for r in rows:
        logger.log_image(dict(r), tmp_path / "overlays" / f"{r['id']}.jpg")
    summary = {"miou": 0.4, "corloc": 200 / 3, "n_images": 3, "n_failed": 0, "method": "DeepCut"}
    logger.log_summary(summary)
    logger.finish(failed=False)
    assert not (ROOT / "wandb").exists() and (tmp_path / "wandb").is_dir()  # under the run dir only
    run = offline_run(tmp_path)
    assert run["run"] == {"project": "deepcut-test", "group": "g", "name": "n"}
    assert run["config"]["loss"] == {"name": "cc", "alpha": 3.0}
    assert run["config"]["run_info"]["commit"] == json.loads((tmp_path / "run_info.json").read_text())["commit"]
    assert run["exit"] == 0
    for key, value in summary.items():
        assert run["summary"][key] == pytest.approx(value) if isinstance(value, float) else run["summary"][key] == value
    steps = [h for h in run["history"] if "running/miou" in h]
    assert [h["image/iou"] for h in steps] == pytest.approx([0.2, 0.4, 0.6])
    assert [h["running/miou"] for h in steps] == pytest.approx([0.2, 0.3, 0.4])
    assert [h["running/corloc"] for h in steps] == pytest.approx([100, 50, 200 / 3])
    assert len(list(run["dir"].glob("files/media/images/overlay_*.jpg"))) == 2  # the first log_images only
    table = table_rows(run)
    assert table["id"].tolist() == ["img0", "img1", "img2"]
    assert table["iou"].tolist() == pytest.approx([0.2, 0.4, 0.6]) and table["time_s"].tolist() == pytest.approx([0.1, 0.2, 0.3])


def test_a_failed_run_is_finished_with_exit_code_1(tmp_path):
    logger = WandbLogger(project="deepcut-test")
    logger.start({"seed": 0}, tmp_path)
    logger.finish(failed=True)
    logger.finish(failed=True)  # finishing twice is harmless (run.py's finally after an error)
    assert offline_run(tmp_path)["exit"] == 1


# ------------------------------------------------------------------ through run.py (slow)

@pytest.mark.slow
def test_run_py_with_logger_wandb_offline_groups_a_sweep(tmp_path):
    import skimage.data
    data = tmp_path / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    for name in ("astronaut", "chelsea"):
        Image.fromarray(getattr(skimage.data, name)()).resize((96, 64)).save(data / "images" / f"{name}.png")
        mask = np.zeros((64, 96), np.uint8)
        mask[16:48, 24:72] = 255
        Image.fromarray(mask).save(data / "masks" / f"{name}.png")
    cwd, sweep = tmp_path / "cwd", tmp_path / "sweep"
    cwd.mkdir()
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "-m", "logger=wandb", "loss=ncut,cc", "launcher=basic",
                           "backbone=tiny_random", "dataset=folder", f"dataset.root={data}", f"hydra.sweep.dir={sweep}"],
                          cwd=cwd, capture_output=True, text=True, timeout=600, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(cwd.iterdir()) == []  # W&B wrote nothing to the working directory
    groups = set()
    for job, loss in (("0", "ncut"), ("1", "cc")):
        summary = json.loads((job_dirs(sweep)[job] / "summary.json").read_text())
        run = offline_run(job_dirs(sweep)[job])
        groups.add(run["run"]["group"])
        assert run["run"]["name"].startswith(f"loss={loss},backbone=tiny_random") and "logger=" not in run["run"]["name"]
        assert run["config"]["loss"]["name"] == loss and run["config"]["hydra"]["multirun"] is True
        assert run["exit"] == 0
        for key in ("miou", "acc", "max_f_beta", "time_s", "n_images", "n_failed"):
            assert run["summary"][key] == pytest.approx(summary[key])
        last = [h for h in run["history"] if "running/miou" in h][-1]
        assert last["running/miou"] == pytest.approx(summary["miou"])  # after the last image: the final mean
        assert sorted(table_rows(run)["id"]) == ["astronaut", "chelsea"]
        assert len(list(run["dir"].glob("files/media/images/overlay_*.jpg"))) == 2
    assert groups == {str(sweep)[-128:]}  # both jobs of the sweep in one W&B group


def test_wandb_online_without_login_is_a_setting_error(tmp_path, monkeypatch):
    """No API key: one paragraph saying how to log in or run offline (run.py exits 2), no traceback."""
    from deepcut.loggers import LoggerError
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))  # no stored login
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    logger = WandbLogger(mode="online")
    with pytest.raises(LoggerError, match="wandb login.*logger.mode=offline"):
        logger.start({}, tmp_path / "run")
    assert isinstance(LoggerError("x"), ValueError)  # run.py reports ValueErrors as settings errors, exit 2
