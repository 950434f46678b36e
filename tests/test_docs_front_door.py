"""The README stays a front door (the manual is docs/, built by `.ci/run` with `mkdocs build --strict`):
under 200 lines, with its commands intact and every relative link resolving."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text("utf-8")


def test_readme_is_short_and_keeps_its_two_commands() -> None:
    assert len(README.splitlines()) < 200
    assert "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/runapi dev" in README
    test_command = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest"
    assert test_command in README
    assert ".venv/bin/python -m pytest" in (ROOT / ".ci" / "run").read_text("utf-8")


def test_readme_and_manual_links_resolve() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to a missing {target}"


def test_every_manual_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text("utf-8")
    listed = set(re.findall(r"^\s*- [^:#]+: ([\w./-]+\.md)\s*$", nav, flags=re.M))
    assert listed == {page.name for page in (ROOT / "docs").glob("*.md")}
