"""Tables from run.py output: the paper's tables with its numbers beside ours, and a table of any sweep.

    python -m deepcut.tables multirun/2026-01-01/10-00-00            # a sweep
    python -m deepcut.tables multirun/a multirun/b outputs/x --out tables/
    python -m deepcut.tables RUN_DIRS... --all       # every paper table, even with no run of ours

Every run directory below the paths given counts: it holds summary.json (written when the run
ends), .hydra/config.yaml, .hydra/overrides.yaml, .hydra/hydra.yaml and, when the run was made
with deepcut.loggers, run_info.json (commit and command line). Runs are grouped by experiment and
overrides; runs that differ only in `seed` are pooled into mean ± std (n seeds).

Writes to --out (default: <first path>/tables):
  paper_tables.md / .tex  the tables of deepcut/tables/paper_numbers.yaml: per cell the paper's number,
                          ours (from the runs of the cell's experiment) and the difference, then the
                          runs behind them (overrides, seeds, images, seconds per image, commit)
  sweep.md / .tex         one row per configuration: swept keys, dataset, backbone, method, metrics
  runs.csv                one row per run: everything above at full precision, plus the run dir
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from deepcut.loggers import git_state
from deepcut.tables.render import (
    Table,
    commits_text,
    common_dir,
    count_text,
    mean_std,
    seeds_text,
    short,
    to_latex,
    to_markdown,
)
from deepcut.tables.runs import (
    COUNTS,
    METRICS,
    PAPER_NUMBERS,
    find_runs,
    group_runs,
    is_neutral,
    matches,
    one_recipe,
    pick_group,
    recipe,
)


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
    parser = argparse.ArgumentParser(prog="python -m deepcut.tables", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
