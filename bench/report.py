"""From raw measurements to medians, target checks and the Markdown table.

Every figure in the table is the median over the passes (they ran in
alternating order), with the spread between passes and how many of them the
quiet-machine check flagged, so a reader can tell a difference from noise.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from bench.machine import CALIBRATION_LIMIT, FOREIGN_LIMIT

DEFAULT, FLASK, GUNICORN, GRANIAN = "default", "flask-run", "gunicorn", "granian-2"
# The default stack as released in 0.1.0 (bench/stacks.py): the "before" row.
DEFAULT_BEFORE = "default-0.1.0"
PSS_LIMIT_MIB = 80
# Cells whose passes differ by more than this (max - min over the median) say so.
SPREAD_NOTE = 0.25


def flag_noise(results: dict[str, Any]) -> None:
    """Mark noisy measurements and passes in place (see bench/machine.py).

    A measurement is noisy when others used more than FOREIGN_LIMIT of the
    CPUs during it: a direct reading. A pass is flagged when its calibration
    loop ran slow or its typical measurement was noisy; its quiet measurements
    still count.
    """
    for m in results["measurements"]:
        m["noisy"] = m["foreign_cpu"] > FOREIGN_LIMIT
    timings = [
        t
        for p in results["passes"]
        for t in (p["calibration_before_ms"], p["calibration_after_ms"])
    ]
    best = min(timings, default=0.0)
    for p in results["passes"]:
        slowest = max(p["calibration_before_ms"], p["calibration_after_ms"])
        p["calibration_slowdown"] = round(slowest / best, 2) if best else 1.0
        shares = [m["foreign_cpu"] for m in results["measurements"] if m["pass"] == p["index"]]
        p["noisy"] = p["calibration_slowdown"] > CALIBRATION_LIMIT or (
            _median(shares) > FOREIGN_LIMIT
        )


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Per stack: per route medians, and the median idle/loaded memory."""
    summary: dict[str, Any] = {}
    for stack in results["stacks"]:
        name = stack["name"]
        routes = {}
        for route in stack["routes"]:
            rows = [
                m for m in results["measurements"] if m["stack"] == name and m["route"] == route
            ]
            if not rows:
                continue
            # Medians over the quiet passes when there are two or more of them.
            quiet = [m for m in rows if not m["noisy"]]
            used = quiet if len(quiet) >= 2 else rows
            rps = [m["load"]["rps"] for m in used]
            routes[route] = {
                "rps": round(_median(rps), 1),
                "p50_ms": round(_median([m["load"]["p50_ms"] for m in used]), 2),
                "p99_ms": round(_median([m["load"]["p99_ms"] for m in used]), 2),
                "spread": round((max(rps) - min(rps)) / _median(rps), 3) if _median(rps) else 0,
                "errors": sum(sum(m["load"]["errors"].values()) for m in rows),
                "passes": len(rows),
                "noisy": len(rows) - len(quiet),
                "median_of": len(used),
            }
        memory = [m for m in results["memory"] if m["stack"] == name]
        summary[name] = {
            "label": stack["label"],
            "routes": routes,
            "idle_pss_mib": round(_median([m["idle_pss_mib"] for m in memory]), 1),
            "loaded_pss_mib": round(_median([m["loaded_pss_mib"] for m in memory]), 1),
        }
    return summary


def _rps(summary: dict[str, Any], stack: str, route: str) -> float | None:
    return summary.get(stack, {}).get("routes", {}).get(route, {}).get("rps")


def _best(summary: dict[str, Any], route: str, keep: Callable[[str], bool]) -> tuple[str, float]:
    found = [
        (rps, name)
        for name in summary
        if keep(name)
        if (rps := _rps(summary, name, route)) is not None
    ]
    rps, name = max(found, default=(0.0, "-"))
    return name, rps


def _ratio(mine: float | None, other: float | None) -> float | None:
    return mine / other if mine is not None and other else None


def _check(
    target: str, value: float | None, bound: float, against: str = "", unit: str = "x"
) -> dict[str, Any]:
    """One target: a ratio (or a size, with `unit`) and its bound; a bound
    `against` nothing is an upper limit, one against another stack a lower one."""
    at_most = not against
    ok = None if value is None else (value <= bound if at_most else value >= bound)
    return {
        "target": target,
        "measured": "n/a" if value is None else f"{value:.2f}{unit}",
        "bound": f"{'<=' if at_most else '>='} {bound}{unit} {against}".strip(),
        "ok": ok,
        "value": value,
    }


def targets(results: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets for the default stack (and granian), each with its ratio."""
    gunicorn = {s["name"] for s in results["stacks"] if s["server"] == "gunicorn"}
    default_json = _rps(summary, DEFAULT, "json")
    best_gunicorn, best_gunicorn_rps = _best(summary, "json", lambda name: name in gunicorn)
    best_io, best_io_rps = _best(summary, "io", lambda name: True)
    io = summary.get(DEFAULT, {}).get("routes", {}).get("io", {})
    return [
        _check("default stack, JSON vs flask run",
               _ratio(default_json, _rps(summary, FLASK, "json")), 3.5, FLASK),
        _check("default stack, JSON vs the best gunicorn config",
               _ratio(default_json, best_gunicorn_rps), 0.95, best_gunicorn),
        _check("default stack, I/O vs the best server",
               _ratio(_rps(summary, DEFAULT, "io"), best_io_rps), 0.6, best_io),
        _check("default stack, I/O p99 / p50", _ratio(io.get("p99_ms"), io.get("p50_ms")), 3),
        _check("granian, JSON vs gunicorn's generated config",
               _ratio(_rps(summary, GRANIAN, "json"), _rps(summary, GUNICORN, "json")), 2.0,
               GUNICORN),
        _check("default stack, JSON vs 0.1.0's (within 10%)",
               _ratio(default_json, _rps(summary, DEFAULT_BEFORE, "json")), 0.9, DEFAULT_BEFORE),
        _check("default stack, idle PSS (80 MB)",
               summary.get(DEFAULT, {}).get("idle_pss_mib") or None, PSS_LIMIT_MIB, unit=" MiB"),
    ]  # fmt: skip


def _cell(route: dict[str, Any] | None, reference: float | None) -> str:
    if route is None:
        return "-"
    text = f"{route['rps']:,.0f}"
    if reference:
        text += f" ({route['rps'] / reference:.2f}x)"
    text += f"<br>{route['p50_ms']:.1f} / {route['p99_ms']:.1f} ms"
    if route["errors"]:
        text += f"<br>{route['errors']:,} errors"
    if route["noisy"]:
        text += f"<br>{route['noisy']}/{route['passes']} noisy"
    if route["spread"] > SPREAD_NOTE:
        text += f"<br>spread {route['spread']:.0%}"
    return text


def markdown(results: dict[str, Any]) -> str:
    summary, meta = results["summary"], results["meta"]
    routes = [r for r in ("json", "cpu", "io") if r in meta["routes"]]
    lines = [
        f"# Benchmark: {meta['started']}",
        "",
        f"{meta['cpus']} CPUs, {meta['generator']} -c{meta['connections']}, "
        f"{meta['duration_s']} s per route, {meta['passes_done']} pass(es) in alternating order "
        f"(medians of the quiet passes when two or more were quiet; req/s counts 2xx/3xx "
        f"only). Template {meta['template']}.",
        f"Versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}.",
        "",
        "Each cell: req/s (x the default stack), p50 / p99 latency; then errors, noisy "
        f"passes, and the spread between passes when above {SPREAD_NOTE:.0%}. PSS in MiB, "
        "summed over the stack's processes (idle: once settled after start; loaded: after "
        "the routes).",
        "",
        "| stack | " + " | ".join(f"{r} req/s" for r in routes) + " | idle PSS | loaded PSS |",
        "|---" * (len(routes) + 3) + "|",
    ]
    for name, row in summary.items():
        cells = [_cell(row["routes"].get(r), _rps(summary, DEFAULT, r)) for r in routes]
        lines.append(
            f"| {row['label']} (`{name}`) | "
            + " | ".join(cells)
            + f" | {row['idle_pss_mib']:.1f} | {row['loaded_pss_mib']:.1f} |"
        )
    lines += ["", "## Targets", "", "| target | measured | bound | met |", "|---|---|---|---|"]
    for check in results["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[check["ok"]]
        lines.append(f"| {check['target']} | {check['measured']} | {check['bound']} | {met} |")
    lines += ["", "## Was the machine quiet?", ""]
    lines.append(
        f"Load average at the start: {meta['load_at_start']:.2f}. "
        f"Noisy: a pass whose calibration loop ran > {CALIBRATION_LIMIT:.2f}x slower "
        f"than the run's best, or a measurement during which other processes used "
        f"> {FOREIGN_LIMIT:.0%} of the CPUs."
    )
    lines += [
        "",
        "| pass | order | calibration before / after | slowdown | load before / after "
        "| foreign CPU (median, max) | noisy |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in results["passes"]:
        shares = [m["foreign_cpu"] for m in results["measurements"] if m["pass"] == p["index"]]
        lines.append(
            f"| {p['index']} | {p['order']} | {p['calibration_before_ms']:.1f} / "
            f"{p['calibration_after_ms']:.1f} ms | {p['calibration_slowdown']:.2f}x | "
            f"{p['load_before']:.2f} / {p['load_after']:.2f} | "
            f"{_median(shares):.0%}, {max(shares, default=0):.0%} | "
            f"{'yes' if p['noisy'] else 'no'} |"
        )
    if results["failures"]:
        lines += ["", "## Failures", ""]
        lines += [f"- pass {f['pass']}, `{f['stack']}`: {f['error']}" for f in results["failures"]]
    return "\n".join(lines) + "\n"
