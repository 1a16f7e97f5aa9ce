"""A run directory: which settings and which data its results belong to, who may write it, and how
a command continues it. The one home of the keys that do not change results and of override
parsing; run.py and the tools call these.

A directory's results are continued (resume=<dir>, or the same hydra.run.dir again) only when this
run can prove it computes the same thing: `settings.json` (every setting that changes results)
must match, and `dataset.json` (a content digest of each image and its ground truth, by id) must
match for every image already done. Anything that differs, or that cannot be verified (a missing
or unreadable record next to existing results), is refused with one paragraph and exit code 2.
The directory's lock is taken before anything is written into it, `.hydra/` included (Hydra's own
writing of it is switched off: configs/hydra/default.yaml), so a refused run leaves it as it was.

Sweeps (-m): each job records why it failed in `<job dir>/error.txt`, and the sweep goes on;
`SweepReport` (a Hydra callback) lists the failed jobs at the end and sets the exit code. A
signal to the sweep's process reaches its jobs (`forward_signals`), which stop as single runs do.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from deepcut.files import atomic_write_text
from deepcut.results import read_raw
from deepcut.validate import ConfigError, one_paragraph, writable_dir

log = logging.getLogger("deepcut")

# Settings that change no image's result: a resume may give them anew; settings.json leaves them out.
OPERATIONAL = ("device", "num_workers", "strict", "save_labels", "save_overlays", "cache", "logger", "launcher",
               "sweeper", "objective", "resume", "hydra", "backbone.batch_size")
# Where the data is. Not compared as settings: dataset.json says whether the files there are the
# images (and ground truth) the results were computed on, so a moved data set may be resumed.
LOCATION = ("data_root", "dataset.root", "dataset.path")
# Which of the data set's images: a resume may extend or shorten the run (the summary covers the
# images of this run's selection only); make_tables.py treats it as a variant of the recipe.
SELECTION = ("dataset.limit", "dataset.shard", "dataset.num_shards")


def within(key: str, keys) -> bool:
    """``key`` is one of ``keys`` or inside one (`cache.dir` is within `cache`)."""
    return any(key == k or key.startswith(k + ".") for k in keys)


def operational(key: str) -> bool:
    """True for a key whose value does not go into settings.json (see the three lists above)."""
    return within(key, OPERATIONAL + LOCATION + SELECTION)


def override_key(override: str) -> str:
    """`+a.b=1`, `~a.b`, `a.b=1` -> `a.b`."""
    return override.split("=", 1)[0].lstrip("+~")


def override_value(override: str) -> str:
    return override.split("=", 1)[1] if "=" in override else ""


def parse_override(override: str):
    """One override as Hydra reads it: (key, typed value), e.g. `dataset.limit=8` -> 8, `null` -> None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(override)
    return parsed.key_or_group, parsed.value()


def settings(cfg: DictConfig) -> dict:
    """The settings the results depend on, flattened to dotted keys (settings.json): the groups of
    DeepCut's stages only for the methods that read them (deepcut.registry). A value that only
    refers to another setting (${loss.k}) is that setting, recorded once."""
    from deepcut.registry import METHOD_GROUPS, method_entry

    unread = set(METHOD_GROUPS) - set(method_entry(cfg.method.name).groups)
    flat = {}

    def walk(raw: dict, value: dict, prefix: str) -> None:
        for k, v in value.items():
            key = f"{prefix}{k}"
            if operational(key) or key in unread or (isinstance(raw[k], str) and re.fullmatch(r"\$\{[\w.]+\}", raw[k])):
                continue
            if isinstance(v, dict) and v:
                walk(raw[k], v, key + ".")
            else:
                flat[key] = v

    walk(OmegaConf.to_container(cfg, resolve=False), OmegaConf.to_container(cfg, resolve=True), "")
    return json.loads(json.dumps(flat, default=str))  # as stored: tuples become lists, paths strings


# ---------------------------------------------------------------- a run split into shards


def shard_key(out: Path) -> tuple[str, int, int] | None:
    """(what the run computes: settings and dataset.limit; shard; num_shards) of a run directory,
    or None when its settings.json is not readable."""
    stored = read_settings(out)
    if stored is None:
        return None
    given = dict(parse_override(o) for o in stored["overrides"] if within(override_key(o), SELECTION))
    recipe = json.dumps([stored["settings"], given.get("dataset.limit")], sort_keys=True, default=str)
    return recipe, int(given.get("dataset.shard", 0)), int(given.get("dataset.num_shards", 1))


def merge_shards(dirs: list[Path], rows_of) -> list[dict]:
    """The rows of a data set split over run directories (dataset.shard=i dataset.num_shards=n), as
    one run's: every shard present once, the same settings in each (settings.json), no image in
    two. ``rows_of(dir)`` reads a directory's per-image rows (results.read_rows, or evaluate.py's
    re-scored ones). Refuses (ValueError, one paragraph) a set that is not one whole split."""
    keys = {Path(d): shard_key(d) for d in dirs}
    unreadable = [str(d) for d, k in keys.items() if k is None]
    if unreadable:
        raise ValueError(f"{unreadable[0]}: no readable settings.json, so it cannot be shown to be a shard of the "
                         "same run as the others")
    if len({k[0] for k in keys.values()}) > 1:
        raise ValueError(f"the directories {', '.join(map(str, keys))} were run with different settings "
                         "(settings.json); only the shards of one run can be merged")
    counts = {k[2] for k in keys.values()}
    shards = sorted(k[1] for k in keys.values())
    if len(counts) > 1 or shards != list(range(next(iter(counts)))):
        raise ValueError(f"shards {shards} of dataset.num_shards={sorted(counts)} given: a merge needs each of "
                         f"the shards 0..n-1 exactly once ({', '.join(map(str, keys))})")
    rows, seen = [], {}
    for d in keys:
        for row in rows_of(d):
            if row["id"] in seen:
                raise ValueError(f"image {row['id']} has rows in both {seen[row['id']]} and {d}: not shards of one split")
            seen[row["id"]] = d
            rows.append(row)
    return rows


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


# ---------------------------------------------------------------- the lock


class RunDirBusy(ValueError):
    """Another live process is writing results into the same directory."""


class Lock:
    """An exclusive, non-blocking lock on <dir>/.lock, held until `release` or the end of the
    process (the OS releases it even after SIGKILL)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.handle = open(self.out / ".lock", "a+")
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; directories are still unique per run
            return
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.seek(0)
            owner = self.handle.read().strip() or "unknown"
            self.handle.close()
            raise RunDirBusy(f"run directory {out} (hydra.run.dir or resume) is in use by another run (pid {owner}); "
                             "wait for it to finish, or give this run its own directory") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()

    def release(self) -> None:
        self.handle.close()


# ---------------------------------------------------------------- what a directory holds


def read_settings(out: Path) -> dict | None:
    """settings.json of a run directory: {"overrides": [...], "settings": {...}}, or None."""
    try:
        stored = json.loads((Path(out) / "settings.json").read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(stored, dict) and isinstance(stored.get("settings"), dict) and isinstance(stored.get("overrides"), list)
    return stored if ok else None


def read_fingerprint(out: Path) -> dict | None:
    """dataset.json of a run directory: {image id: digest}, or None."""
    try:
        stored = json.loads((Path(out) / "dataset.json").read_text())
    except (OSError, ValueError):
        return None
    images = stored.get("images") if isinstance(stored, dict) else None
    return images if isinstance(images, dict) else None


def check(out: Path, current: dict, dataset) -> None:
    """Refuse (ValueError, one paragraph) unless the results already in ``out`` were computed with
    the settings ``current`` (keys both know; a key added to the code since is not compared) on
    the same files as ``dataset`` has for those ids."""
    out = Path(out)
    has_settings = (out / "settings.json").exists()
    stored = read_settings(out)
    rows = read_raw(out / "results.csv")[1]
    if stored is None and (rows or has_settings):
        raise ValueError(f"run directory {out} holds results but its settings.json is missing or unreadable, so the "
                         "settings they were computed with cannot be verified; give this run a new directory "
                         "(hydra.run.dir), or restore settings.json")
    if stored is not None:
        old = stored["settings"]
        differ = [k for k in sorted(old.keys() & current.keys()) if old[k] != current[k]]
        if differ:
            shown = ", ".join(f"{k}={old[k]!r} (now {current[k]!r})" for k in differ[:5])
            more = f" and {len(differ) - 5} more" if len(differ) > 5 else ""
            raise ValueError(f"run directory {out} holds results computed with {shown}{more} (were the config files "
                             "changed since?); give it the settings it was run with, or use a new directory")
    done = [r["id"] for r in rows if not r.get("error")]  # failed images are computed again
    if not done:
        return
    recorded = read_fingerprint(out)
    if recorded is None:
        raise ValueError(f"run directory {out} holds results but its dataset.json is missing or unreadable, so the "
                         "images they were computed on cannot be verified; give this run a new directory")
    now = dataset.fingerprint(done)
    foreign = [i for i in done if now[i] is None]
    if foreign:
        raise ValueError(f"run directory {out} holds results for {len(foreign)} image(s) that are not in this "
                         f"{dataset.name} data set (first: {foreign[0]}): it belongs to other data; use a new directory")
    changed = [i for i in done if recorded.get(i) != now[i]]
    if changed:
        entry = dataset.listed[changed[0]]
        raise ValueError(f"run directory {out} holds results for {len(changed)} image(s) whose files are not the "
                         f"ones given now (first: {changed[0]}, now {entry.image}): the data set differs from the one "
                         "the results were computed on (or they cannot be verified); point the data set at the "
                         "original files, or use a new directory")


def write_hydra(out: Path, cfg: DictConfig, hydra_cfg) -> None:
    """.hydra/config.yaml, hydra.yaml and overrides.yaml as Hydra writes them, but only once this
    run holds the directory and its checks passed."""
    folder = Path(out) / ".hydra"
    folder.mkdir(exist_ok=True)
    atomic_write_text(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    atomic_write_text(folder / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})))
    atomic_write_text(folder / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(hydra_cfg.overrides.task))))


class RunDir:
    """A run directory held by this process: `open` locks it, verifies what it holds against this
    run (`check`), then records this run's settings, data and config."""

    def __init__(self, out: Path, lock: Lock):
        self.out, self.lock = Path(out), lock

    @classmethod
    def open(cls, out: Path, cfg: DictConfig, dataset, overrides: list[str], hydra_cfg=None) -> "RunDir":
        out = writable_dir(out, "hydra.run.dir")
        lock = Lock(out)
        try:
            current = settings(cfg)
            check(out, current, dataset)
            recorded = read_fingerprint(out) or {}
            recorded.update(dataset.fingerprint(dataset.ids))
            atomic_write_text(out / "dataset.json", json.dumps({"name": dataset.name, "images": recorded},
                                                               indent=1, sort_keys=True) + "\n")
            atomic_write_text(out / "settings.json", json.dumps({"overrides": list(overrides), "settings": current},
                                                                indent=2, sort_keys=True) + "\n")
            if hydra_cfg is not None:
                write_hydra(out, cfg, hydra_cfg)
            (out / "error.txt").unlink(missing_ok=True)  # from an earlier, failed attempt
        except BaseException:
            lock.release()
            raise
        return cls(out, lock)

    def close(self) -> None:
        self.lock.release()


def write_error(out: Path, code: int, reason: str) -> None:
    """<job dir>/error.txt: the exit code a single run would have had, then the reason."""
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out) / "error.txt", f"exit {code}\n{reason}\n")
    except OSError:
        pass  # an unwritable directory: the reason is in the log


# ---------------------------------------------------------------- the command line


def preflight(argv: list[str]) -> list[str]:
    """The command line, checked and completed before Hydra runs:
      * resume=<dir> becomes that run's own overrides (from its settings.json), then the ones given
        now (which replace theirs), then hydra.run.dir=<dir>; whether the result still computes the
        same thing is checked against the resolved settings and the data when the run opens <dir>;
      * an explicit hydra.run.dir / hydra.sweep.dir must be writable.
    Problems: one paragraph on stderr, exit code 2."""
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    given = {override_key(a): a for a in overrides}
    multirun = any(a in ("-m", "--multirun") for a in argv)
    try:
        resume = given.pop("resume", None)
        if resume is not None:
            run_dir = Path(override_value(resume)).expanduser()
            if multirun:
                raise ConfigError(f"{resume}: resume continues one run; it cannot be swept (-m)")
            stored = read_settings(run_dir)
            if stored is None:
                raise ConfigError(f"{resume}: not the directory of a run (no readable settings.json in it); give the "
                                  "directory a run printed ('results in ...')")
            kept = [o for o in stored["overrides"] if override_key(o) not in given]
            now = [a for a in overrides if override_key(a) not in ("resume", "hydra.run.dir")]
            argv = [a for a in argv if a not in overrides] + kept + now + [f"hydra.run.dir={run_dir}"]
            given = {override_key(a): a for a in kept + now + [f"hydra.run.dir={run_dir}"]}
        for key in ("hydra.run.dir", "hydra.sweep.dir"):
            if key in given and "$" not in override_value(given[key]):
                writable_dir(override_value(given[key]), key)
    except ConfigError as e:
        print(f"Error: {one_paragraph(e)}", file=sys.stderr)
        sys.exit(2)
    return argv


# ---------------------------------------------------------------- sweeps


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


class SweepReport(Callback):
    """Hydra callback (configs/hydra/default.yaml): at the end of a sweep, lists the jobs that
    failed (their error.txt) and sets `exit_code` (the largest of the failed jobs' codes) for
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
        for error in sorted(sweep_dir.glob("*/error.txt"), key=lambda p: (len(p.parent.name), p.parent.name)):
            lines = error.read_text(errors="replace").splitlines() or ["exit 1"]
            code = int(lines[0].split()[-1]) if re.fullmatch(r"exit \d+", lines[0]) else 1
            failed.append((error.parent, code, " ".join(lines[1:])))
        if failed:
            log.error("%d job(s) of the sweep failed (reasons in their error.txt):\n%s", len(failed),
                      "\n".join(f"  {d}: exit {c}: {one_paragraph(r, 300)}" for d, c, r in failed))
            SweepReport.exit_code = max(c for _, c, _ in failed)
        stopped = stop_requested(sweep_dir)
        if stopped:
            log.warning("sweep stopped by %s; continue it with the same command and hydra.sweep.dir=%s (finished "
                        "images are kept, each job resumes)", signal.Signals(stopped).name, sweep_dir)
            SweepReport.exit_code = 128 + stopped
