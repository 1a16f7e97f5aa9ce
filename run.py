"""DeepCut over a dataset: `python run.py [group=option ...] [key=value ...]`, `-m` to sweep.

Writes under Hydra's run directory: labels/<id>.png, overlays/<id>.jpg, results.csv (one row per
image, incremental), summary.json. Re-running into the same directory skips finished images.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from deepcut import metrics
from deepcut.cache import FeatureCache
from deepcut.graph import prepare_features
from deepcut.pipeline import Extractor, Postprocess, image_metrics, run_method, timed
from deepcut.results import ResultsWriter, summarize_run
from deepcut.segment import derive_seed

log = logging.getLogger("deepcut")


class Loaded(Dataset):
    """Decodes and preprocesses in DataLoader workers; a bad file becomes a row, not a crash."""

    def __init__(self, dataset, indices, preprocess):
        self.dataset, self.indices, self.preprocess = dataset, indices, preprocess

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = self.indices[i]
        try:
            sample = self.dataset[index]
            return sample, self.preprocess(sample.image), None
        except Exception as e:  # noqa: BLE001 - any unreadable input is recorded and skipped
            return self.dataset.ids[index], None, f"{type(e).__name__}: {e}"


def segment(cfg: DictConfig, out: Path, logger) -> dict:
    dataset = instantiate(cfg.dataset)
    cache = FeatureCache(cfg.cache.dir) if cfg.cache.enabled else None
    extractor = Extractor(**cfg.backbone, device=cfg.device, cache=cache)
    method = instantiate(cfg.method)
    post = Postprocess(**cfg.postprocess)
    writer = ResultsWriter(out, cfg.save_labels, cfg.save_overlays)
    todo = [i for i, sid in enumerate(dataset.ids) if sid not in writer.done]
    if len(todo) < len(dataset):
        log.info("resuming %s: %d of %d images already done", out, len(dataset) - len(todo), len(dataset))
    loader = DataLoader(Loaded(dataset, todo, extractor.preprocess), batch_size=extractor.batch_size,
                        num_workers=cfg.num_workers, collate_fn=list, pin_memory=extractor.device.type == "cuda")
    bar = tqdm(total=len(todo), desc=f"{dataset.name}", unit="img", dynamic_ncols=True)
    for batch in loader:
        for sid, _, error in (b for b in batch if b[2] is not None):
            writer.add({"id": sid, "error": error})
        good = [b for b in batch if b[2] is None]
        if good:
            for row, extras in process(good, extractor, method, post, cfg):
                writer.add(row, *extras)
                logger.log_image(row, out / "overlays" / f"{row['id']}.jpg" if extras and cfg.save_overlays else None)
        bar.update(len(batch))
        bar.set_postfix(running_summary(writer.rows))
    bar.close()
    summary = summarize_run(writer.rows, dataset=dataset.name, backbone=cfg.backbone.name,
                            method=str(cfg.method._target_).rsplit(".", 1)[-1])
    writer.close(summary)
    logger.log_summary(summary)
    return summary


def process(batch, extractor, method, post, cfg):
    """Yield (row, (image, labels, mask, box)) per image; a failing image becomes an error row."""
    samples = [s for s, _, _ in batch]
    features, t_features = timed(extractor, [t for _, t, _ in batch])
    if cfg.graph.center and not hasattr(method, "batch"):  # peers see the same centred features
        features = [(prepare_features(f, center=True), g) for f, g in features]
    seeds = [derive_seed(cfg.seed, s.id) for s in samples]
    try:
        labels, t_method = timed(run_method, method, features, seeds)
        per_image = list(zip(samples, features, seeds, labels))
    except Exception:  # noqa: BLE001 - isolate the image that breaks the batch
        per_image = [(s, f, seed, None) for s, f, seed in zip(samples, features, seeds)]
        t_method = 0.0
    for sample, (f, grid), seed, lab in per_image:
        try:
            if lab is None:
                (lab,), t = timed(run_method, method, [(f, grid)], [seed])
                t_method += t
            if not torch.isfinite(f).all():
                raise FloatingPointError("non-finite backbone features")
            full, mask, box = post(lab, sample.image)
            row = {"id": sample.id, **image_metrics(sample, full, mask, box)}
            row["time_s"] = (t_features + t_method) / len(batch)
            yield row, (sample.image, full, mask, box)
        except Exception as e:  # noqa: BLE001
            yield {"id": sample.id, "error": f"{type(e).__name__}: {e}"}, ()


def running_summary(rows: list[dict]) -> dict:
    s = metrics.summarize(rows)
    return {k: f"{s[k]:.3f}" for k in ("iou", "corloc") if k in s}


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig):
    out = Path(HydraConfig.get().runtime.output_dir)
    logger = instantiate(cfg.logger)
    logger.start(OmegaConf.to_container(cfg, resolve=True), out)
    failed = True
    try:
        summary = segment(cfg, out, logger)
        failed = False
    finally:  # one failing job must not leave a tracking run open and break a multirun
        logger.finish(failed=failed)
    log.info("summary: %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()})
    log.info("results in %s", out)
    if cfg.strict and summary["n_failed"]:
        log.error("%d image(s) failed (strict=true): see %s", summary["n_failed"], out / "results.csv")
        sys.exit(1)
    return summary.get(cfg.objective) if cfg.objective else None


if __name__ == "__main__":
    main()
