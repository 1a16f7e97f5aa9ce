"""The README and docs/: the README stays a short page for users, every relative link in it and in
docs/*.md leads to a file that exists (and to a heading that exists, for links into Markdown), every
docs page is reachable from the README, and the Quick start keeps the two commands .ci/run runs.
Text only: no torch, no deepcut import."""
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_BYTES = 16000

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target), with an optional "title"; the text may hold one level of [...].
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...


def prose(text: str) -> str:
    """The Markdown without code: fenced blocks and inline code spans hold no links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())  # a link: its text
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def resolve(page: Path, target: str) -> tuple[Path, str]:
    path, _, anchor = target.partition("#")
    return ((page.parent / path).resolve() if path else page), anchor


def test_slug_follows_github():
    assert slug("Table 3: parts on CUB (NMI / ARI %)") == "table-3-parts-on-cub-nmi--ari-"
    assert slug("Self-training: a head from DeepCut's masks") == "self-training-a-head-from-deepcuts-masks"
    assert slug("Config groups (`configs/`, one per stage)") == "config-groups-configs-one-per-stage"


def test_link_pattern_skips_code():
    text = "see [a](x.md) and ![b](img/y.jpg \"t\"), not `[c](z.md)`\n```\n[d](w.md)\n```\n"
    assert LINK.findall(prose(text)) == ["x.md", "img/y.jpg"]


def test_readme_is_short():
    size = README.stat().st_size
    assert size < README_MAX_BYTES, (
        f"README.md is {size} bytes (limit {README_MAX_BYTES}): keep it to what a user needs and move "
        "studies, tables and tuning history to a docs/ page it links to")


def test_docs_exist():
    assert DOCS, "docs/ holds no Markdown page"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        if EXTERNAL.match(target):
            continue
        path, anchor = resolve(page, target)
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target} (no heading #{anchor} in {path.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_readme():
    linked = {resolve(README, t)[0] for t in links(README) if not EXTERNAL.match(t)}
    missing = [p.relative_to(ROOT).as_posix() for p in DOCS if p.resolve() not in linked]
    assert not missing, f"README.md links to no docs page {missing}: add them to its Documentation list"


def section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, f"README.md has no '## {title}' section"
    return m.group(1)


def test_quick_start_keeps_the_two_commands_ci_runs():
    blocks = re.findall(r"```bash\n(.*?)\n```", section(README.read_text(encoding="utf-8"), "Quick start"), re.S)
    assert len(blocks) >= 2, "Quick start lost its setup-and-run or its test command"
    setup, tests = blocks[0].strip(), blocks[1].strip()
    assert setup.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert 'pip install -c constraints.txt -e ".[dev]"' in setup
    assert setup.endswith("&& python run.py")
    assert tests == ". .venv/bin/activate && pytest"
    # .ci/run runs both exactly as the README writes them (the setup line ends there in " \").
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    ci_setup = [line.removesuffix("\\").rstrip() for line in ci if line.startswith("python3 -m venv")]
    assert ci_setup == [setup], "README.md's setup command and .ci/run's differ"
    assert tests in [line.strip() for line in ci]


def test_python_api_keeps_its_snippet():
    # tests/test_api.py runs the first python block of "## Python API" and compares it with run.py.
    snippet = re.search(r"```python\n(.*?)```", section(README.read_text(encoding="utf-8"), "Python API"), re.S)
    assert snippet and "deepcut.create_segmenter" in snippet.group(1) and "outs" in snippet.group(1)
