"""Rows that tests record (`record_property`), printed as one table at the end.

With pytest-xdist each test runs in a worker; its user properties travel with
its report to the controller, where tests/conftest.py collects them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable


def recorded_rows(reports: Iterable[object], name: str) -> list[dict[str, str]]:
    """The rows recorded under `name` by the tests behind `reports`, in order."""
    rows = []
    for report in reports:
        for key, value in getattr(report, "user_properties", []):
            if key == name and getattr(report, "when", "call") == "call":
                rows.append(json.loads(value))
    return sorted(rows, key=lambda row: str(next(iter(row.values()), "")))


def markdown_table(rows: list[dict[str, str]]) -> str:
    """A Markdown table, columns padded so that it also reads in a terminal."""
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(row[c])) for row in rows)) for c in columns]

    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(columns), line("-" * w for w in widths)]
        + [line(str(row[c]) for c in columns) for row in rows]
    )
