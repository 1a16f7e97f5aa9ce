"""DeepCut over a dataset: `python run.py [group=option ...] [key=value ...]`, `-m` to sweep.

Writes under Hydra's run directory: labels/<id>.png, overlays/<id>.jpg, results.csv (one row per
image, incremental), summary.json, settings.json (the settings and overrides the results come
from); with postprocess.instances=N, instances/<id>.{json,png} and instances.json (COCO results). `resume=<dir>` (that run's own command) or re-running the same command into the same
directory (`hydra.run.dir=<dir>`) skips finished images and retries failed ones; a run killed at
any point and resumed gives the summary an uninterrupted run gives.

Exit codes: 0 done; 1 some image failed and strict=true, or every image failed; 2 a setting is
wrong, or the run directory holds other settings or data (one paragraph says which, no traceback);
130/143 stopped by SIGINT/SIGTERM after finishing the batch in flight and writing summary.json
("complete": false). A sweep (-m) runs every job, lists the failed ones at its end (each job's
reason is in its error.txt) and exits with the largest of their codes.
"""
from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from deepcut import sweep
from deepcut.config import CONFIGS
from deepcut.errors import ConfigError, one_paragraph
from deepcut.preflight import preflight

# torch, timm and the stages are imported inside `run` and `segment`: `--help`, a typo and a
# wrong setting are answered without them.
log = logging.getLogger("deepcut")


def segment(cfg: DictConfig, out: Path, dataset, segmenter, writer, logger) -> tuple[dict, int]:
    """Process every image not done yet; the summary (also written when stopped or failing) and the
    number of the signal that stopped the run (0: it ran to the end)."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from deepcut.results import read_instances, read_rows, summarize_run, write_instances

    todo = [i for i, sid in enumerate(dataset.ids) if sid not in writer.done]
    if len(todo) < len(dataset):
        log.info("resuming %s: %d of %d images already done", out, len(dataset) - len(todo), len(dataset))
    size = segmenter.batch_size
    if getattr(segmenter.method, "collects", False):
        # A collection is a fixed run of the data set's images, so a resumed run trains the same
        # collections: one left unfinished is processed whole again, and only its missing rows written.
        groups = [range(a, min(a + size, len(dataset))) for a in range(0, len(dataset), size)]
        groups = [g for g in groups if any(dataset.ids[i] not in writer.done for i in g)]
        todo = [i for g in groups for i in g]
        starts = [0, *itertools.accumulate(len(g) for g in groups)]
        batching = {"batch_sampler": [list(range(a, z)) for a, z in zip(starts, starts[1:])]}
    else:
        batching = {"batch_size": size}
    loader = DataLoader(segmenter.loading(dataset, todo), **batching, num_workers=cfg.num_workers,
                        collate_fn=list, pin_memory=segmenter.extractor.device.type == "cuda")
    bar = tqdm(total=len(todo), desc=f"{dataset.name}", unit="img", dynamic_ncols=True)

    def write(rows: list, n_batch: int) -> None:
        for row, extras in rows:
            if str(row["id"]) in writer.done:  # redone with its unfinished collection
                continue
            writer.add(row, *extras)
            logger.log_image(row, out / "overlays" / f"{row['id']}.jpg" if extras and cfg.save_overlays else None)
        bar.update(n_batch)
        bar.set_postfix(logger.progress())

    # With overlap, batch i is post-processed in a thread while batch i + 1 is on the backbone and
    # its method; rows are still written batch by batch, in order, so the results are the same.
    overlap = cfg.overlap is True or (cfg.overlap == "auto" and segmenter.extractor.device.type == "cuda")
    pool, pending = (ThreadPoolExecutor(1, thread_name_prefix="postprocess") if overlap else None), None
    batches = iter(loader)  # DataLoader workers start now, with the default handlers
    stop = sweep.STOP  # installed by main
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
            clustered = segmenter.cluster_batch(batch, cfg.get("save_maps", False))
            if pool is None:
                write(segmenter.finish(clustered), len(batch))
                continue
            if pending is not None:
                write(pending[0].result(), pending[1])
            pending = pool.submit(segmenter.finish, clustered), len(batch)
        if pending is not None:  # the batch in flight is finished, also when a signal stopped the loop
            write(pending[0].result(), pending[1])
    finally:  # whatever ended the loop, the summary covers what is in results.csv
        if pool is not None:
            pool.shutdown(wait=True)
        bar.close()
        ids = set(dataset.ids)
        rows = [r for r in read_rows(writer.csv_path) if r["id"] in ids]
        records = read_instances(out, [r["id"] for r in rows if not r.get("error")])
        if records is not None:
            write_instances(out, records)
        summary = summarize_run(rows, records, dataset=dataset.name, backbone=cfg.backbone.name,
                                method=cfg.method.name)
        summary["complete"] = len(rows) == len(ids)
        writer.close(summary)
    logger.log_summary(summary)
    # A signal once every image was done stops nothing: the run is complete (a joblib job that had
    # finished was listed as failed with 143 when the sweep was stopped).
    return summary, 0 if summary["complete"] else stop.signum


def teacher_of(cfg: DictConfig, dataset) -> Path:
    """task.teacher_dir, checked: an earlier distil run of exactly this data set's images."""
    from deepcut.records import fingerprint_digest, read_fingerprint

    teacher = Path(cfg.task.teacher_dir)
    recorded, now = read_fingerprint(teacher) or {}, dataset.fingerprint(dataset.ids, fingerprint_digest(teacher))
    other = [i for i in dataset.ids if recorded.get(i) != now[i]]
    if other or not (teacher / "results.csv").is_file():
        raise ConfigError(f"task.teacher_dir={str(teacher)!r} holds no masks of this data set's images (first missing "
                          f"or different: {other[0] if other else dataset.ids[0]}); give the directory of a "
                          "task=distil run on the same images")
    return teacher


def distil_head(cfg: DictConfig, out: Path, dataset, segmenter, summary: dict | Path) -> dict:
    """task=distil, after the teacher's pass (``summary``: its summary) or from an earlier distil
    run's directory (``summary``: that directory): train the head on the masks of the images
    segmented without error and record it in summary.json."""
    from deepcut import distil
    from deepcut.results import read_rows, summarize_run, write_summary

    teacher = summary if isinstance(summary, Path) else None
    selected = set(dataset.ids)
    rows = [r for r in read_rows((teacher or out) / "results.csv") if r["id"] in selected]
    if teacher is not None:
        summary = {**summarize_run(rows, dataset=dataset.name, backbone=cfg.backbone.name, method=cfg.method.name),
                   "complete": True, "teacher_dir": str(teacher)}
    ids = sorted(r["id"] for r in rows if not r.get("error"))
    if not ids:
        return summary
    summary = {**summary, **distil.train(cfg, out, dataset, segmenter, ids, teacher)}
    write_summary(out, summary)
    log.info("head trained on %d images: %s", len(ids), summary["head"])
    return summary


# ---------------------------------------------------------------- entry point


def _user_error(error: BaseException) -> BaseException | None:
    """The error to show the user, or None for a bug (which keeps its traceback)."""
    if isinstance(error, InstantiationException) and isinstance(error.__cause__, (ValueError, OSError)):
        return error.__cause__  # Hydra's wrapper around a constructor's own error (DatasetError, ...)
    if isinstance(error, (ValueError, OSError, InstantiationException)):
        return error  # ConfigError, DatasetError, BackboneError, RunDirBusy, a settings or data mismatch
    return None


def run(cfg: DictConfig, out: Path, hc) -> tuple[int, str, object]:
    """One run into ``out``: (exit code, reason when not 0, the objective's value)."""
    from hydra.utils import instantiate

    from deepcut.validate import objective_problem, validate, validate_architecture

    held = None
    try:  # settings first: nothing is loaded, computed or logged for a run that cannot work
        if cfg.get("resume"):  # preflight turns resume=<dir> into that run's command
            raise ConfigError(f"resume={cfg.resume}: give it on the command line of a single run (not with -m)")
        validate(cfg, architecture=False)
        dataset = instantiate(cfg.dataset)
        distilling = cfg.task.name == "distil"
        if distilling:  # the teacher's masks are the targets: no ground truth is read, nor recorded
            dataset = dataset.without_ground_truth()
        teacher = teacher_of(cfg, dataset) if distilling and cfg.task.teacher_dir else None
        # Only a sweep reads the objective back: a single run (experiment=cub_parts on a folder of
        # one's own photos) goes on without the ground truth it would be scored by.
        if hc.mode == RunMode.MULTIRUN and (problem := objective_problem(cfg, dataset)):
            raise ConfigError(problem)
        validate_architecture(cfg.backbone)
        from deepcut import rundir  # the stages (timm, 3 s) only once the settings and the data pass
        from deepcut.api import segmenter_from_config
        from deepcut.cache import FeatureCache
        from deepcut.results import ResultsWriter

        cache = FeatureCache.usable(cfg.cache.dir) if cfg.cache.enabled else None
        cfg.device = sweep.job_device(cfg.device, hc)  # a joblib job on a multi-GPU machine: its own GPU
        # Every stage built (their constructors check their settings) before the directory is
        # written: a rejected setting leaves no settings.json that would refuse the corrected command.
        segmenter = segmenter_from_config(cfg, cache)
        logger = instantiate(cfg.logger)
        held = rundir.RunDir.open(out, cfg, dataset, list(hc.overrides.task), hc)
        # distil trains on labels/; a head trained from task.teacher_dir segments nothing: no results.csv of its own
        writer = None if teacher is not None else ResultsWriter(out, cfg.save_labels or distilling, cfg.save_overlays)
        logger.start(OmegaConf.to_container(cfg, resolve=True), out, writer.rows if writer else ())
    except Exception as e:
        if held is not None:
            held.close()
        error = _user_error(e)
        if error is None:
            raise
        log.error("%s", one_paragraph(error))
        return 2, one_paragraph(error), None
    failed = True
    try:
        if teacher is not None:  # the targets are an earlier distil run's masks
            summary, stopped = distil_head(cfg, out, dataset, segmenter, teacher), 0
        else:
            summary, stopped = segment(cfg, out, dataset, segmenter, writer, logger)
            if distilling and not stopped:  # a stop once the masks were made: the head is trained on resume
                stopped = sweep.STOP.signum
                summary = summary if stopped else distil_head(cfg, out, dataset, segmenter, summary)
        failed = bool(stopped)
    finally:  # one failing job must not leave a tracking run open and break a multirun
        logger.finish(failed=failed)
        held.close()
    log.info("summary: %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()})
    log.info("results in %s", out)
    if summary["n_failed"]:
        log.warning("%d of %d image(s) failed: their reasons are in the error column of %s",
                    summary["n_failed"], summary["n_images"], out / "results.csv")
    if stopped:
        log.warning("stopped by %s with %d of %d images done; continue with: python run.py resume=%s",
                    signal.Signals(stopped).name, summary["n_images"], len(dataset), out)
        return 128 + stopped, f"stopped by {signal.Signals(stopped).name}", None
    if summary["n_failed"] and (cfg.strict or summary["n_failed"] == summary["n_images"]):
        why = "every image failed" if summary["n_failed"] == summary["n_images"] else "strict=true"
        log.error("%d image(s) failed (%s): see %s", summary["n_failed"], why, out / "results.csv")
        return 1, f"{summary['n_failed']} image(s) failed ({why}): see the error column of results.csv", None
    return 0, "", summary.get(cfg.objective) if cfg.objective else None


@hydra.main(version_base="1.3", config_path=str(CONFIGS), config_name="config")
def main(cfg: DictConfig):
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    sweep.STOP.install()
    if hc.mode != RunMode.MULTIRUN:
        code, _, value = run(cfg, out, hc)
        if code:
            sys.exit(code)
        return value
    # A job of a sweep: whatever happens, the sweep goes on; the reason is in <job dir>/error.txt.
    sweep.register_job(Path(hc.sweep.dir))
    stopped = sweep.stop_requested(Path(hc.sweep.dir))
    try:
        if stopped:
            code, reason, value = 128 + stopped, f"not started: the sweep was stopped by {signal.Signals(stopped).name}", None
        else:
            code, reason, value = run(cfg, out, hc)
            if code == 2 and reason.startswith("objective="):  # the same for every trial: stop the sweep now
                print(f"Error: {reason}", file=sys.stderr)
                sys.exit(2)
    except Exception:  # noqa: BLE001 - a bug in one job is that job's failure
        code, reason, value = 1, traceback.format_exc(), None
        log.error("job %s failed:\n%s", hc.job.num, reason)
    if code:
        sweep.write_error(out, code, reason)
        # None, not NaN: hydra-optuna-sweeper records a trial whose value is not a float as failed,
        # while NaN passes its float() and then breaks optuna's tell() (2.10) for the whole study.
        return None
    return value


if __name__ == "__main__":
    sys.argv[1:] = preflight(sys.argv[1:])
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # Hydra's own errors reach the handler below
    try:
        main()
    except (HydraException, OmegaConfBaseException) as e:  # a typo in a key, group or option
        print(f"Error: {one_paragraph(e)} (python run.py --help lists the groups and options)", file=sys.stderr)
        sys.exit(2)
    sys.exit(sweep.SweepReport.exit_code)
