"""Tests of deepcut/sweep.py: Hydra sweeps run every job, list the failed ones, stop on a signal and resume."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from deepcut.sweep import JOBS_DIR, job_dirname, job_number, new_sweep, stop_requested, sweep_jobs
from helpers import N_GOOD, REPO, SLOW, env, good_dataset, job_dirs, n_rows, ok


def sweep(sweep_dir: Path, data: Path, cache: Path, *extra: str, timeout: float = 400) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "run.py", "-m", f"hydra.sweep.dir={sweep_dir}", "backbone=tiny_random", "dataset=folder",
           f"dataset.root={data}", *extra]
    return subprocess.run(cmd, cwd=REPO, env=env(cache), capture_output=True, text=True, timeout=timeout)


def jobs(sweep_dir: Path) -> dict[str, tuple[str, dict | None]]:
    """Per job: its overrides (as one string) -> (error.txt or '', summary or None)."""
    out = {}
    for num, job in sorted(job_dirs(sweep_dir).items()):
        overrides = json.loads((job / "settings.json").read_text())["overrides"] if (job / "settings.json").exists() \
            else None
        error = (job / "error.txt").read_text() if (job / "error.txt").exists() else ""
        summary = json.loads((job / "summary.json").read_text()) if (job / "summary.json").exists() else None
        out[num] = (" ".join(overrides or []), error, summary)
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
        job = job_dirs(tmp_path / "sweep")[job]
        assert OmegaConf.load(job / ".hydra" / "config.yaml").loss.k == k
        assert f"loss.k={k}" in OmegaConf.load(job / ".hydra" / "overrides.yaml")
        assert "holds results computed with loss.k" in (job / "error.txt").read_text()
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
    deadline = time.monotonic() + 240
    while n_rows(job_dirs(tmp_path / "sweep").get("0", tmp_path / "none")) < 2:
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


def test_a_stopped_sweep_continued_in_its_directory_runs_again(tmp_path):
    """The stop mark a signal leaves for the sweep's jobs not yet started is cleared by the next sweep."""
    (tmp_path / JOBS_DIR).mkdir()
    (tmp_path / JOBS_DIR / "stop").write_text(str(int(signal.SIGTERM)))
    (tmp_path / JOBS_DIR / "12345").write_text("1")
    assert stop_requested(tmp_path) == signal.SIGTERM
    new_sweep(tmp_path)
    assert stop_requested(tmp_path) == 0 and not list((tmp_path / JOBS_DIR).iterdir())


def test_job_directories_are_named_by_their_overrides(tmp_path):
    """Issue 27, item 15: 0, 1, 2 said nothing; a path's separators must not nest directories."""
    assert job_dirname(3, "dataset.root=/data/ecssd,experiment=base/paper,loss=cc") == \
        "3_dataset.root-_data_ecssd+experiment-base_paper+loss-cc"
    assert job_dirname(0, "") == "0"
    long = job_dirname(12, "x" * 300)
    assert long.startswith("12_x") and len(long) == 103
    assert sorted(["10_a", "2_b", "1_c"], key=job_number) == ["1_c", "2_b", "10_a"]
    for name in ("10_a", "2_b-c", "1", ".submitit", "x_3"):
        (tmp_path / "sweep" / name).mkdir(parents=True)
    (tmp_path / "sweep" / "4_file").write_text("not a job")
    from deepcut.sweep import job_dirs as numbered  # helpers.job_dirs keys them by strings
    found = numbered(tmp_path / "sweep")  # the jobs only, in job order, whatever else the sweep holds
    assert list(found.items()) == [(1, tmp_path / "sweep/1"), (2, tmp_path / "sweep/2_b-c"), (10, tmp_path / "sweep/10_a")]
    assert numbered(tmp_path / "none") == {}
    from hydra import compose, initialize_config_dir

    from deepcut.config import CONFIGS
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=["loss=cc", "seed=1"], return_hydra_config=True)
    cfg.hydra.job.num, cfg.hydra.job.override_dirname = 4, "loss=cc,seed=1"
    assert cfg.hydra.sweep.subdir == "4_loss-cc+seed-1"
    from hydra.core.override_parser.overrides_parser import OverridesParser
    assert OverridesParser.create().parse_override(f"hydra.run.dir=/s/{cfg.hydra.sweep.subdir}").value() == \
        "/s/4_loss-cc+seed-1"  # usable as it is in resume=<dir> and hydra.run.dir=<dir>


def test_joblib_runs_one_job_per_core_and_no_more_than_the_sweep_has(monkeypatch):
    """Issue 27, item 15: n_jobs=-1 started one worker per core whatever the sweep, so a sweep of 2
    jobs on 16 cores ran each job on one thread (loky gives a worker cores // n_jobs threads)."""
    for cores, overrides, jobs in ((2, ["seed=0,1,2"], 2), (16, ["seed=0,1"], 2), (16, ["seed=0,1", "loss=ncut,cc"], 4),
                                   (16, ["seed=range(3)", "dataset.limit=5"], 3), (8, ["experiment=glob(paper_*)"], 8),
                                   (1, ["seed=0,1"], 1), (16, [], 1)):
        monkeypatch.setattr("os.sched_getaffinity", lambda _, cores=cores: set(range(cores)))
        assert sweep_jobs(overrides) == jobs, (cores, overrides)
    from hydra import compose, initialize_config_dir

    from deepcut.config import CONFIGS
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=["launcher=joblib"], return_hydra_config=True)
    cfg.hydra.overrides.task = ["seed=0,1,2"]  # as the sweeper sees the command line
    assert cfg.hydra.launcher.n_jobs == 3  # 3 jobs, 16 cores (the last patch): the config resolves it


def test_joblib_job_gets_its_own_gpu():
    from hydra.types import RunMode

    from deepcut.sweep import job_device

    def hc(mode, launcher, num):
        return OmegaConf.create({"mode": mode, "launcher": {"_target_": launcher}, "job": {"num": num}})

    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    four = lambda: 4  # noqa: E731  (a stand-in for torch.cuda.device_count on a 4-GPU machine)
    assert [job_device("auto", hc(RunMode.MULTIRUN, joblib, k), four) for k in range(6)] == \
        ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert job_device("auto", hc(RunMode.MULTIRUN, joblib, 3), lambda: 1) == "auto"   # one GPU: as given
    assert job_device("auto", hc(RunMode.MULTIRUN, joblib, 3), lambda: 0) == "auto"   # CPU only
    assert job_device("cpu", hc(RunMode.MULTIRUN, joblib, 3), four) == "cpu"          # explicit device
    assert job_device("auto", hc(RunMode.RUN, joblib, 3), four) == "auto"             # a single run
    slurm = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert job_device("auto", hc(RunMode.MULTIRUN, slurm, 3), four) == "auto"         # sees its own GPU only
