"""The project's user-facing errors, the one home for them: `ConfigError` (a setting that cannot
work) and `one_paragraph`, which every entry point uses to print an error as one paragraph."""
from __future__ import annotations

import re


class ConfigError(ValueError):
    """A setting has a value that cannot work; the message says which, and what is allowed."""


def one_paragraph(error: BaseException | str, limit: int = 1200) -> str:
    """An error message on one line per paragraph, long ones (e.g. torch's list of missing keys)
    cut at ``limit`` characters."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", str(error)) if p.strip()]
    text = "\n".join(paragraphs)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- checking settings
# Each check appends one paragraph per problem: "<group>.<key>=<value>: <what is allowed>".


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_key(problems: list[str], node, name: str, key: str, ok, allowed: str) -> None:
    """Append a problem unless ``node[key]`` (when set) satisfies ``ok``; ``name`` is the group."""
    if node is not None and key in node and not ok(node[key]):
        problems.append(f"{name}.{key}={node[key]!r}: {allowed}")
