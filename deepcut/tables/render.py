"""A table as data (`Table`) and its two writers, Markdown and LaTeX, with the number formats the
tables share (mean ± std over seeds)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


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
