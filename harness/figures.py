"""Figures measured by the tests, collected into the README's "Resilience figures" table.

`record(...)` prints a figure (`pytest -rP` shows it) and writes build/figures/<key>.json,
one file per figure so that pytest-xdist workers never share one; each run starts by
deleting the last run's (`clear`, from tests/conftest.py). Rows are sorted by key.

    .venv/bin/python -m harness.figures           # print the table
    .venv/bin/python -m harness.figures --readme  # and put it in README.md (--fewer: allow
                                                  # fewer rows than it has, e.g. one removed)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from harness import REPO

FIGURES = REPO / "build" / "figures"
README = REPO / "README.md"
START, END = "<!-- resilience-figures:start -->", "<!-- resilience-figures:end -->"
COLUMNS = ("scenario", "stack", "figure", "bound", "measured_at")
HEADER = "| scenario | stack | measured | the test asserts | measured at |\n|---|---|---|---|---|"


def record(key: str, scenario: str, stack: str, figure: str, bound: str) -> None:
    print(f"FIGURE {key}: {scenario} [{stack}]: {figure} (bound: {bound})")
    measured_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    row = dict(zip(COLUMNS, (scenario, stack, figure, bound, measured_at), strict=True))
    FIGURES.mkdir(parents=True, exist_ok=True)
    partial = FIGURES / f"{key}.tmp"
    partial.write_text(json.dumps(row, indent=1))
    partial.replace(FIGURES / f"{key}.json")


def clear(folder: Path = FIGURES) -> None:
    for path in [*folder.glob("*.json"), *folder.glob("*.tmp")]:
        path.unlink(missing_ok=True)


def table(folder: Path = FIGURES) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"), key=lambda p: p.stem)]
    cells = ["| " + " | ".join(row[c] for c in COLUMNS) + " |" for row in rows]
    return "\n".join([HEADER, *cells])


def replace_between(text: str, start: str, end: str, block: str) -> str:
    """`text` with the lines between the `start` and `end` marker lines set to `block`."""
    before, found, rest = text.partition(start + "\n")
    _, found_end, after = rest.partition(end + "\n")
    if not (found and found_end):
        raise SystemExit(f"README.md has no {start} ... {end} lines")
    return f"{before}{start}\n{block}\n{end}\n{after}"


def readme_with(readme: str, generated: str, fewer_ok: bool = False) -> str:
    """`readme` with `generated` as its table; refused when it would lose rows: a run of
    part of the suite records only its own figures."""
    current = readme.partition(START + "\n")[2].partition(END)[0]
    had, has = (
        len([x for x in t.splitlines() if x.startswith("| ")]) for t in (current, generated)
    )
    if has < had and not fewer_ok:
        raise SystemExit(
            f"The last run recorded {has - 1} figures and README.md shows {had - 1}: it was not "
            "the whole suite. Run `python3 dev.py test` first (or pass --fewer if a figure was "
            "removed on purpose)."
        )
    return replace_between(readme, START, END, generated)


if __name__ == "__main__":
    generated = table()
    print(generated)
    if "--readme" in sys.argv:
        if not list(FIGURES.glob("*.json")):
            raise SystemExit("No figures recorded: run the suite (python3 dev.py test) first.")
        README.write_text(readme_with(README.read_text(), generated, "--fewer" in sys.argv))
        print(f"Written into {README.name}", file=sys.stderr)
