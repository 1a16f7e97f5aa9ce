"""Reading run directories for the tables: each finished run as a flat dict (summary, seed,
experiment, overrides, provenance), the shards of a split run merged into one, and the rules that
group runs into recipes (seeds of one recipe are pooled into mean ± std)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from deepcut import rundir
from deepcut.overrides import (
    LOCATION,
    OPERATIONAL,
    override_key,
    override_value,
    within,
)
from deepcut.tables.render import common_dir

PAPER_NUMBERS = Path(__file__).resolve().parent / "paper_numbers.yaml"  # the published numbers


# Summary keys, in the order tables show them, with their number format in the sweep table.
METRICS = {"miou": ".4f", "max_f_beta": ".4f", "acc": ".4f", "mae": ".4f", "s_measure": ".4f", "mean_e_measure": ".4f",
           "max_e_measure": ".4f", "corloc": ".2f", "nmi": ".4f", "ari": ".4f",
           **{f"{k}_{kind}": ".4f" for kind in ("box", "mask") for k in ("ap", "ap50", "ar1", "ar10", "ar100")}}


COUNTS = {"time_s": ".3f", "n_images": ".0f", "n_failed": ".0f"}


# Overrides that do not change results (deepcut.rundir.OPERATIONAL) and the seed (runs of several
# seeds are pooled into mean ± std): left out when grouping runs and from swept columns. Where the
# data is (deepcut.rundir.LOCATION) is not a change of recipe either, so a paper cell filled by such a
# run is not marked (they still make separate rows in the sweep table when they are swept).
def is_neutral(key: str) -> bool:
    return key == "seed" or within(key, OPERATIONAL)


def is_location(key: str) -> bool:
    return within(key, LOCATION)


def load_run(run_dir: Path) -> dict:
    """One run: its summary, seed, experiment, overrides and provenance, as a flat dict."""
    hydra_dir = run_dir / ".hydra"
    summary = json.loads((run_dir / "summary.json").read_text())
    config = OmegaConf.load(hydra_dir / "config.yaml")
    overrides = [str(o) for o in OmegaConf.load(hydra_dir / "overrides.yaml")] \
        if (hydra_dir / "overrides.yaml").exists() else []
    choices = {}
    if (hydra_dir / "hydra.yaml").exists():
        choices = OmegaConf.to_container(OmegaConf.load(hydra_dir / "hydra.yaml").hydra.runtime.choices)
    experiment = choices.get("experiment") or next(
        (override_value(o) for o in overrides if override_key(o) == "experiment"), None)
    info = json.loads((run_dir / "run_info.json").read_text()) if (run_dir / "run_info.json").exists() else {}
    if (run_dir / "evaluation.json").exists():  # evaluate.py's re-scoring of the same labels: metrics added since
        evaluation = json.loads((run_dir / "evaluation.json").read_text())
        summary = {**{k: v for k, v in evaluation.items() if k in METRICS}, **summary}
    variant = [o for o in overrides if not is_neutral(override_key(o)) and not is_location(override_key(o))
               and override_key(o) != "experiment"]
    return {
        "run_dir": str(run_dir), "experiment": experiment or "", "variant": " ".join(variant),
        "overrides": " ".join(overrides), "seed": config.get("seed"),
        "commit": info.get("commit"), "dirty": info.get("dirty"),
        **{k: v for k, v in summary.items() if not isinstance(v, (dict, list))},
        "_overrides": {override_key(o): override_value(o) for o in overrides},
        "_choices": choices, "_config": config,
    }


def find_runs(paths: list[Path]) -> tuple[pd.DataFrame, list[Path]]:
    """Finished runs under `paths` (sorted by directory) and the unfinished ones (no summary.json,
    or one that says "complete": false)."""
    runs, unfinished = [], []
    for root in paths:
        for cfg in sorted(Path(root).rglob(".hydra/config.yaml")):
            run_dir = cfg.parent.parent
            overrides = run_dir / ".hydra" / "overrides.yaml"
            if overrides.exists() and any(str(o).startswith("resume=") for o in OmegaConf.load(overrides)):
                continue  # `run.py resume=<dir>` wrote its results into <dir>, counted there
            run = load_run(run_dir) if (run_dir / "summary.json").exists() else None
            if run is None or run.get("complete") is False:  # killed, or stopped by a signal
                unfinished.append(run_dir)
            else:
                runs.append(run)
    return pd.DataFrame(merge_split_runs(runs)), unfinished


def merge_split_runs(runs: list[dict]) -> list[dict]:
    """The shards of a split run (dataset.shard=i dataset.num_shards=n, one run directory each) as
    one run over the whole data set: its summary recomputed from the shards' per-image rows, which
    is the summary the unsharded run would have written (tested)."""
    from deepcut.results import read_instances, read_rows, summarize_run

    split, out = {}, []
    for run in runs:
        if int(run["_overrides"].get("dataset.num_shards", 1)) > 1:
            key = rundir.shard_key(Path(run["run_dir"]))
            split.setdefault(key[0] if key else run["run_dir"], []).append(run)
        else:
            out.append(run)
    for shards in split.values():
        dirs = [Path(r["run_dir"]) for r in shards]
        try:
            rows = rundir.merge_shards(dirs, lambda d: read_rows(d / "results.csv"))
        except ValueError as err:
            print(f"not merged ({err}); each shard is listed on its own", file=sys.stderr)
            out += shards
            continue
        first = shards[0]
        info = {k: v for k, v in first.items() if not k.startswith("n_") and k not in METRICS and k != "time_s"}
        found = [read_instances(d, [r["id"] for r in read_rows(d / "results.csv") if not r.get("error")]) for d in dirs]
        records = None if all(f is None for f in found) else [r for f in found for r in f or []]
        merged = {**info, **summarize_run(rows, records)}
        merged["run_dir"] = common_dir(dirs).replace(" runs)", " shards)")
        merged["variant"] = " ".join(o for o in first["variant"].split() if override_key(o) != "dataset.shard")
        merged["overrides"] = " ".join(o for o in first["overrides"].split() if override_key(o) != "dataset.shard")
        merged["_overrides"] = {k: v for k, v in first["_overrides"].items() if k != "dataset.shard"}
        out.append(merged)
    return out


def group_runs(runs: pd.DataFrame) -> pd.core.groupby.DataFrameGroupBy:
    return runs.groupby(["experiment", "variant"], sort=False, dropna=False)


def pick_group(runs: pd.DataFrame, experiment: str) -> pd.DataFrame | None:
    """The runs of `experiment` that fill its cell: the variant with the most images per run, then
    the most seeds, then the one without extra overrides."""
    mine = runs[runs["experiment"] == experiment]
    if mine.empty:
        return None
    best = max(group_runs(mine), key=lambda g: (g[1]["n_images"].max(), len(g[1]), g[0][1] == ""))
    return best[1]


def matches(run: dict, match: dict) -> bool:
    """A run has every `key: value` of `match`: a config group's choice (method: tokencut) or a
    config key's value (postprocess.bilateral: true)."""
    for key, want in match.items():
        have = run["_choices"].get(key) if key in run["_choices"] else OmegaConf.select(run["_config"], key)
        if str(have).lower() != str(want).lower():
            return False
    return True


def recipe(run: dict) -> tuple:
    """What a run computed, seed aside: the settings its results depend on (settings.json's, so a
    peer's ignores DeepCut's groups) and its number of images. Runs that share it are seeds of one
    recipe."""
    return (run.get("n_images"),) + tuple(sorted((k, str(v)) for k, v in rundir.settings(run["_config"]).items()
                                                  if k != "seed"))


def one_recipe(mine: list[dict], where: str, left_out: list[str]) -> list[dict]:
    """The runs of one recipe among those a cell matches (a row names only some keys, so runs on
    other features, images or steps can match it too): the recipe with the most images per run, then
    the most seeds; the others are named in `left_out` instead of being averaged in as seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in mine:
        groups.setdefault(r["_recipe"], []).append(r)
    if len(groups) < 2:
        return mine
    best = max(groups, key=lambda k: (k[0] or 0, len(groups[k])))
    chosen = dict(best[1:])
    for key, rs in groups.items():
        if key is not best:
            other = dict(key[1:])
            diff = sorted(k for k in chosen.keys() | other.keys() if chosen.get(k) != other.get(k))
            shown = ", ".join(f"{k}={other.get(k, '–')}" for k in diff[:4]) + (", ..." if len(diff) > 4 else "")
            left_out.append(f"{where}: {len(rs)} run(s) left out, a different recipe ({key[0]} images"
                            f"{'; ' + shown if shown else ''}): {common_dir(r['run_dir'] for r in rs)}")
    return groups[best]
