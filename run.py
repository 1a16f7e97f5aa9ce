"""DeepCut over a dataset: `python run.py [group=option ...] [key=value ...]`, `-m` to sweep.

Writes under Hydra's run directory: labels/<id>.png, overlays/<id>.jpg, results.csv (one row per
image, incremental), summary.json, settings.json (the settings and overrides the results come
from). `resume=<dir>` (that run's own command) or re-running the same command into the same
directory (`hydra.run.dir=<dir>`) skips finished images and retries failed ones; a run killed at
any point and resumed gives the summary an uninterrupted run gives.

Exit codes: 0 done; 1 some image failed and strict=true; 2 a setting is wrong (one paragraph says
which, no traceback); 130/143 stopped by SIGINT/SIGTERM after finishing the batch in flight and
writing summary.json ("complete": false).
"""
from __future__ import annotations

import logging
import math
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from deepcut.cache import FeatureCache
from deepcut.graph import prepare_features
from deepcut.pipeline import Extractor, Postprocess, bound, image_metrics, run_method
from deepcut.results import ResultsWriter, read_rows, read_settings, summarize_run
from deepcut.segment import derive_seed
from deepcut.validate import ConfigError, one_paragraph, validate, writable_dir

log = logging.getLogger("deepcut")

MAX_PIXELS = 4096 * 4096  # default of max_pixels (configs/config.yaml): bigger images are downscaled first

# Settings that do not change a run's results: a resume may give them anew, settings.json skips them.
OPERATIONAL = ("device", "num_workers", "strict", "save_labels", "save_overlays", "cache", "logger", "launcher",
               "sweeper", "objective", "resume", "data_root", "dataset.root", "dataset.path", "dataset.limit",
               "backbone.batch_size")


def operational(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in OPERATIONAL)


def settings(cfg: DictConfig) -> dict:
    """The settings the results depend on, flattened to dotted keys (settings.json). A value that
    only refers to another setting (method.k: ${loss.k}) is that setting, recorded once."""
    flat = {}

    def walk(raw: dict, value: dict, prefix: str) -> None:
        for k, v in value.items():
            key = f"{prefix}{k}"
            if operational(key) or (isinstance(raw[k], str) and re.fullmatch(r"\$\{[\w.]+\}", raw[k])):
                continue
            if isinstance(v, dict) and v:
                walk(raw[k], v, key + ".")
            else:
                flat[key] = v

    walk(OmegaConf.to_container(cfg, resolve=False), OmegaConf.to_container(cfg, resolve=True), "")
    return flat


# ---------------------------------------------------------------- loading


def reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {one_paragraph(error, 500)}".replace("\n", " ")


class Loaded(Dataset):
    """Decodes and preprocesses in DataLoader workers; a bad file becomes a row, not a crash.
    Items: (sample, tensor, None, note) or (id, None, error, None)."""

    def __init__(self, dataset, indices, preprocess, max_pixels: int | None = None):
        self.dataset, self.indices, self.preprocess, self.max_pixels = dataset, indices, preprocess, max_pixels

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = self.indices[i]
        try:
            sample, note = bound(self.dataset[index], self.max_pixels)
            return sample, self.preprocess(sample.image), None, note
        except Exception as e:  # noqa: BLE001 - any unreadable input is recorded and skipped
            return self.dataset.ids[index], None, reason(e), None


# ---------------------------------------------------------------- processing


def isolate(fn, *lists) -> list:
    """``fn(*lists)`` (a list, one item per element); if that fails, ``fn`` per element, so only
    the elements that fail get their exception in place of a result."""
    if not lists[0]:
        return []
    try:
        return list(fn(*lists))
    except Exception:  # noqa: BLE001 - find the element that breaks the batch
        out = []
        for j in range(len(lists[0])):
            try:
                out.append(fn(*[items[j:j + 1] for items in lists])[0])
            except Exception as e:  # noqa: BLE001
                out.append(e)
        return out


def process(batch, extractor, method, post, cfg):
    """Yield (row, (image, labels, mask, box)) per image of a loaded batch; an image that cannot be
    processed (unreadable, non-finite features, a failing method) yields (error row, ())."""
    start = time.perf_counter()
    for sid, _, error, _ in (b for b in batch if b[2] is not None):
        yield {"id": sid, "error": error}, ()
    good = [b for b in batch if b[2] is None]
    if not good:
        return
    samples, notes = [b[0] for b in good], [b[3] for b in good]
    features = isolate(extractor, [b[1] for b in good])
    for i, f in enumerate(features):
        if not isinstance(f, Exception) and not torch.isfinite(f[0]).all():
            features[i] = FloatingPointError("non-finite backbone features (NaN or Inf)")
        elif not isinstance(f, Exception) and cfg.graph.center and not hasattr(method, "batch"):
            features[i] = (prepare_features(f[0], center=True), f[1])  # peers see the same centred features
    seeds = [derive_seed(cfg.seed, s.id) for s in samples]
    ok = [i for i, f in enumerate(features) if not isinstance(f, Exception)]
    labels: list = list(features)  # the exceptions stay in place
    for i, lab in zip(ok, isolate(lambda f, s: run_method(method, f, s), [features[i] for i in ok], [seeds[i] for i in ok])):
        labels[i] = lab
    per_image = (time.perf_counter() - start) / len(batch)
    for sample, lab, note in zip(samples, labels, notes):
        extra = {"note": note} if note else {}
        try:
            if isinstance(lab, Exception):
                raise lab
            full, mask, box = post(lab, sample.image)
            # Every patch in one cluster: a legitimate (empty or full) mask, evaluated and counted.
            row = {"id": sample.id, **extra, "degenerate": bool(lab.unique().numel() == 1),
                   **image_metrics(sample, full, mask, box), "time_s": per_image}
            yield row, (sample.image, full, mask, box)
        except Exception as e:  # noqa: BLE001
            yield {"id": sample.id, "error": reason(e), **extra}, ()


class RunningMean:
    """The progress bar's running IoU / CorLoc, updated per row (not recomputed over all rows
    after every batch, which grows quadratically over a 20k-image run)."""
    KEYS = ("iou", "corloc")

    def __init__(self, rows: list[dict]):
        self.sums, self.counts = dict.fromkeys(self.KEYS, 0.0), dict.fromkeys(self.KEYS, 0)
        for row in rows:
            self.add(row)

    def add(self, row: dict) -> None:
        for k in self.KEYS:
            v = row.get(k)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                self.sums[k] += float(v)
                self.counts[k] += 1

    def postfix(self) -> dict:
        scale = {"iou": 1, "corloc": 100}
        return {k: f"{scale[k] * self.sums[k] / self.counts[k]:.3f}" for k in self.KEYS if self.counts[k]}


class Stop:
    """SIGINT/SIGTERM: the first finishes the batch in flight (then the run writes its summary and
    exits 128 + signal number); a second one ends the process at once."""

    def __init__(self):
        self.signum = 0
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        if self.signum:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        log.warning("%s: finishing the images in flight, then writing the summary (again to stop at once)",
                    signal.Signals(signum).name)

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def segment(cfg: DictConfig, out: Path, dataset, extractor, method, post, writer, logger) -> tuple[dict, int]:
    """Process every image not done yet; the summary (also written when stopped or failing) and the
    number of the signal that stopped the run (0: it ran to the end)."""
    todo = [i for i, sid in enumerate(dataset.ids) if sid not in writer.done]
    if len(todo) < len(dataset):
        log.info("resuming %s: %d of %d images already done", out, len(dataset) - len(todo), len(dataset))
    loader = DataLoader(Loaded(dataset, todo, extractor.preprocess, cfg.get("max_pixels", MAX_PIXELS)),
                        batch_size=extractor.batch_size, num_workers=cfg.num_workers, collate_fn=list,
                        pin_memory=extractor.device.type == "cuda")
    bar = tqdm(total=len(todo), desc=f"{dataset.name}", unit="img", dynamic_ncols=True)
    batches = iter(loader)  # workers start before the handlers are set: they keep the default ones
    summary = {}
    running = RunningMean(writer.rows)
    with Stop() as stop:
        try:
            while not stop.signum:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except Exception:
                    if stop.signum:  # a worker ended by the same signal
                        break
                    raise
                for row, extras in process(batch, extractor, method, post, cfg):
                    writer.add(row, *extras)
                    running.add(row)
                    logger.log_image(row, out / "overlays" / f"{row['id']}.jpg" if extras and cfg.save_overlays else None)
                bar.update(len(batch))
                bar.set_postfix(running.postfix())
        finally:  # whatever ended the loop, the summary covers what is in results.csv
            bar.close()
            ids = set(dataset.ids)
            rows = [r for r in read_rows(writer.csv_path) if r["id"] in ids]
            summary = summarize_run(rows, dataset=dataset.name, backbone=cfg.backbone.name,
                                    method=str(cfg.method._target_).rsplit(".", 1)[-1])
            summary["complete"] = len(rows) == len(ids)
            writer.close(summary)
    logger.log_summary(summary)
    return summary, stop.signum


# ---------------------------------------------------------------- entry point


def _user_error(error: BaseException) -> BaseException | None:
    """The error to show the user, or None for a bug (which keeps its traceback)."""
    if isinstance(error, InstantiationException) and isinstance(error.__cause__, (ValueError, OSError)):
        return error.__cause__  # Hydra's wrapper around a constructor's own error (DatasetError, ...)
    if isinstance(error, (ValueError, OSError, InstantiationException)):
        return error  # ConfigError, DatasetError, BackboneError, RunDirBusy, a settings mismatch
    return None


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig):
    out = Path(HydraConfig.get().runtime.output_dir)
    try:  # settings first: nothing is loaded, computed or logged for a run that cannot work
        if cfg.get("resume"):  # preflight turns resume=<dir> into that run's command
            raise ConfigError(f"resume={cfg.resume}: give it on the command line of a single run (not with -m)")
        validate(cfg)
        writable_dir(out, "hydra.run.dir")
        dataset = instantiate(cfg.dataset)
        cache = FeatureCache(cfg.cache.dir) if cfg.cache.enabled else None
        extractor = Extractor(**cfg.backbone, device=cfg.device, cache=cache)
        method = instantiate(cfg.method)
        post = Postprocess(**cfg.postprocess)
        logger = instantiate(cfg.logger)
        writer = ResultsWriter(out, cfg.save_labels, cfg.save_overlays, settings=settings(cfg),
                               overrides=list(HydraConfig.get().overrides.task))
    except Exception as e:
        error = _user_error(e)
        if error is None:
            raise
        log.error("%s", one_paragraph(error))
        sys.exit(2)
    logger.start(OmegaConf.to_container(cfg, resolve=True), out)
    failed = True
    try:
        summary, stopped = segment(cfg, out, dataset, extractor, method, post, writer, logger)
        failed = bool(stopped)
    finally:  # one failing job must not leave a tracking run open and break a multirun
        logger.finish(failed=failed)
    log.info("summary: %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()})
    log.info("results in %s", out)
    if summary["n_failed"]:
        log.warning("%d of %d image(s) failed: their reasons are in the error column of %s",
                    summary["n_failed"], summary["n_images"], out / "results.csv")
    if stopped:
        log.warning("stopped by %s with %d of %d images done; continue with: python run.py resume=%s",
                    signal.Signals(stopped).name, summary["n_images"], len(dataset), out)
        sys.exit(128 + stopped)
    if cfg.strict and summary["n_failed"]:
        log.error("%d image(s) failed (strict=true): see %s", summary["n_failed"], out / "results.csv")
        sys.exit(1)
    return summary.get(cfg.objective) if cfg.objective else None


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _value(override: str) -> str:
    return override.split("=", 1)[1]


def _differ(stored: list[str], given: dict[str, str], union: bool) -> list[str]:
    """Keys of non-operational overrides whose values differ (``union``: also those only stored)."""
    old = {_key(o): _value(o) for o in stored if not operational(_key(o))}
    new = {k: _value(o) for k, o in given.items() if not operational(k) and not k.startswith("hydra.")}
    keys = (old.keys() | new.keys()) if union else new.keys()
    return sorted(k for k in keys if old.get(k) != new.get(k))


def preflight(argv: list[str]) -> list[str]:
    """The command line, checked and completed before Hydra (which writes into its run directory
    before main runs):
      * resume=<dir> becomes that run's own overrides (kept in its settings.json) plus
        hydra.run.dir=<dir>; operational settings given now (device, num_workers, ...) replace theirs;
      * an explicit hydra.run.dir that already holds results must be given the same overrides, so a
        mistaken re-run never rewrites the directory's .hydra/ with other settings;
      * an explicit hydra.run.dir / hydra.sweep.dir must be writable.
    Problems are reported as main reports them: one paragraph, exit code 2."""
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    given = {_key(a): a for a in overrides}
    multirun = any(a in ("-m", "--multirun") for a in argv)
    try:
        resume = given.pop("resume", None)
        if resume is not None:
            run_dir = Path(_value(resume)).expanduser()
            stored = read_settings(run_dir)
            if multirun:
                raise ConfigError(f"{resume}: resume continues one run; it cannot be swept (-m)")
            if stored is None:
                raise ConfigError(f"{resume}: not the directory of a run (no readable settings.json in it); give the "
                                  "directory a run printed ('results in ...')")
            differ = _differ(stored["overrides"], given, union=False)
            if differ:
                raise ConfigError(f"{resume} continues that run with its own settings "
                                  f"({' '.join(stored['overrides']) or 'no overrides'}), but this command changes "
                                  f"{', '.join(differ)}; drop those overrides (device, num_workers and other settings "
                                  "that do not change results may be given), or start a new run to use them")
            kept = [o for o in stored["overrides"] if _key(o) not in given]
            now = [a for a in overrides if _key(a) not in ("resume", "hydra.run.dir")]
            argv = [a for a in argv if a not in overrides] + kept + now + [f"hydra.run.dir={run_dir}"]
        elif "hydra.run.dir" in given and not multirun:
            run_dir = _value(given["hydra.run.dir"])
            stored = read_settings(run_dir)
            differ = [] if stored is None else _differ(stored["overrides"], given, union=True)
            if differ:
                raise ConfigError(f"hydra.run.dir={run_dir} holds the results of another command "
                                  f"({' '.join(stored['overrides']) or 'no overrides'}; this one differs in "
                                  f"{', '.join(differ)}); continue it with resume={run_dir}, or use a new directory")
        for key in ("hydra.run.dir", "hydra.sweep.dir"):
            if key in given and "$" not in _value(given[key]):
                writable_dir(_value(given[key]), key)
    except ConfigError as e:
        print(f"Error: {one_paragraph(e)}", file=sys.stderr)
        sys.exit(2)
    return argv


if __name__ == "__main__":
    sys.argv[1:] = preflight(sys.argv[1:])
    main()
