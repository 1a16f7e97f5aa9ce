"""One results format for every tool: per-image rows in `results.csv` (append-only, one flushed
line per image, so a killed run loses at most the image in flight) and `summary.json`
(written atomically at the end). Label maps and overlays sit next to them."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw

from deepcut import metrics

PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], np.uint8)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_results(path: Path) -> pd.DataFrame:
    """Per-image rows of a run; a torn last line (the run was killed mid-write) is dropped."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame()
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return pd.read_csv(io.StringIO(text), keep_default_na=True, dtype={"id": str}) if text.strip() else pd.DataFrame()


class ResultsWriter:
    COLUMNS = ["id", "error", "iou", "acc", "f_beta", "corloc", "x0", "y0", "x1", "y1",
               "n_labels", "kp_gt", "kp_pred", "time_s"]

    def __init__(self, out_dir: str | Path, save_labels: bool = True, save_overlays: bool = True):
        self.out = Path(out_dir)
        self.save_labels, self.save_overlays = save_labels, save_overlays
        for sub in ("labels", "overlays"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out / "results.csv"
        previous = read_results(self.csv_path)
        self.rows = previous.to_dict("records") if len(previous) else []
        self.done = {str(r["id"]) for r in self.rows}
        # Rewrite what survived (drops a torn line), then append one flushed line per image.
        self._file = open(self.csv_path, "w", newline="")
        self._csv = csv.DictWriter(self._file, self.COLUMNS, extrasaction="ignore")
        self._csv.writeheader()
        self._csv.writerows(self.rows)
        self._file.flush()

    def add(self, row: dict, image: Image.Image | None = None, labels: torch.Tensor | None = None,
            mask: torch.Tensor | None = None, box: torch.Tensor | None = None) -> None:
        if labels is not None:
            row["n_labels"] = int(labels.max()) + 1
            if self.save_labels:
                dtype = np.uint8 if row["n_labels"] <= 256 else np.uint16
                Image.fromarray(labels.numpy().astype(dtype)).save(self.out / "labels" / f"{row['id']}.png")
            if self.save_overlays and image is not None:
                overlay(image, labels, box).save(self.out / "overlays" / f"{row['id']}.jpg", quality=90)
        if box is not None:
            row.update(zip(("x0", "y0", "x1", "y1"), (float(v) for v in box)))
        self._csv.writerow(row)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows.append(row)
        self.done.add(str(row["id"]))

    def close(self, summary: dict) -> None:
        self._file.close()
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}
        atomic_write_text(self.out / "summary.json", json.dumps(clean, indent=2, default=str) + "\n")


def summarize_run(rows: list[dict], **info) -> dict:
    """The summary of per-image rows: metric means, maxFβ, CorLoc, pooled parts NMI/ARI."""
    s = metrics.summarize(rows)
    if "f_beta" in s:  # binary masks: each image's Fβ curve is flat, so maxFβ is the mean Fβ
        s["max_f_beta"] = s.pop("f_beta")
    if "iou" in s:
        s["miou"] = s.pop("iou")
    kp = [r for r in rows if isinstance(r.get("kp_gt"), str) and r["kp_gt"]]
    if kp:
        gt = np.concatenate([np.array(r["kp_gt"].split(), int) for r in kp])
        pred = np.concatenate([np.array(r["kp_pred"].split(), int) for r in kp])
        s["nmi"], s["ari"] = metrics.nmi_ari(gt, pred)
    for k in ("x0", "y0", "x1", "y1", "n_labels"):
        s.pop(k, None)
    return {**s, **info}


def overlay(image: Image.Image, labels: torch.Tensor, box: torch.Tensor | None, opacity: float = 0.5) -> Image.Image:
    """The image with each non-background label tinted, and the box drawn."""
    rgb = np.asarray(image, dtype=np.float32)
    lab = labels.numpy() % len(PALETTE)
    tint = PALETTE[np.where(lab > 0, (lab - 1) % (len(PALETTE) - 1) + 1, 0)].astype(np.float32)
    alpha = np.where(lab[..., None] > 0, opacity, 0.0)
    out = Image.fromarray((rgb * (1 - alpha) + tint * alpha).astype(np.uint8))
    if box is not None:
        ImageDraw.Draw(out).rectangle([float(v) for v in box], outline=(255, 255, 0), width=max(2, image.width // 150))
    return out
