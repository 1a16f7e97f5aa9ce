"""Tables from run.py output: the paper's tables with its numbers beside ours, and a table of any sweep.

    python experiments/make_tables.py multirun/2026-01-01/10-00-00            # a sweep
    python experiments/make_tables.py multirun/a multirun/b outputs/x --out tables/
    python experiments/make_tables.py RUN_DIRS... --all       # every paper table, even with no run of ours

Every run directory below the paths given counts: it holds summary.json (written when the run
ends), .hydra/config.yaml, .hydra/overrides.yaml, .hydra/hydra.yaml and, when the run was made
with deepcut.loggers, run_info.json (commit and command line). Runs are grouped by experiment and
overrides; runs that differ only in `seed` are pooled into mean ± std (n seeds).

Writes to --out (default: <first path>/tables):
  paper_tables.md / .tex  the tables of experiments/paper_numbers.yaml: per cell the paper's number,
                          ours (from the runs of the cell's experiment) and the difference, then the
                          runs behind them (overrides, seeds, images, seconds per image, commit)
  sweep.md / .tex         one row per configuration: swept keys, dataset, backbone, method, metrics
  runs.csv                one row per run: everything above at full precision, plus the run dir
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from deepcut import rundir
from deepcut.loggers import git_state
from deepcut.overrides import LOCATION, OPERATIONAL, override_key, override_value, within

HERE = Path(__file__).resolve().parent
PAPER_NUMBERS = HERE / "paper_numbers.yaml"

# Summary keys, in the order tables show them, with their number format in the sweep table.
METRICS = {"miou": ".4f", "max_f_beta": ".4f", "acc": ".4f", "mae": ".4f", "s_measure": ".4f", "mean_e_measure": ".4f",
           "max_e_measure": ".4f", "corloc": ".2f", "nmi": ".4f", "ari": ".4f"}
COUNTS = {"time_s": ".3f", "n_images": ".0f", "n_failed": ".0f"}
# Overrides that do not change results (deepcut.rundir.OPERATIONAL) and the seed (runs of several
# seeds are pooled into mean ± std): left out when grouping runs and from swept columns. Where the
# data is (deepcut.rundir.LOCATION) is not a change of recipe either, so a paper cell filled by such a
# run is not marked (they still make separate rows in the sweep table when they are swept).
def is_neutral(key: str) -> bool:
    return key == "seed" or within(key, OPERATIONAL)


def is_location(key: str) -> bool:
    return within(key, LOCATION)


# ------------------------------------------------------------------ reading runs

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
    from deepcut.results import read_rows, summarize_run

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
        merged = {**info, **summarize_run(rows)}
        merged["run_dir"] = common_dir(dirs).replace(" runs)", " shards)")
        merged["variant"] = " ".join(o for o in first["variant"].split() if override_key(o) != "dataset.shard")
        merged["overrides"] = " ".join(o for o in first["overrides"].split() if override_key(o) != "dataset.shard")
        merged["_overrides"] = {k: v for k, v in first["_overrides"].items() if k != "dataset.shard"}
        out.append(merged)
    return out


# ------------------------------------------------------------------ tables

@dataclass
class Table:
    title: str
    columns: list[str]                      # flat column names (Markdown header)
    rows: list[list[str]]
    groups: list[tuple[str, int]] | None = None   # LaTeX: a spanning header over the columns
    notes: list[str] = field(default_factory=list)


def mean_std(values, fmt: str, scale: float = 1.0) -> str:
    vs = [float(v) * scale for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vs:
        return "–"
    if len(vs) == 1:
        return format(vs[0], fmt)
    return f"{format(pd.Series(vs).mean(), fmt)} ± {format(pd.Series(vs).std(), fmt)}"


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


def paper_tables(runs: pd.DataFrame, paper: dict, show_all: bool = False) -> tuple[list[Table], set[str]]:
    """The paper's tables with paper / ours / Δ per cell; also the experiments they used."""
    tables, used = [], set()
    for name, spec in paper.items():
        if name == "dev_tables":
            continue
        scale = float(spec.get("scale", 1))
        columns = ["Method"]
        for c in spec["columns"]:
            columns += [f"{c} paper", f"{c} ours", f"{c} Δ"]
        rows, filled, notes = [], False, []
        for row in spec["rows"]:
            cells = [row["name"]]
            for c in spec["columns"]:
                cell = row["cells"].get(c) or {}
                paper_value = cell.get("paper")
                ours, diff = "–", "–"
                group = pick_group(runs, cell["experiment"]) if cell.get("experiment") and len(runs) else None
                if group is not None:
                    metric = cell.get("metric", spec.get("metric"))
                    values = group[metric].tolist() if metric in group else []
                    ours = mean_std(values, ".1f", scale)
                    if ours != "–":
                        filled = True
                        used.add(cell["experiment"])
                        variant = group["variant"].iloc[0]
                        if variant:
                            ours += "†"
                            note = f"† {cell['experiment']}: run with {variant}"
                            if note not in notes:
                                notes.append(note)
                        if paper_value is not None:
                            mean = pd.Series([float(v) * scale for v in values if v is not None]).mean()
                            diff = f"{round(mean, 1) - float(paper_value):+.1f}"  # of the numbers shown
                cells += ["–" if paper_value is None else f"{float(paper_value):.1f}", ours, diff]
            rows.append(cells)
        if filled or show_all:
            tables.append(Table(spec.get("title", ""), columns, rows,
                                [("", 1)] + [(c, 3) for c in spec["columns"]], notes))
    return tables, used


def matches(run: dict, match: dict) -> bool:
    """A run has every `key: value` of `match`: a config group's choice (method: tokencut) or a
    config key's value (postprocess.bilateral: true)."""
    for key, want in match.items():
        have = run["_choices"].get(key) if key in run["_choices"] else OmegaConf.select(run["_config"], key)
        if str(have).lower() != str(want).lower():
            return False
    return True


def dev_rows(spec: dict) -> list[tuple[str, dict, dict]]:
    """(name, match, paper numbers by column) of every row and its "+ BS" twin."""
    out = []
    for row in spec["rows"]:
        cells = row.get("cells") or {}
        for bs in (False, True):
            name = row["name"] + (" + BS" if bs else "")
            paper = {c: (cells.get(c) or {}).get("paper_bs" if bs else "paper") for c in spec["columns"]}
            out.append((name, {**row["match"], "postprocess.bilateral": bs}, paper))
    return out


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


def dev_tables(runs: pd.DataFrame, spec: dict) -> list[Table]:
    """Tables 1 and 2 from runs of every method (experiments/paper_tables.sh): paper / ours / Δ per
    cell, seeds pooled into mean ± std, each row twice (without and with the bilateral solver); the
    backbone, the images behind each column and the seeds are in the notes."""
    if not len(runs):
        return []
    records = runs.to_dict("records")
    for r in records:  # once per run: every row and column of every table compares it
        r["_recipe"] = recipe(r)
    tables = []
    for key in ("table1", "table2"):
        if key not in spec:
            continue
        t = spec[key]
        scale = float(t.get("scale", 1))
        columns = ["Method"] + [f"{c} {part}" for c in t["columns"] for part in ("paper", "ours", "Δ")]
        rows, images, backbones, seeds, filled, left_out = [], {}, set(), {}, False, []
        for name, match, paper in dev_rows(t):
            cells, ran = [name], False
            for column, dataset in t["columns"].items():
                mine = one_recipe([r for r in records if r.get("dataset") == dataset and matches(r, match)],
                                  f"{name}, {column}", left_out)
                values = [r.get(t["metric"]) for r in mine]
                ours = mean_std(values, ".1f", scale)
                p = paper.get(column)
                diff = "–"
                if ours != "–":
                    filled = ran = True
                    images.setdefault(column, set()).update(int(r["n_images"]) for r in mine)
                    backbones.update(str(r.get("backbone")) for r in mine)
                    if match.get("method") == "deepcut":
                        seeds.setdefault(column, set()).update(int(r["seed"]) for r in mine)
                    if p is not None:
                        mean = pd.Series([float(v) * scale for v in values if v is not None]).mean()
                        diff = f"{round(mean, 1) - float(p):+.1f}"
                cells += ["–" if p is None else f"{float(p):.1f}", ours, diff]
            if ran or any(v is not None for v in paper.values()):  # a row with neither (+ BS twins nobody ran) is left out
                rows.append(cells)
        if not filled:
            continue
        notes = [f"Ours: backbone {', '.join(sorted(backbones))}; images per data set: "
                 + ", ".join(f"{c} {'/'.join(map(str, sorted(n)))}" for c, n in images.items())
                 + "; DeepCut (random): mean ± std over seeds "
                 + "; ".join(f"{c} {','.join(map(str, sorted(s)))}" for c, s in seeds.items())
                 + " (one seed: no ± shown).",
                 "+ BS: postprocess.bilateral=true (the fast bilateral solver) after the method.",
                 *spec.get("notes", []), *left_out]
        for line in left_out:
            print(f"{t['title']}: {line}", file=sys.stderr)
        tables.append(Table(t["title"], columns, rows, [("", 1)] + [(c, 3) for c in t["columns"]], notes))
    s = spec.get("saliency")
    if s:
        columns, rows = ["Method"], []
        for column in s["datasets"]:
            columns += [f"{column} {label}" for label in s["metrics"].values()]
        for name, match, _ in dev_rows(spec["table2"]):
            cells = [name]
            for dataset in s["datasets"].values():
                mine = one_recipe([r for r in records if r.get("dataset") == dataset and matches(r, match)], "", [])
                cells += [mean_std([r.get(m) for r in mine], ".3f") for m in s["metrics"]]
            if any(c != "–" for c in cells[1:]):  # rows nobody ran are left out
                rows.append(cells)
        if any(c != "–" for r in rows for c in r[1:]):
            groups = [("", 1)] + [(c, len(s["metrics"])) for c in s["datasets"]]
            tables.append(Table(s["title"], columns, rows, groups,
                                ["MAE: lower is better. Sₘ, Eₘ: pysodmetrics (see deepcut/metrics.py for how its "
                                 "maxF differs from ours)."]))
    return tables


def runs_table(runs: pd.DataFrame, experiments: set[str], head: str | None) -> Table:
    """The runs behind the paper tables: what ran, on which commit, how fast."""
    rows = []
    chosen = runs[runs["experiment"].isin(experiments)]
    for (experiment, variant), g in group_runs(chosen):
        rows.append([experiment, variant or "–", seeds_text(g), count_text(g["n_images"]), count_text(g["n_failed"]),
                     mean_std(g["time_s"], ".3f"), commits_text(g), common_dir(g["run_dir"])])
    notes = [f"Tables made at commit {head[:10] if head else 'unknown'}; commit: each run's own (run_info.json)."]
    return Table("Runs", ["experiment", "overrides", "seeds", "images/run", "failed/run", "s/img", "commit", "run dir"], rows,
                 notes=notes)


def sweep_table(runs: pd.DataFrame) -> Table:
    """One row per configuration of a sweep (seeds pooled): swept keys, what ran, metrics."""
    all_keys: list[str] = []
    for ov in runs["_overrides"]:
        all_keys += [k for k in ov if k not in all_keys]
    swept = [k for k in all_keys if not is_neutral(k)
             and len({str(ov.get(k)) for ov in runs["_overrides"]}) > 1 and k not in ("dataset", "backbone", "method")]
    fixed = ["dataset", "backbone", "method"]
    metrics = [m for m in METRICS if m in runs and runs[m].notna().any()]
    counts = [c for c in COUNTS if c in runs and runs[c].notna().any()]
    rows = []
    keyed = runs.assign(_key=[tuple(str(ov.get(k)) for k in swept) for ov in runs["_overrides"]])
    for _, g in keyed.groupby(["experiment", "variant", "_key"], sort=False, dropna=False):
        first = g.iloc[0]
        row = [short(first["_overrides"].get(k, "–")) for k in swept]
        row += [str(first.get(k, "–")) for k in fixed]
        row += [mean_std(g[m], METRICS[m]) for m in metrics]
        row += [count_text(g[c]) if c in ("n_images", "n_failed") else mean_std(g[c], COUNTS[c]) for c in counts]
        row += [seeds_text(g), commits_text(g)]
        rows.append(row)
    header = (swept + fixed + metrics + [{"time_s": "s/img", "n_images": "images", "n_failed": "failed"}[c] for c in counts]
              + ["seeds", "commit"])
    notes = ["miou, max_f_beta, acc, nmi, ari: fractions; corloc: percent (summary.json units); mean ± std over seeds."]
    return Table("Sweep", header, rows, notes=notes)


def short(value: str) -> str:
    """An override's value, floats cut to 4 significant digits (optuna samples 6.813047017599905)."""
    try:
        return value if float(value) == int(float(value)) or len(value) < 8 else format(float(value), ".4g")
    except (ValueError, OverflowError):
        return value


def seeds_text(g: pd.DataFrame) -> str:
    seeds = sorted({int(s) for s in g["seed"] if s is not None and not (isinstance(s, float) and math.isnan(s))})
    return ",".join(map(str, seeds)) if len(seeds) <= 5 else f"{len(seeds)} seeds"


def commits_text(g: pd.DataFrame) -> str:
    """The commits the runs were made at (run_info.json), '-dirty' when tracked files differed."""
    commits = sorted({c[:10] + ("-dirty" if d is True else "") for c, d in zip(g["commit"], g["dirty"]) if isinstance(c, str)})
    return ", ".join(commits) or "not recorded"


def count_text(values) -> str:
    """A per-run count: its value when every run has the same, else min–max."""
    vs = sorted({int(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))})
    return "–" if not vs else str(vs[0]) if len(vs) == 1 else f"{vs[0]}–{vs[-1]}"


def common_dir(dirs) -> str:
    dirs = [Path(d) for d in dirs]
    if len(dirs) == 1:
        return str(dirs[0])
    parts = zip(*(d.parts for d in dirs))
    common = [p[0] for p in parts if len(set(p)) == 1]
    return str(Path(*common)) + f"/ ({len(dirs)} runs)" if common else f"{len(dirs)} runs"


# ------------------------------------------------------------------ writers

NUMBER = re.compile(r"[+-]?\d+(\.\d+)?( ± \d+(\.\d+)?)?†?|–")


def numeric_columns(t: Table) -> list[bool]:
    """Columns holding only numbers (or "–") are right-aligned."""
    return [all(NUMBER.fullmatch(str(r[i])) for r in t.rows) and bool(t.rows) for i in range(len(t.columns))]


def to_markdown(t: Table) -> str:
    def esc(s):
        return str(s).replace("|", "\\|")
    lines = ([f"### {t.title}", ""] if t.title else []) + ["| " + " | ".join(map(esc, t.columns)) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric_columns(t)) + "|"]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in t.rows]
    lines += [""] + [f"{n}  " for n in t.notes]
    return "\n".join(lines).rstrip() + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "±": r"$\pm$", "Δ": r"$\Delta$", "–": "--", "†": r"$^\dagger$"}


def tex(s) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(s))


def to_latex(t: Table) -> str:
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{tex(t.title)}}}",
             r"\begin{tabular}{" + "".join("r" if num else "l" for num in numeric_columns(t)) + "}", r"\toprule"]
    if t.groups:
        lines.append(" & ".join(rf"\multicolumn{{{span}}}{{c}}{{{tex(name)}}}" if span > 1 else tex(name)
                                for name, span in t.groups) + r" \\")
        start, rules = 1, []
        for name, span in t.groups:
            if span > 1:
                rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
            start += span
        lines.append(" ".join(rules))
        sub = [t.columns[0]] + [c.rsplit(" ", 1)[1] for c in t.columns[1:]]
        lines.append(" & ".join(tex(c) for c in sub) + r" \\")
    else:
        lines.append(" & ".join(tex(c) for c in t.columns) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(tex(c) for c in r) + r" \\" for r in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if t.notes:
        lines.append(r"\par\smallskip\footnotesize " + r" \\ ".join(tex(n) for n in t.notes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ main

def make_tables(paths: list[Path], out: Path, paper_file: Path = PAPER_NUMBERS, show_all: bool = False) -> dict:
    runs, unfinished = find_runs(paths)
    paper = OmegaConf.to_container(OmegaConf.load(paper_file))
    out.mkdir(parents=True, exist_ok=True)
    head = git_state()["commit"]
    written = {}
    if len(runs):
        runs.drop(columns=["_overrides", "_choices", "_config"]).to_csv(out / "runs.csv", index=False)
        written["runs"] = out / "runs.csv"
    tables, used = paper_tables(runs, paper, show_all)
    dev = dev_tables(runs, paper.get("dev_tables", {})) if "dev_tables" in paper else []
    if dev:
        (out / "dev_tables.md").write_text("\n".join(to_markdown(t) for t in dev))
        (out / "dev_tables.tex").write_text("\n".join(to_latex(t) for t in dev))
        written["dev_md"], written["dev_tex"] = out / "dev_tables.md", out / "dev_tables.tex"
    if tables:
        if used:
            tables.append(runs_table(runs, used, head))
        stem = out / "paper_tables"
        stem.with_suffix(".md").write_text("\n".join(to_markdown(t) for t in tables))
        stem.with_suffix(".tex").write_text("\n".join(to_latex(t) for t in tables))
        written["paper_md"], written["paper_tex"] = stem.with_suffix(".md"), stem.with_suffix(".tex")
    if len(runs):
        sweep = sweep_table(runs)
        sweep.notes.append(f"Tables made at commit {head[:10] if head else 'unknown'}.")
        if unfinished:
            sweep.notes.append(f"{len(unfinished)} unfinished run(s) without summary.json left out: "
                               + ", ".join(str(u) for u in unfinished[:5]) + (" …" if len(unfinished) > 5 else ""))
        (out / "sweep.md").write_text(to_markdown(sweep))
        (out / "sweep.tex").write_text(to_latex(sweep))
        written["sweep_md"], written["sweep_tex"] = out / "sweep.md", out / "sweep.tex"
    return {"runs": runs, "unfinished": unfinished, "files": written}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="run directories or multirun (sweep) directories")
    parser.add_argument("--out", type=Path, help="output folder (default: <first path>/tables)")
    parser.add_argument("--paper", type=Path, default=PAPER_NUMBERS, help="the published numbers (YAML)")
    parser.add_argument("--all", action="store_true", help="write every paper table, even those with no run of ours")
    args = parser.parse_args(argv)
    missing = [p for p in args.paths if not p.is_dir()]
    if missing:
        parser.error(f"not a directory: {', '.join(map(str, missing))}")
    result = make_tables(args.paths, args.out or args.paths[0] / "tables", args.paper, args.all)
    if not len(result["runs"]) and not result["files"]:
        print(f"no finished runs (summary.json + .hydra/config.yaml) under {', '.join(map(str, args.paths))}",
              file=sys.stderr)
        return 1
    for key in ("dev_md", "paper_md", "sweep_md"):
        if key in result["files"]:
            print(result["files"][key].read_text())
    print("wrote " + ", ".join(str(p) for p in result["files"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
