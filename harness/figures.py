"""Figures measured by the tests, collected into the README's "Resilience figures" table.

A test calls `record(...)`: the figure is printed (shown with `pytest -rP` or
`-s`) and written to build/figures/<key>.json, one file per figure, so that
pytest-xdist workers never write the same file. Each run of the suite starts
by deleting the files of the run before (`clear`, from tests/conftest.py), so
the table holds only what the last run measured, each row with its time.

    .venv/bin/python -m harness.figures           # print the table
    .venv/bin/python -m harness.figures --readme  # and put it in README.md

--readme refuses a table with fewer rows than README.md has (a partial run);
--fewer allows it, for a figure removed on purpose.

Rows are sorted by key; keys start with a number to keep the README's order.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from harness import REPO

FIGURES = REPO / "build" / "figures"
README = REPO / "README.md"
# The generated table sits between these lines in README.md.
START, END = "<!-- resilience-figures:start -->", "<!-- resilience-figures:end -->"


def record(key: str, scenario: str, stack: str, figure: str, bound: str) -> None:
    """Print one measured figure and store it, with when it was measured, for the table."""
    print(f"FIGURE {key}: {scenario} [{stack}]: {figure} (bound: {bound})")
    row = {
        "scenario": scenario,
        "stack": stack,
        "figure": figure,
        "bound": bound,
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{key}.json"
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(row, indent=1))
    partial.replace(path)


def clear(folder: Path = FIGURES) -> None:
    """Delete the figures of an earlier run."""
    for path in [*folder.glob("*.json"), *folder.glob("*.tmp")]:
        path.unlink(missing_ok=True)


def table(folder: Path = FIGURES) -> str:
    """The stored figures as a Markdown table, one row per figure, unedited."""
    rows = {path.stem: json.loads(path.read_text()) for path in folder.glob("*.json")}
    lines = [
        "| scenario | stack | measured | the test asserts | measured at |",
        "|---|---|---|---|---|",
    ]
    for _, row in sorted(rows.items()):
        cells = (row["scenario"], row["stack"], row["figure"], row["bound"], row["measured_at"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replace_between(text: str, start: str, end: str, block: str) -> str:
    """`text` with the lines between the `start` and `end` marker lines set to `block`."""
    before, found, rest = text.partition(start + "\n")
    middle, found_end, after = rest.partition(end + "\n")
    if not (found and found_end):
        raise SystemExit(f"README.md has no {start} ... {end} lines")
    return f"{before}{start}\n{block}\n{end}\n{after}"


def table_rows(markdown: str) -> int:
    """How many data rows a table has (header and separator lines aside)."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    return max(0, len(lines) - 1)


def readme_with(readme: str, generated: str, fewer_ok: bool = False) -> str:
    """`readme` with `generated` as its table; refused when it would lose rows.

    A run of part of the suite (one file, `-k`) records only its own figures:
    written as it is, the table would silently drop every other row.
    """
    current = readme.partition(START + "\n")[2].partition(END)[0]
    had, has = table_rows(current), table_rows(generated)
    if has < had and not fewer_ok:
        raise SystemExit(
            f"The last run recorded {has} figures and README.md shows {had}: it was not the "
            "whole suite. Run `python3 dev.py test` first (or pass --fewer if a figure was "
            "removed on purpose)."
        )
    return replace_between(readme, START, END, generated)


def main(argv: list[str]) -> int:
    generated = table()
    sys.stdout.write(generated + "\n")
    if "--readme" in argv:
        if not list(FIGURES.glob("*.json")):
            raise SystemExit("No figures recorded: run the suite (python3 dev.py test) first.")
        README.write_text(readme_with(README.read_text(), generated, "--fewer" in argv))
        print(f"Written into {README.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
