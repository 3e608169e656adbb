"""README.md and docs/*.md: every relative link reaches a file and a heading; the README stays a short manual."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(page: Path) -> str:
    """The page without its fenced code blocks."""
    return FENCE.sub("", page.read_text())


def slug(heading: str) -> str:
    """GitHub's anchor: lowercase, punctuation but hyphens and spaces dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Its headings' anchors; a repeated heading gets -1, -2 ... as on GitHub."""
    seen: Counter[str] = Counter()
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+)$", prose(page), re.MULTILINE):
        name = slug(heading.rstrip("#"))
        found.add(f"{name}-{seen[name]}" if seen[name] else name)
        seen[name] += 1
    return found


def links(page: Path) -> list[str]:
    text = re.sub(r"`[^`]*`", "", prose(page))  # a code span is not a link
    return [t for t in LINK.findall(text) if not t.startswith(("http://", "https://", "mailto:"))]


CASES = [(page, target) for page in [README, *DOCS] for target in links(page)]


@pytest.mark.parametrize(("page", "target"), CASES, ids=[f"{p.relative_to(ROOT)}:{t}" for p, t in CASES])
def test_relative_link_resolves(page, target):
    path, _, anchor = target.partition("#")
    linked = page.parent / path if path else page
    assert linked.exists(), f"{page.relative_to(ROOT)} links to {target}: no such file"
    if anchor:
        assert anchor in anchors(linked), f"{page.relative_to(ROOT)} links to {target}: no such heading"


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_docs_page_is_linked_from_the_readme(doc):
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(README)}
    assert doc.resolve() in linked, f"README.md does not link {doc.relative_to(ROOT)}"


def test_readme_is_under_200_lines():
    assert len(README.read_text().splitlines()) < 200
