"""Rows that tests record (`record_property`), printed as one table at the end: with
pytest-xdist a test's user properties travel with its report to the controller."""

from __future__ import annotations

import json
from collections.abc import Iterable


def recorded_rows(reports: Iterable[object], name: str) -> list[dict[str, str]]:
    """The rows recorded under `name` by the tests behind `reports`, sorted."""
    rows = [
        json.loads(value)
        for report in reports
        for key, value in getattr(report, "user_properties", [])
        if key == name and getattr(report, "when", "call") == "call"
    ]
    return sorted(rows, key=lambda row: str(next(iter(row.values()), "")))


def markdown_table(rows: list[dict[str, str]]) -> str:
    """A Markdown table, columns padded so that it also reads in a terminal."""
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(row[c])) for row in rows)) for c in columns]
    lines = [columns, ["-" * w for w in widths], *([str(row[c]) for c in columns] for row in rows)]
    return "\n".join(
        "| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)) + " |"
        for cells in lines
    )
