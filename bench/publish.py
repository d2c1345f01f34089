"""The README's "Performance figures": made from the committed bench/results.json only.

    python3 bench/run.py --publish     run the benchmark, commit-ready: bench/results.json + README
    .venv/bin/python -m bench.publish  only rewrite the README's table from bench/results.json

The README quotes no benchmark figure that is not in that file: the table and
the targets between its performance-figures markers are generated here, never
typed. A smoke run is never published (bench/benchmark.py refuses).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from harness.figures import README, replace_between

RESULTS = Path(__file__).resolve().parent / "results.json"
START, END = "<!-- performance-figures:start -->", "<!-- performance-figures:end -->"
# The rows the README shows, in this order (results.json has every stack run).
README_STACKS = (
    "flask-run",
    "default",
    "default-0.1.0",
    "earlier-defaults",
    "nginx-2x4",
    "gunicorn",
    "sync-5",
    "gevent-2",
    "granian-2",
    "granian-2-spawn",
)
NOT_YET = (
    "No benchmark result is committed yet: `python3 bench/run.py --publish` writes\n"
    "bench/results.json and this table."
)


def _route(row: dict[str, Any], route: str) -> str:
    cell = row["routes"].get(route)
    if cell is None:
        return "-"
    return f"{cell['rps']:,.0f} ({cell['p50_ms']:.0f} / {cell['p99_ms']:.0f} ms)"


def readme_block(results: dict[str, Any] | None) -> str:
    """What goes between the markers: the run, the table, the targets."""
    if results is None:
        return NOT_YET
    meta, summary = results["meta"], results["summary"]
    quiet = sum(not p["noisy"] for p in results["passes"])
    lines = [
        f"From `bench/results.json`: {meta['started']}, template {meta['template']}, "
        f"{meta['cpus']} CPUs,",
        f"{meta['generator']} -c{meta['connections']}, {meta['duration_s']} s per route, "
        f"{quiet} of {meta['passes_done']} passes quiet; medians; latencies are p50 / p99.",
        "",
        "| stack | JSON req/s | 50 ms I/O req/s | idle memory (PSS) |",
        "|---|---|---|---|",
    ]
    for name in README_STACKS:
        if name not in summary:
            continue
        row = summary[name]
        cells = [row["label"], _route(row, "json"), _route(row, "io")]
        cells.append(f"{row['idle_pss_mib']:.0f} MiB")
        if name == "default":
            cells = [f"**{cell}**" for cell in cells]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| target | measured | bound | met |", "|---|---|---|---|"]
    for check in results["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[check["ok"]]
        lines.append(f"| {check['target']} | {check['measured']} | {check['bound']} | {met} |")
    return "\n".join(lines)


def committed_results(path: Path = RESULTS) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def update_readme(results: dict[str, Any] | None) -> str:
    """Rewrite the README's block from `results`; return the block."""
    block = readme_block(results)
    README.write_text(replace_between(README.read_text(), START, END, block))
    return block


def main() -> int:
    sys.stdout.write(update_readme(committed_results()) + "\n")
    print(f"Written into {README.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
