"""The version users see: pyproject.toml's and the CHANGELOG's newest heading agree.
`copier copy` records the newest git tag, and update pull requests quote the CHANGELOG by
version: the release steps (tag, heading) only work when the two say the same."""

from __future__ import annotations

import re

from harness import REPO

HEADING = re.compile(r"^## (\S+)(?: \((unreleased|\d{4}-\d{2}-\d{2})\))?$", re.MULTILINE)


def test_changelog_headings_are_dated_versions_newest_first_and_pyprojects_on_top() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    headings = HEADING.findall(text)  # (version, date or "unreleased")
    # Python 3.10 has no tomllib; [project] is the file's first table.
    version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)[1]
    newest, _ = headings[0]
    assert newest == version, f"CHANGELOG.md starts with {newest}, pyproject.toml says {version}"
    every = re.findall(r"^## .*$", text, re.MULTILINE)
    assert len(every) == len(headings), every
    versions = [tuple(int(n) for n in v.split(".")) for v, _ in headings]
    assert versions == sorted(versions, reverse=True), "newest first, no duplicates"
    assert len(set(versions)) == len(versions)
    dates = [date for _, date in headings]
    assert all(dates), "each heading says (YYYY-MM-DD) or (unreleased)"
    assert "unreleased" not in dates[1:], "only the newest version may be unreleased"
