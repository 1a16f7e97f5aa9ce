"""Re-evaluate saved predictions against a dataset's ground truth, without recomputing features.

  python evaluate.py RUN_DIR                          # a run.py output directory
  python evaluate.py RUN_DIR dataset=ecssd dataset.root=/data/ECSSD
  python evaluate.py MASKS_DIR dataset=folder dataset.path=/data/images

RUN_DIR holds labels/<id>.png (0 = background; any folder of such PNGs or 0/255 masks works) and,
optionally, results.csv with the boxes run.py wrote. The dataset comes from RUN_DIR/.hydra/
config.yaml unless overridden with Hydra-style `dataset=<name>` and `dataset.<key>=<value>`
arguments. Prints the metrics table and writes evaluation.json and evaluation.csv into RUN_DIR.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from deepcut import metrics
from deepcut.masks import mask_to_box
from deepcut.pipeline import bound, image_metrics
from deepcut.results import read_results, summarize_run

CONFIGS = Path(__file__).resolve().parent / "configs"


def run_config(run_dir: Path, overrides: list[str]):
    saved = run_dir / ".hydra" / "config.yaml"
    if any(o.startswith("dataset=") for o in overrides) or not saved.exists():
        with initialize_config_dir(str(CONFIGS), version_base="1.3"):
            return compose("config", overrides=overrides)
    cfg = OmegaConf.load(saved)
    for o in overrides:  # dataset.root=... style tweaks of the saved config
        key, value = o.split("=", 1)
        OmegaConf.update(cfg, key, value)
    return cfg


def evaluate(run_dir: Path, dataset, max_pixels: int | None = None) -> tuple[pd.DataFrame, dict]:
    saved = read_results(run_dir / "results.csv")
    boxes = saved.set_index("id")[["x0", "y0", "x1", "y1"]] if "x0" in saved else None
    rows = []
    meter = metrics.SegmentationMeter()  # maxFβ the standard way: 255 thresholds per image
    for i, sid in enumerate(dataset.ids):
        path = run_dir / "labels" / f"{sid}.png"
        if not path.exists():
            rows.append({"id": sid, "error": f"no prediction {path}"})
            continue
        sample, _ = bound(dataset[i], max_pixels)  # as run.py did: huge images were downscaled
        labels = torch.from_numpy(np.asarray(Image.open(path)).astype(np.int64))
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
        if sample.mask is not None:
            meter.update(mask.numpy(), sample.mask)
    summary = summarize_run(rows, dataset=dataset.name)
    if meter.ious:  # equals run.py's mean Fβ for binary masks (flat curves); a test checks it
        summary["max_f_beta"] = meter.compute()["max_f_beta"]
    return pd.DataFrame(rows), summary


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("overrides", nargs="*", help="dataset=<name> dataset.<key>=<value> ...")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        parser.error(f"{args.run_dir} is not a directory")
    cfg = run_config(args.run_dir, args.overrides)
    table, summary = evaluate(args.run_dir, instantiate(cfg.dataset), cfg.get("max_pixels", 4096 ** 2))
    table.to_csv(args.run_dir / "evaluation.csv", index=False)
    (args.run_dir / "evaluation.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(pd.Series(summary).to_string())
    return summary


if __name__ == "__main__":
    main()
