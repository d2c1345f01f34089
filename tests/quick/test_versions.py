"""The version users see: pyproject.toml's and the CHANGELOG's newest heading agree.

`copier copy` records the newest git tag as the project's version, and update
pull requests quote the CHANGELOG by version: the release step in the README
(tag, heading) only works when the two say the same thing.
"""

from __future__ import annotations

import re

from harness import REPO

HEADING = re.compile(r"^## (\S+)(?: \((unreleased|\d{4}-\d{2}-\d{2})\))?$", re.MULTILINE)


def changelog_headings() -> list[tuple[str, str]]:
    """(version, date or "unreleased") for every version heading, newest first."""
    return HEADING.findall((REPO / "CHANGELOG.md").read_text())


def test_newest_changelog_heading_is_pyprojects_version() -> None:
    # Python 3.10 has no tomllib; [project] is the file's first table.
    version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)[1]
    newest, _ = changelog_headings()[0]
    assert newest == version, f"CHANGELOG.md starts with {newest}, pyproject.toml says {version}"


def test_every_heading_is_a_version_with_a_date_or_unreleased() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## .*$", text, re.MULTILINE)
    assert len(headings) == len(changelog_headings()), headings
    versions = [tuple(int(n) for n in v.split(".")) for v, _ in changelog_headings()]
    assert versions == sorted(versions, reverse=True), "newest first, no duplicates"
    assert len(set(versions)) == len(versions)
    dates = [date for _, date in changelog_headings()]
    assert all(dates), "each heading says (YYYY-MM-DD) or (unreleased)"
    assert "unreleased" not in dates[1:], "only the newest version may be unreleased"
