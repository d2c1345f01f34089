"""Figures measured by the resilience tests, collected into the README's table.

A test calls `record(...)`: the figure is printed (shown with `pytest -rP` or
`-s`) and written to build/figures/<key>.json, one file per figure, so that
pytest-xdist workers never write the same file. Regenerate the table with

    .venv/bin/python -m tests.helpers.figures

Rows are sorted by key; keys start with a number to keep the README's order.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

FIGURES = Path(__file__).resolve().parents[2] / "build" / "figures"


def record(key: str, scenario: str, stack: str, figure: str, bound: str) -> None:
    """Print one measured figure and store it for the table."""
    row = {"scenario": scenario, "stack": stack, "figure": figure, "bound": bound}
    print(f"FIGURE {key}: {scenario} [{stack}]: {figure} (bound: {bound})")
    FIGURES.mkdir(parents=True, exist_ok=True)
    row["measured"] = time.strftime("%Y-%m-%d %H:%M")
    path = FIGURES / f"{key}.json"
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(row, indent=1))
    partial.replace(path)


# Scenarios measured elsewhere, linked from the table (their tests print them).
LINKED = {
    "10-slow-clients": {
        "scenario": "slow clients (slowloris)",
        "stack": "nginx → gunicorn, and gunicorn alone",
        "figure": "see tests/test_nginx.py::test_slow_clients_* (run with -s)",
        "bound": "behind nginx: 0 failed, p99 < 100 ms",
    },
}


def table(folder: Path = FIGURES) -> str:
    """The stored figures (and the linked ones) as a Markdown table."""
    rows = dict(LINKED)
    rows.update({path.stem: json.loads(path.read_text()) for path in folder.glob("*.json")})
    lines = ["| scenario | stack | measured | test asserts |", "|---|---|---|---|"]
    for _, row in sorted(rows.items()):
        lines.append(f"| {row['scenario']} | {row['stack']} | {row['figure']} | {row['bound']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
