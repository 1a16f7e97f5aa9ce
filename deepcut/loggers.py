"""Experiment loggers: the only place that talks to tracking services. run.py calls
start -> log_image (per image) -> log_summary -> finish (always, even when the job fails).

RunLogger is the default: results.csv and summary.json (written by deepcut.results) are the
local record; it adds run_info.json (the commit and command that produced the run), which
deepcut.tables reports next to each run. WandbLogger (`logger=wandb`) does the same
and also sends the run to Weights & Biases.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class LoggerError(ValueError):
    """A tracking service cannot be used with the settings given; the message says what to do."""


def git_state(repo: Path = REPO) -> dict:
    """The commit checked out in `repo` and whether tracked files differ from it (None: not a git checkout)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return {"commit": None, "dirty": None}
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def run_info() -> dict:
    """Where a run came from: commit, command line, host, start time, library versions."""
    versions = {}
    for package in ("torch", "timm", "hydra-core"):
        try:  # from the installed metadata: importing timm would import wandb (timm.utils.summary)
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {**git_state(), "command": [Path(sys.argv[0]).name, *sys.argv[1:]], "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "python": platform.python_version(), **versions}


def hydra_info() -> dict:
    """The job's Hydra context (choices of every group, overrides, sweep dir), or {} outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        if not HydraConfig.initialized():
            return {}
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        return {"choices": {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra/")},
                "overrides": list(hc.overrides.task), "override_dirname": hc.job.override_dirname,
                "multirun": multirun, "sweep_dir": str(hc.sweep.dir) if multirun else None,
                "job_num": hc.job.get("num") if multirun else None}
    except Exception:  # noqa: BLE001 - logging context is optional, never a reason to fail a run
        return {}


def run_name(overrides: list[str]) -> str | None:
    """A run's name from its command-line overrides, without the ones that only say how it ran."""
    from deepcut.overrides import override_key

    keep = [o for o in overrides if override_key(o).split(".", 1)[0] not in ("logger", "launcher", "sweeper", "hydra")]
    return ",".join(keep)[:128] or None


# Per-image keys of results.csv with the summary name of their running mean (corloc: a per-image
# hit, reported as a percentage like summary.json).
RUNNING = {"iou": "miou", "acc": "acc", "f_beta": "max_f_beta", "corloc": "corloc", "time_s": "time_s"}


class RunningMean:
    """Running means of the per-image metrics, updated one row at a time (recomputing them over all
    rows after every batch would grow quadratically over a 20k-image run)."""

    def __init__(self, rows=()):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        for row in rows:
            self.add(row)

    def add(self, row: dict) -> dict[str, float]:
        """Count the row's metrics in; their values as floats."""
        values = {}
        for key in RUNNING:
            v = row.get(key)
            if isinstance(v, bool) or (isinstance(v, (int, float)) and not math.isnan(v)):
                values[key] = float(v)
                self.sums[key] = self.sums.get(key, 0.0) + float(v)
                self.counts[key] = self.counts.get(key, 0) + 1
        return values

    def mean(self, key: str) -> float:
        """The summary's value so far (corloc in percent)."""
        mean = self.sums[key] / self.counts[key]
        return 100 * mean if key == "corloc" else mean


class RunLogger:
    """Local files only: writes run_info.json beside results.csv and summary.json (a resumed run
    keeps its earlier sessions' commits under "earlier"), and keeps the running means the progress
    bar shows (`progress`)."""

    def start(self, config: dict, out_dir: Path, rows=()) -> None:
        """``rows``: the results a resumed run already holds, counted in the running means."""
        self.running = RunningMean(rows)
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        info, path = run_info(), self.out_dir / "run_info.json"
        if path.exists():  # a resumed run: keep where its earlier part came from
            try:
                old = json.loads(path.read_text())
                info["earlier"] = old.pop("earlier", []) + [{k: old.get(k) for k in ("commit", "dirty", "started")}]
            except (OSError, ValueError, AttributeError):
                pass
        path.write_text(json.dumps(info, indent=2) + "\n")

    def log_image(self, row: dict, overlay_path: Path | None = None) -> dict[str, float]:
        return self.running.add(row)

    def progress(self) -> dict[str, str]:
        """mIoU and CorLoc so far, for the progress bar."""
        return {name: f"{self.running.mean(key):.3f}" for key, name in (("iou", "miou"), ("corloc", "corloc"))
                if key in self.running.counts}

    def log_summary(self, summary: dict) -> None:
        pass

    def finish(self, failed: bool = False) -> None:
        pass


TABLE_COLUMNS = ["id", "error", "iou", "acc", "f_beta", "corloc", "n_labels", "time_s"]


class WandbLogger(RunLogger):
    """Weights & Biases: the resolved config, per-image and running metrics, the first
    `log_images` overlays, a per-image table and the final summary.

    mode: online | offline | disabled; None reads WANDB_MODE (default online). Files go to
    <run dir>/wandb/, never the working directory. group None: in a multirun, the sweep directory,
    so every job of one sweep lands in one W&B group; name None: the job's overrides
    (less logger/launcher/sweeper/hydra ones).
    `wandb` is imported here only, so the default logger never needs it.
    """

    def __init__(self, project: str = "deepcut", entity: str | None = None, group: str | None = None,
                 name: str | None = None, tags: list[str] | tuple = (), notes: str | None = None,
                 mode: str | None = None, job_type: str | None = None, log_images: int = 8):
        self.project, self.entity, self.group, self.name = project, entity, group, name
        self.tags, self.notes, self.job_type = list(tags or []), notes, job_type
        self.mode = mode or os.environ.get("WANDB_MODE") or "online"
        if self.mode not in ("online", "offline", "disabled"):
            raise ValueError(f"logger.mode={self.mode!r}: use online, offline or disabled")
        self.log_images = log_images
        self.run = None

    def start(self, config: dict, out_dir: Path, rows=()) -> None:
        super().start(config, out_dir, rows)
        import wandb

        self._wandb = wandb
        hydra = hydra_info()
        group = self.group
        if group is None and hydra.get("multirun"):
            group = hydra["sweep_dir"][-128:]  # W&B's limit on group names
        name = self.name or run_name(hydra.get("overrides", []))
        info = json.loads((self.out_dir / "run_info.json").read_text())
        try:
            self.run = wandb.init(
                project=self.project, entity=self.entity, group=group, name=name, tags=self.tags,
                notes=self.notes, job_type=self.job_type, mode=self.mode, dir=str(self.out_dir),
                config={**config, "hydra": hydra, "run_info": info, "output_dir": str(self.out_dir)})
        except Exception as e:  # noqa: BLE001 - no login, no network, a bad entity: wandb's errors vary
            raise LoggerError(f"logger=wandb could not start a W&B run in {self.mode} mode ({type(e).__name__}: "
                              f"{str(e)[:300]}); run `wandb login` or set WANDB_API_KEY, or use logger.mode=offline "
                              "(WANDB_MODE=offline) or logger=csv") from None
        self._images = self._failed = 0

    def log_image(self, row: dict, overlay_path: Path | None = None) -> dict[str, float]:
        values = super().log_image(row, overlay_path)
        if self.run is None:
            return values
        data = {f"image/{key}": v for key, v in values.items()}
        data.update({f"running/{RUNNING[key]}": self.running.mean(key) for key in values})
        self._failed += bool(row.get("error"))
        data["running/n_failed"] = self._failed
        if overlay_path is not None and self._images < self.log_images and Path(overlay_path).is_file():
            data["overlay"] = self._wandb.Image(str(overlay_path), caption=str(row["id"]))
            self._images += 1
        self.run.log(data)
        return values

    def log_summary(self, summary: dict) -> None:
        if self.run is None:
            return
        from deepcut.results import read_results

        rows = read_results(self.out_dir / "results.csv")  # every image, resumed ones included
        if len(rows):
            cols = [c for c in TABLE_COLUMNS if c in rows]
            table = rows[cols].astype(object).where(rows[cols].notna(), None)
            self.run.log({"per_image": self._wandb.Table(columns=cols, data=table.values.tolist())})
        self.run.summary.update({k: v for k, v in summary.items()
                                 if v is not None and not (isinstance(v, float) and math.isnan(v))})

    def finish(self, failed: bool = False) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None
