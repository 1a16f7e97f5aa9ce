"""Tests of deepcut/rundir.py (a run directory's lock and reuse checks), with deepcut/preflight.py's resume= and directory checks and files.writable_dir."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from omegaconf import OmegaConf

from deepcut.errors import ConfigError
from deepcut.files import writable_dir
from deepcut.preflight import preflight
from deepcut.results import ResultsWriter
from deepcut.rundir import Lock, RunDir, RunDirBusy
from helpers import folder_config


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


def test_unwritable_output_dir(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="hydra.run.dir=.*cannot be written"):
        writable_dir(tmp_path / "file" / "run", "hydra.run.dir")


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
    reopen(out, folder_config(moved, "dataset.limit=2"))  # a shorter selection that holds the rows done
    (moved / "masks" / "img00.png").write_bytes((b / "masks" / "img01.png").read_bytes())  # other ground truth
    with pytest.raises(ValueError, match="files are not the ones"):
        reopen(out, folder_config(moved))


def test_a_shorter_selection_of_a_finished_run_is_refused_a_longer_one_continues_it(two_datasets, tmp_path):
    """Issue 27: dataset.limit=1 into a directory holding three images' rows rewrote summary.json
    for one image beside a results.csv of three; refused now. A longer selection continues the run."""
    a, _, _ = two_datasets
    out = tmp_path / "run"
    hold(out, folder_config(a, "dataset.limit=3"), rows=("img00", "img01"))  # sorted ids: broken, img00, img01, img02
    with pytest.raises(ValueError, match="holds results for 1 image.s. that this run does not select .first: img01"):
        reopen(out, folder_config(a, "dataset.limit=2"))
    reopen(out, folder_config(a))  # all four: img02 is still to do


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


def test_an_edit_in_the_middle_of_a_file_is_seen_and_older_records_still_verify(two_datasets, tmp_path):
    """Issue 27, item 12: the digest was size + first/last 64 KiB, so resuming over an image edited
    in place in its middle reported stale numbers. Now the whole file; older dataset.json files
    (no "digest" key) are verified with the digest they were written with, then recorded anew."""
    import json
    import shutil

    from deepcut.datasets.io import DIGESTS
    a, _, _ = two_datasets
    big = tmp_path / "big"
    shutil.copytree(a, big, copy_function=shutil.copyfile)
    data = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    Image.fromarray(data).save(big / "images" / "img00.png", compress_level=0)  # > 3 x 64 KiB
    out = tmp_path / "run"
    hold(out, folder_config(big))
    recorded = json.loads((out / "dataset.json").read_text())
    assert recorded["digest"] == "sha256"
    raw = bytearray((big / "images" / "img00.png").read_bytes())
    middle = len(raw) // 2
    raw[middle] ^= 0xFF  # the same size, the same first and last 64 KiB
    (big / "images" / "img00.png").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="files are not the ones given now .first: img00"):
        reopen(out, folder_config(big))
    raw[middle] ^= 0xFF
    (big / "images" / "img00.png").write_bytes(bytes(raw))
    reopen(out, folder_config(big))  # the original bytes again: verified (the digest cache keyed by mtime too)
    from hydra.utils import instantiate
    old = instantiate(folder_config(big).dataset).fingerprint(recorded["images"], "sampled")
    (out / "dataset.json").write_text(json.dumps({"name": "folder", "images": old}))  # as an older deepcut wrote it
    reopen(out, folder_config(big))
    assert json.loads((out / "dataset.json").read_text())["digest"] == "sha256"
    assert DIGESTS.get(big / "images" / "img00.png") == DIGESTS.get(big / "images" / "img00.png")


def test_a_setting_renamed_since_the_run_refuses_the_directory(two_datasets, tmp_path):
    """Issue 27, item 12: only keys both settings knew were compared, so a renamed key escaped."""
    import json
    a, _, _ = two_datasets
    out = tmp_path / "run"
    hold(out, folder_config(a))
    stored = json.loads((out / "settings.json").read_text())
    stored["settings"]["postprocess.old_name"] = stored["settings"].pop("postprocess.upsample")
    (out / "settings.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="computed with postprocess.old_name, which these settings do not have"):
        reopen(out, folder_config(a))
    del stored["settings"]["postprocess.old_name"]  # a key the configs gained since: not compared
    (out / "settings.json").write_text(json.dumps(stored))
    reopen(out, folder_config(a))
