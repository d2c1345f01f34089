"""The README's two tables of figures are generated, never typed.

"Resilience figures" is what harness/figures.py prints from the figures
the last run recorded; "Performance figures" is what bench/publish.py makes of
the committed bench/results.json. These tests check the generators and that
the README holds exactly the performance block of the committed result.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import publish
from bench.benchmark import parse
from harness import figures


def test_the_resilience_table_is_every_recorded_figure_in_key_order(tmp_path: Path) -> None:
    for key, scenario in [("09-b", "second"), ("01-a", "first")]:
        row = {"scenario": scenario, "stack": "s", "figure": "f", "bound": "b"}
        (tmp_path / f"{key}.json").write_text(json.dumps(row | {"measured_at": "then"}))
    assert figures.table(tmp_path).splitlines() == [
        "| scenario | stack | measured | the test asserts | measured at |",
        "|---|---|---|---|---|",
        "| first | s | f | b | then |",
        "| second | s | f | b | then |",
    ]
    figures.clear(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_block_between_markers_is_replaced_and_the_rest_kept() -> None:
    text = "intro\n<!-- a -->\nold\nrows\n<!-- b -->\nafter\n"
    assert figures.replace_between(text, "<!-- a -->", "<!-- b -->", "new") == (
        "intro\n<!-- a -->\nnew\n<!-- b -->\nafter\n"
    )
    with pytest.raises(SystemExit, match="no <!-- x -->"):
        figures.replace_between(text, "<!-- x -->", "<!-- b -->", "new")


def test_a_partial_run_never_empties_the_readme_table() -> None:
    header = (
        "| scenario | stack | measured | the test asserts | measured at |\n|---|---|---|---|---|"
    )
    three = "\n".join(
        [header, "| a | s | f | b | t |", "| b | s | f | b | t |", "| c | s | f | b | t |"]
    )
    one = "\n".join([header, "| a | s | f | b | now |"])
    readme = f"intro\n{figures.START}\n{three}\n{figures.END}\nafter\n"
    with pytest.raises(SystemExit, match="recorded 1 figures and README.md shows 3"):
        figures.readme_with(readme, one)
    assert "| a | s | f | b | now |" in figures.readme_with(readme, one, fewer_ok=True)
    assert figures.readme_with(readme, three) == readme


def test_the_readme_has_each_table_between_its_markers_once() -> None:
    readme = figures.README.read_text()
    for marker in (figures.START, figures.END, publish.START, publish.END):
        assert readme.count(marker + "\n") == 1, marker


def test_the_readme_performance_table_is_the_committed_result() -> None:
    readme = figures.README.read_text()
    block = readme.split(publish.START + "\n", 1)[1].split(publish.END, 1)[0]
    assert block == publish.readme_block(publish.committed_results()) + "\n", (
        "README.md's performance figures differ from bench/results.json: "
        "run `.venv/bin/python -m bench.publish`"
    )


@pytest.mark.parametrize("options", [["--smoke"], ["--stacks", "default"], ["--routes", "json"]])
def test_only_a_full_benchmark_run_is_published(options: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse([*options, "--publish"])
