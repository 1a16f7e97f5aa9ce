"""Re-evaluate saved predictions against a dataset's ground truth, without recomputing features.

  python evaluate.py RUN_DIR                          # a run.py output directory
  python evaluate.py RUN_DIR dataset=ecssd dataset.root=/data/ECSSD
  python evaluate.py MASKS_DIR dataset=folder dataset.path=/data/images
  python evaluate.py SWEEP/0 SWEEP/1 SWEEP/2            # the shards of a split run, merged

RUN_DIR holds labels/<id>.png (0 = background; any folder of such PNGs or 0/255 masks works) and,
optionally, results.csv with the boxes run.py wrote. The dataset comes from RUN_DIR/.hydra/
config.yaml unless overridden with Hydra-style `dataset=<name>` and `dataset.<key>=<value>`
arguments (a folder without .hydra/ needs `dataset=`). When RUN_DIR has the run's dataset.json,
the images must be the ones the labels were computed on. Prints the metrics table and writes
evaluation.json and evaluation.csv into RUN_DIR; a damaged label map is that image's error row.
Exit code 2 (one paragraph, no traceback) when the data set cannot be found or read.

Several run directories that are the shards of one run (dataset.shard=i dataset.num_shards=n) are
each evaluated, then merged: the summary of the whole data set, from the shards' per-image rows
(equal to an unsharded run's), is printed and written to merged_evaluation.json, and their
proposals to instances.json, in their common parent folder (the sweep directory). Every shard is scored against the first shard's data set, so
shards that are not one whole split of one data set are refused (exit 2).
Metrics: IoU, Acc, maxFβ, and MAE, S-measure, mean/max E-measure through pysodmetrics
(deepcut/metrics.py), CorLoc, keypoint NMI/ARI, and for a run with postprocess.instances the
proposals' class-agnostic COCO AP/AR (instances/<id>.json against the data set's objects).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.errors import HydraException, InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from PIL import Image

from deepcut import instances, metrics, rundir
from deepcut.config import compose_config
from deepcut.errors import one_paragraph
from deepcut.overrides import override_key, parse_override
from deepcut.records import fingerprint_digest, read_fingerprint, read_settings
from deepcut.masks import mask_to_box
from deepcut.pipeline import bound, image_metrics
from deepcut.results import read_results, summarize_run, write_instances

def run_config(run_dir: Path, overrides: list[str]):
    """The run's saved config with ``overrides`` applied (typed as Hydra types them: `dataset.limit=8`
    is 8, `null` is None), or the configs composed afresh when a `dataset=<name>` is given."""
    saved = run_dir / ".hydra" / "config.yaml"
    if any(override_key(o) == "dataset" for o in overrides):
        return compose_config(overrides=overrides)
    if not saved.exists():
        raise ValueError(f"{run_dir} has no .hydra/config.yaml, so the data set its labels belong to is unknown; "
                         "name it: python evaluate.py RUN_DIR dataset=<name> dataset.root=<folder> (or dataset=folder "
                         "dataset.path=<images>)")
    try:
        cfg = OmegaConf.load(saved)
    except (OSError, ValueError, OmegaConfBaseException) as err:
        cfg, problem = None, f"unreadable ({type(err).__name__})"
    else:
        problem = "empty" if not cfg else "without a dataset section"
    if not isinstance(cfg, DictConfig) or "dataset" not in cfg:
        raise ValueError(f"{saved} is {problem}; name the data set instead: python evaluate.py RUN_DIR "
                         "dataset=<name> dataset.root=<folder>")
    for o in overrides:  # dataset.root=... style tweaks of the saved config
        key, value = parse_override(o)
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def check_data(run_dir: Path, dataset, merged_with: Path | None = None) -> None:
    """The images to score must be those the labels were computed on (the run's dataset.json). In a
    merge (``merged_with``: the first shard, whose data set ``dataset`` is, at this run's shard), the
    run must also have recorded exactly the images that data set lists for its shard."""
    recorded = read_fingerprint(run_dir)
    if recorded is None:
        return  # a folder of masks, or a run from before dataset.json: nothing to check against
    if (read_settings(run_dir) or {}).get("settings", {}).get("task.name") == "distil":
        dataset = dataset.without_ground_truth()  # a distil run fingerprinted its images only
    ids = [i for i in dataset.ids if i in recorded]
    if merged_with is not None and set(ids) != set(recorded):
        other = sorted(set(recorded) ^ set(dataset.ids))
        raise ValueError(f"{run_dir} was not run on the data set of {merged_with}: its shard of that data set lists "
                         f"{len(dataset.ids)} image(s), the run recorded {len(recorded)} (first in one but not the "
                         f"other: {other[0]}); only the shards of one run on one data set can be merged")
    now = dataset.fingerprint(ids, fingerprint_digest(run_dir))
    changed = [i for i in ids if now[i] != recorded[i]]
    if changed:  # a run on the photos alone (no masks then) is scored against their ground truth now
        alone = dataset.fingerprint(changed, fingerprint_digest(run_dir), truth=False)
        changed = [i for i in changed if alone[i] != recorded[i]]
    if changed:
        where = (f"; the shards of a merge are scored against the data set of the first one, {merged_with}, and "
                 "only the shards of one run on one data set can be merged") if merged_with is not None else \
            "; point dataset.root / dataset.path at the data the run used"
        raise ValueError(f"{run_dir}: {len(changed)} image(s) of {dataset.name} are not the files the run's labels "
                         f"were computed on (first: {changed[0]}, now {dataset.listed[changed[0]].image}){where}")


def evaluate(run_dir: Path, dataset, max_pixels: int | None = None) -> tuple[pd.DataFrame, dict, list | None]:
    """Per-image rows, the summary and, when the run made proposals (instances/), their records
    with the ground truth taken afresh from ``dataset``."""
    saved = read_results(run_dir / "results.csv")
    proposals = run_dir / "instances"
    records = [] if proposals.is_dir() else None
    boxes = saved.set_index("id")[["x0", "y0", "x1", "y1"]] if "x0" in saved else None
    # Whether the method put every patch in one cluster is known to the run only: kept from its rows.
    degenerate = saved.set_index("id")["degenerate"].to_dict() if "degenerate" in saved else {}
    rows = []
    meter = metrics.SegmentationMeter()  # maxFβ the standard way: 255 thresholds per image
    for i, sid in enumerate(dataset.ids):
        path = run_dir / "labels" / f"{sid}.png"
        if not path.exists():
            rows.append({"id": sid, "error": f"no prediction {path}"})
            continue
        try:
            sample, _ = bound(dataset[i], max_pixels)  # as run.py did: huge images were downscaled
        except ValueError as err:  # DatasetError: an unreadable image or mask
            rows.append({"id": sid, "error": one_paragraph(err, 500)})
            continue
        try:
            with Image.open(path) as png:
                labels = torch.from_numpy(np.asarray(png).astype(np.int64))
        except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for damaged files
            rows.append({"id": sid, "error": f"{path}: not a readable label map ({type(err).__name__}: {err})"})
            continue
        if labels.ndim != 2:
            rows.append({"id": sid, "error": f"{path}: a label map has one channel, this one has {labels.shape[2]}"})
            continue
        if labels.shape != (sample.image.height, sample.image.width):
            rows.append({"id": sid, "error": f"{path} is {tuple(labels.shape)}, image is {sample.image.size[::-1]}"})
            continue
        mask = labels > 0
        box = None
        if boxes is not None and sid in boxes.index and not boxes.loc[sid].isna().any():
            box = torch.tensor(boxes.loc[sid].to_numpy(dtype=np.float32))
        elif boxes is None:
            box = mask_to_box(mask)
        rows.append({"id": sid, **image_metrics(sample, labels, mask, box)})
        if records is not None and (proposals / f"{sid}.json").exists():
            records.append({**json.loads((proposals / f"{sid}.json").read_text()), "truth": instances.truth(sample)})
        if isinstance(degenerate.get(sid), (bool, np.bool_)):
            rows[-1]["degenerate"] = bool(degenerate[sid])
        if sample.mask is not None:
            meter.update(mask.numpy(), sample.mask)
    summary = summarize_run(rows, records, dataset=dataset.name)
    if meter.ious:  # equals run.py's mean Fβ for binary masks (flat curves); a test checks it
        summary["max_f_beta"] = meter.compute()["max_f_beta"]
    return pd.DataFrame(rows), summary, records


def _fail(e: Exception) -> None:
    cause = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ is not None else e
    if not isinstance(cause, (ValueError, OSError, HydraException, OmegaConfBaseException)):
        raise e
    print(f"Error: {one_paragraph(cause)}", file=sys.stderr)
    sys.exit(2)


def evaluate_dir(run_dir: Path, overrides: list[str], merged_with: Path | None = None) -> tuple[pd.DataFrame, dict, list | None]:
    """Evaluate one directory, writing its evaluation.csv and evaluation.json. ``merged_with``: in a
    merge, the first shard, whose data set (at this directory's shard) every shard is scored
    against, so that shards run on different data cannot pool into one number."""
    try:
        cfg = run_config(run_dir, overrides)
        if merged_with is not None:
            shard = {k: cfg.dataset.get(k) for k in ("shard", "num_shards")}
            cfg.dataset = run_config(merged_with, overrides).dataset
            cfg.dataset.update({k: v for k, v in shard.items() if v is not None})
        dataset = instantiate(cfg.dataset)
        check_data(run_dir, dataset, merged_with)
    except Exception as e:
        _fail(e)
    table, summary, records = evaluate(run_dir, dataset, cfg.get("max_pixels", 4096 ** 2))
    table.to_csv(run_dir / "evaluation.csv", index=False)
    (run_dir / "evaluation.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return table, summary, records


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR ... [dataset=<name> dataset.<key>=<value> ...]",
                        help="one run directory, or the shards of one run; then overrides")
    args = parser.parse_args(argv)
    dirs = [Path(a) for a in args.run_dirs if "=" not in a or Path(a).is_dir()]
    overrides = [a for a in args.run_dirs if "=" in a and not Path(a).is_dir()]
    if not dirs:
        parser.error("give a run directory")
    for d in dirs:
        if not d.is_dir():
            parser.error(f"{d} is not a directory")
    # The labels/ folder itself given for its run: every id was looked up in labels/labels/.
    dirs = [d.parent if d.name == "labels" and not (d / "labels").is_dir() and (d.parent / "results.csv").exists()
            else d for d in dirs]
    for d in dirs:
        try:
            done = json.loads((d / "summary.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(done, dict) and done.get("complete") is False:
            print(f"Note: {d} holds an unfinished run ({done.get('n_images')} images done); the images it has no "
                  "labels for are error rows (n_failed). Resume it with run.py resume=<dir> first.", file=sys.stderr)
    tables = {d: evaluate_dir(d, overrides, dirs[0] if len(dirs) > 1 else None) for d in dirs}
    if len(dirs) == 1:
        summary = tables[dirs[0]][1]
    else:
        def rows_of(d):
            return [{k: v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v))}
                    for r in tables[d][0].to_dict("records")]
        try:
            rows = rundir.merge_shards(dirs, rows_of)
        except ValueError as e:
            _fail(e)
        records = [r for d in dirs for r in tables[d][2] or []] if any(tables[d][2] is not None for d in dirs) else None
        summary = summarize_run(rows, records, dataset=tables[dirs[0]][1].get("dataset"), shards=len(dirs))
        parent = Path(os.path.commonpath([d.resolve() for d in dirs]))
        (parent / "merged_evaluation.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        if records is not None:  # the shards' proposals as one COCO results file, like an unsharded run's
            write_instances(parent, records)
    print(pd.Series(summary).to_string())
    return summary


if __name__ == "__main__":
    main()
