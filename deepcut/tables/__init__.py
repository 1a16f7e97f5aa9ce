"""Tables from run.py output, as a library: the paper's tables with its numbers beside ours, the
development tables and a table of any sweep (`python -m deepcut.tables DIR...`; see `build`).

  * runs.py: run directories -> one flat record per run (split runs merged), grouped into recipes;
  * render.py: `Table` and its Markdown / LaTeX writers;
  * build.py: the tables themselves and the command.
"""
from deepcut.tables.build import (
           dev_rows,
           dev_tables,
           main,
           make_tables,
           paper_tables,
           sweep_table,
)
from deepcut.tables.render import Table, mean_std, to_latex, to_markdown
from deepcut.tables.runs import PAPER_NUMBERS, find_runs, load_run, matches

__all__ = ["PAPER_NUMBERS", "Table", "dev_rows", "dev_tables", "find_runs", "load_run", "main", "make_tables", "matches",
           "mean_std", "paper_tables", "sweep_table", "to_latex", "to_markdown"]
