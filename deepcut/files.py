"""File helpers, the one home for them: atomic writes (results, run-directory records, the feature
cache and the converted offline weights all write through `atomic_write`), `writable_dir` and the
project's cache folder (`cache_dir`)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from deepcut.errors import ConfigError

# The process's umask, read once at import (os.umask can only be read by setting it, which is not
# thread-safe later, with post-processing in a thread): mkstemp's files are 0600 whatever the umask.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: str | Path, write) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, fsync, then rename over ``path``: readers
    (a resumed run, another job on a shared file system) see the old file or the whole new one,
    never a torn one. The temporary name is hidden (`.<name>.<random>.tmp`) and unique across
    processes and hosts; a killed writer's leftovers match `.*.tmp`. The file gets the mode a plain
    open() would give it (0666 less the umask), so colleagues can read a run as they read run.log."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def writable_dir(path: str | Path, setting: str) -> Path:
    """``path`` as a directory this process can create files in (made if missing), or a ConfigError
    naming ``setting``."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"{setting}={str(path)!r}: the output directory cannot be written "
                          f"({err.strerror or err}); choose a directory you can write to") from None
    return path


def cache_dir() -> Path:
    """The project's cache folder (converted weights, features): $DEEPCUT_CACHE, else
    $XDG_CACHE_HOME/deepcut, else ~/.cache/deepcut."""
    if explicit := os.environ.get("DEEPCUT_CACHE"):
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "deepcut"
