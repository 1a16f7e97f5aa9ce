"""One results format for every tool: per-image rows in `results.csv` (append-only, one flushed
and fsynced line per image, so a killed run loses at most the images in flight) and
`summary.json` (written atomically at the end, and when a run is interrupted). Label maps and
overlays sit next to them, each written atomically. (`settings.json` and `dataset.json`, the
settings and data the rows belong to, are deepcut.rundir's.) With postprocess.instances, each image's
proposals go to instances/<id>.json (COCO results and the ground truth they are scored on) and
instances/<id>.png (0 = none, i = the i-th proposal), pooled at the end into instances.json (COCO's
results format, for pycocotools' loadRes or a detector's self-training) and the summary's AP/AR.

Columns: id; error (why the image could not be processed: the row has no metrics); note (e.g.
the image was downscaled); degenerate (True: the method put every patch in one cluster, a
legitimate output that is evaluated like any other); the metrics; the box; n_labels; time_s."""
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
from PIL import Image

from deepcut import metrics
from deepcut.files import atomic_write, atomic_write_text
from deepcut.visualize import instance_overlay, label_palette, overlay


def label_png(labels: np.ndarray) -> Image.Image:
    """A label map as a PNG whose values are the labels: a palette PNG (image viewers show each label
    in its overlay colour; np.asarray reads the labels back) up to 255 labels, 16-bit grey beyond."""
    if int(labels.max(initial=0)) >= 256:
        return Image.fromarray(labels.astype(np.uint16))
    png = Image.fromarray(labels.astype(np.uint8))
    png.putpalette(label_palette())
    return png


def atomic_save_image(image: Image.Image, path: Path, **params) -> None:
    path = Path(path)
    fmt = Image.registered_extensions()[path.suffix.lower()]  # the tmp name hides the extension
    atomic_write(path, lambda tmp: image.save(tmp, format=fmt, **params))


STRING_COLUMNS = {"id", "error", "note", "kp_gt", "kp_pred"}


def _value(key: str, text: str):
    """A CSV cell back to the value that was written: empty -> absent, 'True'/'False' -> bool,
    numbers -> int/float (csv writes floats with repr, so they read back exactly)."""
    if key in STRING_COLUMNS:
        return text
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _whole(row: dict[str, str]) -> bool:
    """False when a cell of a number column does not read as a number or bool (a damaged file)."""
    return all(isinstance(_value(k, v), (int, float)) for k, v in row.items() if v and k not in STRING_COLUMNS)


def read_raw(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows (cells as written) of a results.csv. A torn last line (the run was killed
    mid-write: no final newline) is dropped; so are rows of an id already seen."""
    path = Path(path)
    text = path.read_text(errors="replace") if path.exists() else ""
    text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = list(reader.fieldnames or [])
    rows, seen = [], set()
    for row in reader:
        if row.get("id") and None not in row and row["id"] not in seen:  # None key: extra cells
            seen.add(row["id"])
            rows.append({k: v or "" for k, v in row.items()})
    return header, rows


def read_rows(path: Path) -> list[dict]:
    """Per-image rows of a run as dicts holding only the cells that were written."""
    return [{k: _value(k, v) for k, v in row.items() if v != ""} for row in read_raw(path)[1]]


def read_results(path: Path) -> pd.DataFrame:
    """Per-image rows of a run as a table (missing cells NaN); a torn last line is dropped."""
    header, rows = read_raw(path)
    return pd.DataFrame([{k: _value(k, v) for k, v in r.items() if v != ""} for r in rows], columns=header or None)


class ResultsWriter:
    """results.csv of a run directory, append-only: one flushed and fsynced line per image, written
    after its label PNG and overlay (each written atomically), so a row means its files are whole.

    The caller holds the directory (deepcut.rundir.RunDir: lock, settings and data checked). Rows
    of a previous run are kept, except error rows (those images are retried: a fixed file, a
    transient failure) and rows with a damaged cell (a number column that does not read as a
    number: recomputed). `done` holds the ids that need no work.
    """
    COLUMNS = ["id", "error", "note", "degenerate", "iou", "acc", "f_beta", "mae", "s_measure", "e_measure",
               "mean_e_measure", "corloc", "x0", "y0", "x1", "y1", "n_labels", "n_instances", "missing_parts",
               "kp_gt", "kp_pred", "time_s"]

    def __init__(self, out_dir: str | Path, save_labels: bool = True, save_overlays: bool = True):
        self.out = Path(out_dir)
        self.save_labels, self.save_overlays = save_labels, save_overlays
        for sub in ("labels", "overlays"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        for stale in [*self.out.glob(".*.tmp"), *self.out.glob("*/.*.tmp")]:  # left by a killed run
            stale.unlink(missing_ok=True)
        self.csv_path = self.out / "results.csv"
        header, kept = read_raw(self.csv_path)
        kept = [r for r in kept if not r.get("error") and _whole(r)]
        columns = self.COLUMNS + [c for c in header if c not in self.COLUMNS]
        # Keep what survived, as written, in a new file renamed into place (a kill now loses nothing).
        def write(tmp):
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, columns, extrasaction="ignore")
                w.writeheader()
                w.writerows(kept)
        atomic_write(self.csv_path, write)
        self.rows = [{k: _value(k, v) for k, v in r.items() if v != ""} for r in kept]
        self.done = {r["id"] for r in kept}
        self._file = open(self.csv_path, "a", newline="")
        self._csv = csv.DictWriter(self._file, columns, extrasaction="ignore")

    def add(self, row: dict, image: Image.Image | None = None, labels: torch.Tensor | None = None,
            mask: torch.Tensor | None = None, box: torch.Tensor | None = None, found=None,
            record: dict | None = None, maps: dict | None = None) -> None:
        """One image's row, after its files; ``found`` (deepcut.instances.Instances) and ``record``
        (deepcut.pipeline.instance_record): its proposals, when the run makes them; ``maps``: its
        soft assignment / eigenvector (save_maps), to maps/<id>.npz."""
        if maps:
            (self.out / "maps").mkdir(exist_ok=True)
            def write(tmp):
                with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to the temporary's name
                    np.savez(f, **maps)
            atomic_write(self.out / "maps" / f"{row['id']}.npz", write)
        if record is not None:
            (self.out / "instances").mkdir(exist_ok=True)
            atomic_save_image(label_png(found.map.numpy()), self.out / "instances" / f"{row['id']}.png")
            atomic_write_text(self.out / "instances" / f"{row['id']}.json", json.dumps(record) + "\n")
        if labels is not None:
            row["n_labels"] = int(labels.unique().numel())  # clusters found (a collection's ids may skip some)
            if self.save_labels:
                atomic_save_image(label_png(labels.numpy()), self.out / "labels" / f"{row['id']}.png")
            if self.save_overlays and image is not None:
                picture = (overlay(image, labels, box, legend=True) if found is None
                           else instance_overlay(image, found, legend=True))
                atomic_save_image(picture, self.out / "overlays" / f"{row['id']}.jpg", quality=90)
        if box is not None:
            row.update(zip(("x0", "y0", "x1", "y1"), (float(v) for v in box)))
        self._csv.writerow(row)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows.append(row)
        self.done.add(str(row["id"]))

    def close(self, summary: dict | None = None) -> None:
        """Close results.csv; write summary.json (atomically) when given."""
        if not self._file.closed:
            self._file.close()
        if summary is not None:
            write_summary(self.out, summary)


def _with_mean_e_measure(row: dict) -> dict:
    """A row of a run from before mean_e_measure, which held the curve's t = 0 end (e_measure_full)."""
    out = {k: v for k, v in row.items() if k != "e_measure_full"}
    if "mean_e_measure" not in out and "e_measure" in out:
        out["mean_e_measure"] = (255 * out["e_measure"] + row["e_measure_full"]) / 256
    return out


def write_summary(out: Path, summary: dict) -> None:
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    atomic_write_text(Path(out) / "summary.json", json.dumps(clean, indent=2, default=str) + "\n")


def read_instances(out: Path, ids) -> list[dict] | None:
    """The instance records (instances/<id>.json) of these images, in id order; None when the run
    made none. An image without a record (its row is an error) has no proposals to score."""
    folder = Path(out) / "instances"
    if not folder.is_dir():
        return None
    paths = [folder / f"{i}.json" for i in sorted(map(str, ids))]
    return [json.loads(p.read_text()) for p in paths if p.exists()]


def write_instances(out: Path, records: list[dict]) -> None:
    """instances.json: every record's proposals in COCO's results format (category 1, image_id as
    deepcut.instances.coco_id), which pycocotools' COCO.loadRes reads."""
    results = [{"image_id": r["image_id"], **d} for r in records for d in r["detections"]]
    atomic_write_text(Path(out) / "instances.json", json.dumps(results) + "\n")


def summarize_run(rows: list[dict], instances: list[dict] | None = None, **info) -> dict:
    """The summary of per-image rows: metric means, maxFβ, CorLoc, pooled parts NMI/ARI (both
    protocols of metrics.part_scores), and the counts n_images (rows), n_failed (rows with an error), n_evaluated (rows the metric means are
    over: no error and some ground truth) and n_degenerate (one cluster for every patch; their
    metrics are in the means); n_labels_mean and n_labels_counts (labels per image, background
    included: how many clusters were found, their distribution). Rows are taken in id order, so the means do not depend on the order
    the images were processed in (a resumed run gives the same numbers, and so do the merged rows of
    a run split into shards). Saliency: MAE, S-measure, mean and max E-measure
    (metrics.saliency_summary). ``instances``: the rows' instance records (read_instances), scored
    with COCOeval (metrics.coco_scores: ap_box, ap50_box, ar1_box, ar10_box, ar100_box, and _mask).
    n_instances_mean: proposals per image. n_fewer_parts (N-cut parts): images with fewer parts
    than K (their rows' missing_parts)."""
    # A resumed run's rows from before mean_e_measure pool with its new rows alike.
    rows = sorted((_with_mean_e_measure(r) if "e_measure_full" in r else r for r in rows), key=lambda r: str(r["id"]))
    s = metrics.summarize(rows)
    if "f_beta" in s:  # binary masks: each image's Fβ curve is flat, so maxFβ is the mean Fβ
        s["max_f_beta"] = s.pop("f_beta")
    saliency = metrics.saliency_summary(s)
    s.pop("e_measure", None)
    s.update(saliency)
    if "iou" in s:
        s["miou"] = s.pop("iou")
    kp = [r for r in rows if isinstance(r.get("kp_gt"), str) and r["kp_gt"]]
    if kp:
        gt = np.concatenate([np.array(r["kp_gt"].split(), int) for r in kp])
        pred = np.concatenate([np.array(r["kp_pred"].split(), int) for r in kp])
        s.update(metrics.part_scores(gt, pred))
    for k in ("x0", "y0", "x1", "y1", "n_labels", "degenerate"):
        s.pop(k, None)
    if "n_instances" in s:
        s["n_instances_mean"] = s.pop("n_instances")
    if s.pop("missing_parts", None) is not None:  # N-cut parts: images that got fewer parts than K
        s["n_fewer_parts"] = sum(r.get("missing_parts", 0) > 0 for r in rows if not r.get("error"))
    if instances is not None:
        s.update(metrics.coco_scores(instances))
    ok = [r for r in rows if not r.get("error")]
    found = [r["n_labels"] for r in ok if isinstance(r.get("n_labels"), int)]
    if found:  # k-less clustering: how many clusters the images got (background included)
        s["n_labels_mean"] = float(np.mean(found))
        s["n_labels_counts"] = {str(n): found.count(n) for n in sorted(set(found))}
    s["n_evaluated"] = sum(any(_present(r.get(k)) for k in ("iou", "corloc", "kp_gt")) for r in ok)
    s["n_degenerate"] = sum(r.get("degenerate") is True for r in ok)
    return {**s, **info}


def _present(v) -> bool:
    return v is not None and v != "" and not (isinstance(v, float) and math.isnan(v))
