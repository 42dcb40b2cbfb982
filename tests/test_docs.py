"""The documentation a newcomer reads: a short README, reference pages that say what the code
does now (generated from it), and links that lead somewhere."""
from __future__ import annotations

import re
from pathlib import Path

from fulsk_chaos import docs

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_reference_pages_are_what_the_code_generates():
    assert docs.stale(ROOT / "docs" / "reference") == [], "stale reference pages: run `nox -s docs` and commit them"


def test_a_stale_page_is_caught(tmp_path):
    """Guards the check itself: a page that says something else is reported."""
    for name, make in docs.PAGES.items():
        (tmp_path / name).write_text(make())
    assert docs.stale(tmp_path) == []
    page = tmp_path / "fault-kinds.md"
    page.write_text(page.read_text().replace("`kill`", "`kil`"))
    assert docs.stale(tmp_path) == ["fault-kinds.md"]


def test_the_reference_lists_every_fault_kind_switch_and_key():
    from fulsk_chaos.config import STACK_BUGS
    from fulsk_chaos.faults import CATALOGUE
    kinds, bugs, keys = docs.fault_kinds(), docs.bug_switches(), docs.configuration()
    assert all(f"| `{name}` |" in kinds for name in CATALOGUE)
    assert all(f"| `{name}` |" in bugs for name in [*docs._backend_bugs(), *STACK_BUGS]) and "ack-on-receipt" in bugs
    assert "| `baselines.api_response_ms` | `500.0` |" in keys and "| `recovery.target_s` |" in keys
    assert "`lost (acknowledged, not stored)` | none (== 0)" in docs.expectations()


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: the reference belongs in docs/"


def test_every_relative_link_leads_to_a_file():
    broken = []
    for page in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), ROOT / "loadtests" / "README.md"]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in LINK.findall(text):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (page.parent / target).resolve()
            if not path.is_relative_to(ROOT):
                continue  # beside the checkout (the ops guide): not this repository's to keep
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []
