"""run.py's command line, checked and completed before Hydra runs (light: no torch)."""
from __future__ import annotations

import sys
from pathlib import Path

from deepcut.errors import ConfigError, one_paragraph
from deepcut.files import writable_dir
from deepcut.overrides import override_key, override_value
from deepcut.records import read_settings


def preflight(argv: list[str]) -> list[str]:
    """The command line, checked and completed before Hydra runs:
      * resume=<dir> becomes that run's own overrides (from its settings.json), then the ones given
        now (which replace theirs), then hydra.run.dir=<dir>; whether the result still computes the
        same thing is checked against the resolved settings and the data when the run opens <dir>;
      * an explicit hydra.run.dir / hydra.sweep.dir must be writable.
    Problems: one paragraph on stderr, exit code 2."""
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    given = {override_key(a): a for a in overrides}
    multirun = any(a in ("-m", "--multirun") for a in argv)
    try:
        resume = given.pop("resume", None)
        if resume is not None:
            run_dir = Path(override_value(resume)).expanduser()
            if multirun:
                raise ConfigError(f"{resume}: resume continues one run; it cannot be swept (-m)")
            stored = read_settings(run_dir)
            if stored is None:
                raise ConfigError(f"{resume}: not the directory of a run (no readable settings.json in it); give the "
                                  "directory a run printed ('results in ...')")
            kept = [o for o in stored["overrides"] if override_key(o) not in given]
            now = [a for a in overrides if override_key(a) not in ("resume", "hydra.run.dir")]
            argv = [a for a in argv if a not in overrides] + kept + now + [f"hydra.run.dir={run_dir}"]
            given = {override_key(a): a for a in kept + now + [f"hydra.run.dir={run_dir}"]}
        for key in ("hydra.run.dir", "hydra.sweep.dir"):
            if key in given and "$" not in override_value(given[key]):
                writable_dir(override_value(given[key]), key)
    except ConfigError as e:
        print(f"Error: {one_paragraph(e)}", file=sys.stderr)
        sys.exit(2)
    return argv

