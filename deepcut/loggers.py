"""Experiment loggers: the only place that talks to tracking services. run.py calls
start -> log_image (per image) -> log_summary -> finish (always, even when the job fails).

RunLogger is the default: results.csv and summary.json (written by deepcut.results) are the
local record, so it does nothing more and needs no account.
"""
from __future__ import annotations

from pathlib import Path


class RunLogger:
    def start(self, config: dict, out_dir: Path) -> None:
        pass

    def log_image(self, row: dict, overlay_path: Path | None = None) -> None:
        pass

    def log_summary(self, summary: dict) -> None:
        pass

    def finish(self, failed: bool = False) -> None:
        pass
