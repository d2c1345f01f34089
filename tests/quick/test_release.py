"""What a release publishes. pyproject.toml's version and the CHANGELOG's newest heading
agree: `copier copy` records the newest git tag, and update pull requests quote the CHANGELOG
by version. The README's two tables of figures are generated, never typed: "Resilience figures"
by harness/figures.py from the last run, "Performance figures" by bench/publish.py from the
committed bench/results.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import publish
from bench.benchmark import parse
from harness import REPO, figures

HEADING = re.compile(r"^## (\S+)(?: \((unreleased|\d{4}-\d{2}-\d{2})\))?$", re.MULTILINE)
HEADER = "| scenario | stack | measured | the test asserts | measured at |\n|---|---|---|---|---|"


def test_the_resilience_table_and_the_readme_block_it_replaces(tmp_path: Path) -> None:
    # Every recorded figure, in key order.
    for key, scenario in [("09-b", "second"), ("01-a", "first")]:
        row = {"scenario": scenario, "stack": "s", "figure": "f", "bound": "b"}
        (tmp_path / f"{key}.json").write_text(json.dumps(row | {"measured_at": "then"}))
    assert figures.table(tmp_path) == f"{HEADER}\n| first | s | f | b | then |\n" + (
        "| second | s | f | b | then |"
    )
    figures.clear(tmp_path)
    assert list(tmp_path.iterdir()) == []

    # The block between the markers is replaced and the rest kept.
    text = "intro\n<!-- a -->\nold\nrows\n<!-- b -->\nafter\n"
    assert figures.replace_between(text, "<!-- a -->", "<!-- b -->", "new") == (
        "intro\n<!-- a -->\nnew\n<!-- b -->\nafter\n"
    )
    with pytest.raises(SystemExit, match="no <!-- x -->"):
        figures.replace_between(text, "<!-- x -->", "<!-- b -->", "new")

    # A partial run never empties the README's table.
    three = "\n".join([HEADER, *(f"| {r} | s | f | b | t |" for r in "abc")])
    one = f"{HEADER}\n| a | s | f | b | now |"
    readme = f"intro\n{figures.START}\n{three}\n{figures.END}\nafter\n"
    with pytest.raises(SystemExit, match="recorded 1 figures and README.md shows 3"):
        figures.readme_with(readme, one)
    assert "| a | s | f | b | now |" in figures.readme_with(readme, one, fewer_ok=True)
    assert figures.readme_with(readme, three) == readme


def test_the_readme_holds_each_table_once_and_the_committed_performance() -> None:
    readme = figures.README.read_text()
    for marker in (figures.START, figures.END, publish.START, publish.END):
        assert readme.count(marker + "\n") == 1, marker
    block = readme.split(publish.START + "\n", 1)[1].split(publish.END, 1)[0]
    assert block == publish.readme_block(publish.committed_results()) + "\n", (
        "README.md's performance figures differ from bench/results.json: "
        "run `.venv/bin/python -m bench.publish`"
    )
    # Only a full benchmark run is published.
    for options in (["--smoke"], ["--stacks", "default"], ["--routes", "json"]):
        with pytest.raises(SystemExit):
            parse([*options, "--publish"])


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
