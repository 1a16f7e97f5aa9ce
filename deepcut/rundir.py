"""A run directory: which settings and which data its results belong to, and who may write it.

A directory's results are continued (resume=<dir>, or the same hydra.run.dir again) only when this
run can prove it computes the same thing: `settings.json` (every setting that changes results)
must match, and `dataset.json` (a content digest of each image and its ground truth, by id) must
match for every image already done. Anything that differs, or that cannot be verified (a missing
or unreadable record next to existing results), is refused with one paragraph and exit code 2.
The directory's lock is taken before anything is written into it, `.hydra/` included (Hydra's own
writing of it is switched off: configs/hydra/default.yaml), so a refused run leaves it as it was.
The shards of one run (dataset.shard) are merged here too (`merge_shards`). Which keys change
results is deepcut.overrides'; the command line is checked by deepcut.preflight, sweeps and
signals are deepcut.sweep's.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from deepcut.files import atomic_write_text, writable_dir
from deepcut.methods import method_entry
from deepcut.overrides import SELECTION, operational, override_key, parse_override, within
from deepcut.records import fingerprint_digest, read_fingerprint, read_settings, write_fingerprint, write_settings
from deepcut.registry import METHOD_GROUPS
from deepcut.results import read_raw


def settings(cfg: DictConfig) -> dict:
    """The settings the results depend on, flattened to dotted keys (settings.json): the groups of
    DeepCut's stages only for the methods that read them (deepcut.registry). A value that only
    refers to another setting (${loss.k}) is that setting, recorded once."""
    unread = set(METHOD_GROUPS) - set(method_entry(cfg.method.name).groups)
    flat = {}

    def walk(raw: dict, value: dict, prefix: str) -> None:
        for k, v in value.items():
            key = f"{prefix}{k}"
            if operational(key) or key in unread or (isinstance(raw[k], str) and re.fullmatch(r"\$\{[\w.]+\}", raw[k])):
                continue
            if isinstance(v, dict) and v:
                walk(raw[k], v, key + ".")
            else:
                flat[key] = v

    walk(OmegaConf.to_container(cfg, resolve=False), OmegaConf.to_container(cfg, resolve=True), "")
    return json.loads(json.dumps(flat, default=str))  # as stored: tuples become lists, paths strings


# ---------------------------------------------------------------- a run split into shards


def shard_key(out: Path) -> tuple[str, int, int] | None:
    """(what the run computes: settings and dataset.limit; shard; num_shards) of a run directory,
    or None when its settings.json is not readable."""
    stored = read_settings(out)
    if stored is None:
        return None
    given = dict(parse_override(o) for o in stored["overrides"] if within(override_key(o), SELECTION))
    recipe = json.dumps([stored["settings"], given.get("dataset.limit")], sort_keys=True, default=str)
    return recipe, int(given.get("dataset.shard", 0)), int(given.get("dataset.num_shards", 1))


def merge_shards(dirs: list[Path], rows_of) -> list[dict]:
    """The rows of a data set split over run directories (dataset.shard=i dataset.num_shards=n), as
    one run's: every shard present once, the same settings in each (settings.json), no image in
    two. ``rows_of(dir)`` reads a directory's per-image rows (results.read_rows, or evaluate.py's
    re-scored ones). Refuses (ValueError, one paragraph) a set that is not one whole split."""
    keys = {Path(d): shard_key(d) for d in dirs}
    unreadable = [str(d) for d, k in keys.items() if k is None]
    if unreadable:
        raise ValueError(f"{unreadable[0]}: no readable settings.json, so it cannot be shown to be a shard of the "
                         "same run as the others")
    if len({k[0] for k in keys.values()}) > 1:
        raise ValueError(f"the directories {', '.join(map(str, keys))} were run with different settings "
                         "(settings.json); only the shards of one run can be merged")
    counts = {k[2] for k in keys.values()}
    shards = sorted(k[1] for k in keys.values())
    if len(counts) > 1 or shards != list(range(next(iter(counts)))):
        raise ValueError(f"shards {shards} of dataset.num_shards={sorted(counts)} given: a merge needs each of "
                         f"the shards 0..n-1 exactly once ({', '.join(map(str, keys))})")
    rows, seen = [], {}
    for d in keys:
        for row in rows_of(d):
            if row["id"] in seen:
                raise ValueError(f"image {row['id']} has rows in both {seen[row['id']]} and {d}: not shards of one split")
            seen[row["id"]] = d
            rows.append(row)
    return rows


# ---------------------------------------------------------------- the lock


class RunDirBusy(ValueError):
    """Another live process is writing results into the same directory."""


class Lock:
    """An exclusive, non-blocking lock on <dir>/.lock, held until `release` or the end of the
    process (the OS releases it even after SIGKILL)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.handle = open(self.out / ".lock", "a+")
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; directories are still unique per run
            return
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.seek(0)
            owner = self.handle.read().strip() or "unknown"
            self.handle.close()
            raise RunDirBusy(f"run directory {out} (hydra.run.dir or resume) is in use by another run (pid {owner}); "
                             "wait for it to finish, or give this run its own directory") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()

    def release(self) -> None:
        self.handle.close()


# ---------------------------------------------------------------- what a directory holds


def check(out: Path, current: dict, dataset) -> None:
    """Refuse (ValueError, one paragraph) unless the results already in ``out`` were computed with
    the settings ``current`` on the same files as ``dataset`` has for those ids. A key the configs
    gained since is not compared (its old value is unknown); one they no longer have (renamed or
    removed) refuses the directory, since what it meant cannot be checked."""
    out = Path(out)
    has_settings = (out / "settings.json").exists()
    stored = read_settings(out)
    rows = read_raw(out / "results.csv")[1]
    if stored is None and (rows or has_settings):
        raise ValueError(f"run directory {out} holds results but its settings.json is missing or unreadable, so the "
                         "settings they were computed with cannot be verified; give this run a new directory "
                         "(hydra.run.dir), or restore settings.json")
    if stored is not None:
        old = stored["settings"]
        gone = sorted(old.keys() - current.keys())
        if gone:
            raise ValueError(f"run directory {out} holds results computed with {', '.join(gone[:5])}"
                             f"{f' and {len(gone) - 5} more' if len(gone) > 5 else ''}, which these settings do not "
                             "have (renamed or removed from the configs since?), so they cannot be verified; use a "
                             "new directory, or the version of deepcut the run was made with")
        differ = [k for k in sorted(old.keys() & current.keys()) if old[k] != current[k]]
        if differ:
            shown = ", ".join(f"{k}={old[k]!r} (now {current[k]!r})" for k in differ[:5])
            more = f" and {len(differ) - 5} more" if len(differ) > 5 else ""
            raise ValueError(f"run directory {out} holds results computed with {shown}{more} (were the config files "
                             "changed since?); give it the settings it was run with, or use a new directory")
    selected = set(dataset.ids)
    unselected = [r["id"] for r in rows if r["id"] not in selected and r["id"] in dataset.listed]  # (others: below)
    if unselected:  # the summary covers this run's selection only, so it would not describe results.csv
        raise ValueError(f"run directory {out} holds results for {len(unselected)} image(s) that this run does not "
                         f"select (first: {unselected[0]}; it selects {len(selected)} of {dataset.name}): "
                         "dataset.limit or dataset.shard differ from the run that wrote them, so its summary.json "
                         "would not describe its results.csv; give the selection it was run with (a longer one "
                         "continues it), or use a new directory")
    done = [r["id"] for r in rows if not r.get("error")]  # failed images are computed again
    if not done:
        return
    recorded = read_fingerprint(out)
    if recorded is None:
        raise ValueError(f"run directory {out} holds results but its dataset.json is missing or unreadable, so the "
                         "images they were computed on cannot be verified; give this run a new directory")
    now = dataset.fingerprint(done, fingerprint_digest(out))
    foreign = [i for i in done if now[i] is None]
    if foreign:
        raise ValueError(f"run directory {out} holds results for {len(foreign)} image(s) that are not in this "
                         f"{dataset.name} data set (first: {foreign[0]}): it belongs to other data; use a new directory")
    changed = [i for i in done if recorded.get(i) != now[i]]
    if changed:
        entry = dataset.listed[changed[0]]
        raise ValueError(f"run directory {out} holds results for {len(changed)} image(s) whose files are not the "
                         f"ones given now (first: {changed[0]}, now {entry.image}): the data set differs from the one "
                         "the results were computed on (or they cannot be verified); point the data set at the "
                         "original files, or use a new directory")


def write_hydra(out: Path, cfg: DictConfig, hydra_cfg) -> None:
    """.hydra/config.yaml, hydra.yaml and overrides.yaml as Hydra writes them, but only once this
    run holds the directory and its checks passed."""
    folder = Path(out) / ".hydra"
    folder.mkdir(exist_ok=True)
    atomic_write_text(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    atomic_write_text(folder / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})))
    atomic_write_text(folder / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(hydra_cfg.overrides.task))))


class RunDir:
    """A run directory held by this process: `open` locks it, verifies what it holds against this
    run (`check`), then records this run's settings, data and config."""

    def __init__(self, out: Path, lock: Lock):
        self.out, self.lock = Path(out), lock

    @classmethod
    def open(cls, out: Path, cfg: DictConfig, dataset, overrides: list[str], hydra_cfg=None) -> "RunDir":
        out = writable_dir(out, "hydra.run.dir")
        lock = Lock(out)
        try:
            current = settings(cfg)
            check(out, current, dataset)
            recorded = read_fingerprint(out) or {}
            if fingerprint_digest(out) != "sha256":  # verified with the older digests: recorded anew, whole files
                recorded = {k: v for k, v in dataset.fingerprint(list(recorded)).items() if v is not None}
            recorded.update(dataset.fingerprint(dataset.ids))
            write_fingerprint(out, dataset.name, recorded)
            write_settings(out, overrides, current)
            if hydra_cfg is not None:
                write_hydra(out, cfg, hydra_cfg)
            (out / "error.txt").unlink(missing_ok=True)  # from an earlier, failed attempt
        except BaseException:
            lock.release()
            raise
        return cls(out, lock)

    def close(self) -> None:
        self.lock.release()

