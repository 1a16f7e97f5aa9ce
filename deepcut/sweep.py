"""Signals and sweeps (-m): how a run stops, and how the jobs of a sweep fail alone.

A run's first SIGINT/SIGTERM finishes the images in flight and writes the summary (`STOP`). In a
sweep each job records why it failed in `<job dir>/error.txt`, and the sweep goes on;
`SweepReport` (a Hydra callback) lists the failed jobs at the end and sets the exit code. A
signal to the sweep's process reaches its jobs (`forward_signals`), which stop as single runs do.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from deepcut.errors import one_paragraph
from deepcut.files import atomic_write_text

log = logging.getLogger("deepcut")


def job_device(device: str, hc, gpu_count=None) -> str:
    """The device of this run: `device=auto` in a job of a local parallel sweep (the joblib
    launcher) on a machine with several GPUs gives job k GPU k mod count, so n_jobs <= count jobs
    running side by side each get their own (joblib starts them in order; set
    hydra.launcher.n_jobs to the number of GPUs). Anything else is left as given: a single run, an
    explicit device, and submitit/SLURM jobs, which see only their own GPU already
    (gpus_per_node=1 sets CUDA_VISIBLE_DEVICES). ``gpu_count``: for tests, a stand-in for
    torch.cuda.device_count."""
    from hydra.types import RunMode

    if device != "auto" or hc.mode != RunMode.MULTIRUN or "joblib" not in str(hc.launcher.get("_target_", "")):
        return device
    if gpu_count is None:
        import torch

        gpu_count = torch.cuda.device_count
    count = gpu_count()
    return f"cuda:{int(hc.job.num) % count}" if count > 1 else device


def job_dirname(num, overrides: str) -> str:
    """A sweep job's directory (hydra.sweep.subdir): its number, then its overrides (Hydra's
    override_dirname) as a name that is also a valid override value and shell word: loss=cc,seed=1
    becomes 3_loss-cc+seed-1 (= and , would break hydra.run.dir=<it> and resume=<it>), a path's
    separators and other unsafe characters become _, and the overrides are cut at 100 characters
    (the number keeps the name unique)."""
    name = re.sub(r"[^\w.+-]", "_", str(overrides).replace("=", "-").replace(",", "+"))[:100].rstrip("+")
    return f"{num}_{name}" if name else str(num)


def job_number(dirname: str) -> tuple:
    """Sort key of job directories: by their number (2 before 10), then by name."""
    head = dirname.split("_", 1)[0]
    return (int(head) if head.isdigit() else float("inf"), dirname)


def job_dirs(sweep_dir: str | Path) -> dict[int, Path]:
    """A sweep's job directories by job number, in order (their names: `job_dirname`); {} where the
    sweep directory does not exist (yet)."""
    sweep_dir = Path(sweep_dir)
    found = [p for p in (sweep_dir.iterdir() if sweep_dir.is_dir() else ()) if p.is_dir() and p.name.split("_", 1)[0].isdigit()]
    return {job_number(p.name)[0]: p for p in sorted(found, key=lambda p: job_number(p.name))}


def sweep_jobs(overrides=()) -> int:
    """The joblib launcher's default n_jobs: one job per core this process may use, and no more jobs
    than the sweep has (``overrides``: its command line), so that the cores go to the jobs there are:
    joblib's loky gives each worker cores // n_jobs torch threads. Measured on 2 cores (120 ECSSD
    photos, 2 seeds, the default recipe): two jobs of one thread each 24.7 s, one after the other
    with two threads 31.1 s (joblib) and 31.4 s (launcher=basic). A glob() sweep counts as many jobs
    as cores."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    jobs = 1
    for override in OverridesParser.create().parse_overrides([str(o) for o in overrides]):
        if override.is_sweep_override():
            try:
                jobs *= len(list(override.sweep_string_iterator()))
            except HydraException:  # glob(): its options are known only to the config loader
                jobs = cores
    return max(1, min(cores, jobs))


for _name, _resolver in (("deepcut.job_dirname", job_dirname), ("deepcut.sweep_jobs", sweep_jobs)):
    if not OmegaConf.has_resolver(_name):  # configs/hydra/default.yaml and configs/launcher/joblib.yaml use them
        OmegaConf.register_new_resolver(_name, _resolver)


def write_error(out: Path, code: int, reason: str) -> None:
    """<job dir>/error.txt: the exit code a single run would have had, then the reason."""
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out) / "error.txt", f"exit {code}\n{reason}\n")
    except OSError:
        pass  # an unwritable directory: the reason is in the log


class StopSignal:
    """This process's SIGINT/SIGTERM: the first is recorded (`signum`; the run finishes the images in
    flight, writes its summary and stops), a second one ends the process at once. In a sweep the
    handlers stay for the life of the process, so a job that has not started yet does not start."""

    def __init__(self):
        self.signum = 0
        self.installed = False
        self.on_signal = None  # called with the signal number, e.g. to pass it on to a sweep's jobs

    def install(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread() and not self.installed:
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, self._handle)
            self.installed = True
        return self

    def _handle(self, signum, frame):
        if self.on_signal is not None:
            self.on_signal(signum)
        if self.signum:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        log.warning("%s: finishing the images in flight, then writing the summary (again to stop at once)",
                    signal.Signals(signum).name)


STOP = StopSignal()
JOBS_DIR = ".jobs"  # <sweep dir>/.jobs/<pid>: the processes running this sweep's jobs


def register_job(sweep_dir: Path) -> None:
    """Called by every job of a sweep (after `STOP.install`): if it runs in a worker process, the
    sweep's process may now pass its signals to this one, which handles them as a run does."""
    try:
        folder = Path(sweep_dir) / JOBS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        (folder / str(os.getpid())).write_text(str(os.getppid()))
    except OSError:
        pass


def forward_signals(sweep_dir: Path) -> None:
    """In the sweep's own process: a signal is passed on to every worker that runs (or ran) a job of
    this sweep; the jobs stop as single runs do, and the ones not started yet do not start."""
    folder = Path(sweep_dir) / JOBS_DIR

    def forward(signum):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "stop").write_text(str(signum))  # jobs not started yet do not start
        except OSError:
            pass
        for entry in folder.iterdir() if folder.is_dir() else []:
            try:
                if entry.name.isdigit() and entry.read_text().strip() == str(os.getpid()):
                    os.kill(int(entry.name), signum)
            except (OSError, ValueError):
                pass
        if STOP.signum:  # the second signal: nothing of the sweep may outlive this process
            for pid in _children():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    STOP.on_signal = forward
    STOP.install()


def new_sweep(sweep_dir: Path) -> None:
    """Forget what a previous sweep into the same directory left (continuing it runs every job again)."""
    folder = Path(sweep_dir) / JOBS_DIR
    for entry in folder.iterdir() if folder.is_dir() else []:
        entry.unlink(missing_ok=True)


def stop_requested(sweep_dir: Path) -> int:
    """The signal that stopped this process or its sweep (0: none)."""
    if STOP.signum:
        return STOP.signum
    try:
        return int((Path(sweep_dir) / JOBS_DIR / "stop").read_text())
    except (OSError, ValueError):
        return 0


def _children() -> list[int]:
    """Ids of this process's child processes (Linux /proc; elsewhere none)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return out


def end_workers() -> None:
    """Stop joblib's idle worker processes (kept for reuse by default), so none outlives the sweep."""
    try:
        from joblib.externals.loky import reusable_executor
    except ImportError:
        return
    if reusable_executor._executor is not None:
        reusable_executor._executor.shutdown(wait=True)


def write_table(sweep_dir: Path) -> None:
    """The sweep's comparison at its end: one row per configuration (the overrides that vary, the
    metrics, seeds pooled; deepcut.tables.sweep_table), printed and written to sweep.md beside
    multirun.yaml. A sweep whose table cannot be made still ends as it would have."""
    try:
        from deepcut.files import atomic_write_text
        from deepcut.tables import find_runs, sweep_table, to_markdown
        runs, _ = find_runs([sweep_dir])
        if not len(runs):
            return
        text = to_markdown(sweep_table(runs))
        atomic_write_text(sweep_dir / "sweep.md", text)
        log.info("the sweep's jobs (%s):\n%s", sweep_dir / "sweep.md", text)
    except Exception as err:  # noqa: BLE001 - the table is a convenience; the jobs' results stand
        log.warning("no table of the sweep (%s: %s); python -m deepcut.tables %s makes one", type(err).__name__,
                    err, sweep_dir)


class SweepReport(Callback):
    """Hydra callback (configs/hydra/default.yaml): at the end of a sweep, lists the jobs that
    failed (their error.txt), prints and writes the table of its jobs (sweep.md) and sets `exit_code` (the largest of the failed jobs' codes) for
    run.py to exit with."""
    exit_code = 0

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        new_sweep(sweep_dir)
        forward_signals(sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        end_workers()
        sweep_dir = Path(str(config.hydra.sweep.dir))
        failed = []
        for error in sorted(sweep_dir.glob("*/error.txt"), key=lambda p: job_number(p.parent.name)):
            lines = error.read_text(errors="replace").splitlines() or ["exit 1"]
            code = int(lines[0].split()[-1]) if re.fullmatch(r"exit \d+", lines[0]) else 1
            failed.append((error.parent, code, " ".join(lines[1:])))
        if failed:
            log.error("%d job(s) of the sweep failed (reasons in their error.txt):\n%s", len(failed),
                      "\n".join(f"  {d}: exit {c}: {one_paragraph(r, 300)}" for d, c, r in failed))
            SweepReport.exit_code = max(c for _, c, _ in failed)
        write_table(sweep_dir)
        stopped = stop_requested(sweep_dir)
        if stopped:
            log.warning("sweep stopped by %s; continue it with the same command and hydra.sweep.dir=%s (finished "
                        "images are kept, each job resumes)", signal.Signals(stopped).name, sweep_dir)
            SweepReport.exit_code = 128 + stopped

