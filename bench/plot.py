"""Draw results.json as a PNG: req/s and p50/p99 latency per stack, one row per route.

    <bench venv>/bin/python bench/plot.py build/bench/results.json build/bench/results.png

Runs in the benchmark's own virtualenv (bench/project.py installs matplotlib
there), so the repo's test tools never need it. Reads only the JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)
from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter  # noqa: E402

TITLES = {"json": "JSON", "cpu": "CPU ~5 ms", "io": "I/O wait 50 ms"}
DEFAULT = "default"
EARLIER = "earlier-defaults"  # bench/stacks.py: the defaults before the benchmark
# nginx answering by itself is ~20x any app server: drawn to scale it would
# flatten every other bar, so its bar is cut at the axis and labelled.
UPPER_BOUND = "nginx-raw"


def draw(results: dict[str, Any], png: Path) -> None:
    summary, meta = results["summary"], results["meta"]
    routes = [r for r in TITLES if any(r in row["routes"] for row in summary.values())]
    names = list(summary)
    labels = [summary[name]["label"] for name in names]
    fig, axes = plt.subplots(
        len(routes), 2, figsize=(13, 1.2 + 0.42 * len(names) * len(routes)), squeeze=False
    )
    for row, route in enumerate(routes):
        rps = [summary[n]["routes"].get(route, {}).get("rps", 0) for n in names]
        p50 = [summary[n]["routes"].get(route, {}).get("p50_ms", 0) for n in names]
        p99 = [summary[n]["routes"].get(route, {}).get("p99_ms", 0) for n in names]
        colors = [{DEFAULT: "tab:orange", EARLIER: "tab:purple"}.get(n, "tab:blue") for n in names]
        ax = axes[row][0]
        ax.barh(labels, rps, color=colors)
        ax.invert_yaxis()  # the table's order, top to bottom
        ax.set_title(f"{TITLES[route]}: requests/s (median of passes)", fontsize=10)
        apps = [value for name, value in zip(names, rps, strict=True) if name != UPPER_BOUND]
        limit = max(apps + [1]) * 1.25
        ax.set_xlim(0, limit)
        for y, value in enumerate(rps):
            if value:
                cut = value > limit
                ax.text(
                    min(value, limit * 0.8),
                    y,
                    f" {value:,.0f}{' (cut)' if cut else ''}",
                    va="center",
                    fontsize=8,
                    color="white" if cut else "black",
                )
        ax = axes[row][1]
        ys = range(len(names))
        # Missing routes (nginx alone has only JSON) are left out: log scale has no 0.
        for offset, values, label, color in (
            (-0.2, p50, "p50", "tab:green"),
            (0.2, p99, "p99", "tab:red"),
        ):
            shown = [(y + offset, v) for y, v in zip(ys, values, strict=True) if v > 0]
            ax.barh(
                [y for y, _ in shown], [v for _, v in shown], height=0.4, label=label, color=color
            )
        ax.set_yticks(list(ys), [""] * len(names))
        ax.set_ylim(len(names) - 0.5, -0.5)  # the same rows as the left panel
        ax.set_xscale("log")  # from 1 ms to seconds on one axis
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.6g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{TITLES[route]}: latency, ms (log scale)", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"{meta['cpus']} CPUs, {meta['generator']} -c{meta['connections']}, "
        f"{meta['duration_s']} s x {meta['passes_done']} passes, {meta['started']}",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # room for the title
    fig.savefig(png, dpi=100)


if __name__ == "__main__":
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
