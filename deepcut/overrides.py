"""Command-line overrides (`group.key=value`) and what each key means to a run directory: the one
home of override parsing and of the keys that do not change results. Light (no torch), so the
command line can be checked before anything heavy is imported."""
from __future__ import annotations

# Settings that change no image's result: a resume may give them anew; settings.json leaves them out.
OPERATIONAL = ("device", "num_workers", "overlap", "strict", "save_labels", "save_overlays", "save_maps", "cache", "logger", "launcher",
               "sweeper", "objective", "resume", "hydra", "backbone.batch_size")
# Where the data is. Not compared as settings: dataset.json says whether the files there are the
# images (and ground truth) the results were computed on, so a moved data set may be resumed.
LOCATION = ("data_root", "dataset.root", "dataset.path")
# Which of the data set's images: a resume may extend or shorten the run (the summary covers the
# images of this run's selection only); the tables treat it as a variant of the recipe.
SELECTION = ("dataset.limit", "dataset.shard", "dataset.num_shards")


def within(key: str, keys) -> bool:
    """``key`` is one of ``keys`` or inside one (`cache.dir` is within `cache`)."""
    return any(key == k or key.startswith(k + ".") for k in keys)


def operational(key: str) -> bool:
    """True for a key whose value does not go into settings.json (see the three lists above)."""
    return within(key, OPERATIONAL + LOCATION + SELECTION)


def override_key(override: str) -> str:
    """`+a.b=1`, `~a.b`, `a.b=1` -> `a.b`."""
    return override.split("=", 1)[0].lstrip("+~")


def override_value(override: str) -> str:
    return override.split("=", 1)[1] if "=" in override else ""


def parse_override(override: str):
    """One override as Hydra reads it: (key, typed value), e.g. `dataset.limit=8` -> 8, `null` -> None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(override)
    return parsed.key_or_group, parsed.value()
