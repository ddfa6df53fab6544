"""The documentation a newcomer reads: every relative link in README.md and docs/ leads
somewhere, and the README stays short enough to read in one go."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: ``[text](target)``; images too. Autolinks (``<https://...>``) are not relative.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks, with inline code removed."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            yield number, INLINE_CODE.sub("", line)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(path: Path):
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            yield number, target


def test_there_is_documentation_to_check():
    names = {p.name for p in PAGES}
    assert {"README.md", "configuration.md", "checks.md", "automation.md", "production.md",
            "performance.md", "testing.md", "demo-api.md"} <= names, names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    broken = []
    for number, target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        resolved = (page.parent / unquote(file_part)).resolve() if file_part else page
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        if not resolved.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and resolved.suffix == ".md" and unquote(anchor) not in anchors(resolved):
            broken.append(f"{where} (no heading #{anchor} in {resolved.relative_to(ROOT)})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 250, f"README.md has {lines} lines; move reference material to docs/"


def test_no_page_tells_anyone_to_bind_a_wildcard_address():
    """deploy/ forbids listening on every interface; the docs must not say otherwise."""
    any_ipv4 = ".".join(["0"] * 4)  # built, so that no source file holds the literal address
    wildcard = re.compile(
        r"(-h|--host|--bind|-b)[ =]+(" + re.escape(any_ipv4) + r"|::|\[::\]|\*)(\s|$|[`'\"])"
    )
    found = [
        f"{page.relative_to(ROOT)}:{number}"
        for page in [*PAGES, ROOT / "deploy" / "README.md"] if page.exists()
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if wildcard.search(line) or any_ipv4 in line
    ]
    assert not found, f"wildcard bind address in {found}"
