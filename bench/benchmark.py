"""The benchmark run: render, start each stack, load each route, write the results.

Started by bench/run.py (which builds .venv first); `--help` lists the options.
The machine is shared and noisy, so one run measures every stack side by side
and repeats the whole round in alternating order (pass 1 forwards, pass 2
backwards, ...): a slow minute then hits different stacks in different
passes, and the median over passes discards it. Each pass is bracketed by a
quiet-machine check (bench/machine.py) and every measurement records the CPU
others used meanwhile; the report flags what was noisy instead of hiding it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from bench import loadgen, machine, publish, report
from bench.launch import Running, nginx_available, running
from bench.memory import settled_pss_mib, stack_pss_mib
from bench.project import REPO, Project, render
from bench.stacks import ROUTES, STACKS, Stack, select
from harness.http import http_get
from harness.template_versions import RELEASES

PLOT = Path(__file__).resolve().parent / "plot.py"
PATHS = {route: f"/bench/{route}" for route in ROUTES}
# Per pass, at most this long waiting for other people's jobs to calm down.
QUIET_WAIT_S = 20.0
# A measurement disturbed by others is taken again at most this many times.
RETRIES = 1
DEFAULT_COUNT = sum(stack.default for stack in STACKS)
STARTUP_ESTIMATE_S = 3.0  # start, health check, memory, stop: per stack and pass


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 bench/run.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=int, default=3, help="seconds of load per route (3)")
    parser.add_argument("--passes", type=int, default=3, help="rounds over every stack (3)")
    parser.add_argument(
        "--stacks",
        help=f"comma-separated names (bench/README.md), or all; default: the usual {DEFAULT_COUNT}",
    )
    parser.add_argument("--routes", default=",".join(ROUTES), help="json,cpu,io (all three)")
    parser.add_argument("--smoke", action="store_true", help="1 s per route, 1 pass: a test run")
    parser.add_argument(
        "--out", type=Path, default=REPO / "build" / "bench", help="results folder (build/bench)"
    )
    parser.add_argument(
        "--max-minutes", type=float, default=20, help="start no pass after this many minutes (20)"
    )
    parser.add_argument(
        "--python-load", action="store_true", help="use the Python load generator even with wrk"
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="then copy results.json to bench/results.json and regenerate the README's table",
    )
    args = parser.parse_args(argv)
    if args.publish and (args.smoke or args.stacks or args.routes != ",".join(ROUTES)):
        parser.error("--publish is for a full run: no --smoke, --stacks or --routes")
    if args.smoke:
        args.duration, args.passes = 1, 1
    args.routes = [r for r in ROUTES if r in args.routes.split(",")]
    # Absolute: nginx runs in its own prefix folder and would miss relative paths.
    args.out = args.out.resolve()
    if args.duration < 1 or args.passes < 1 or not args.routes:
        parser.error("--duration and --passes must be >= 1, --routes one of json,cpu,io")
    return args


def measure_stack(
    stack: Stack, live: Running, args: argparse.Namespace, number: int, use: str
) -> tuple[list[dict[str, Any]], float]:
    """Load each route of a running stack in pass `number` (from 1); return the
    measurements and the PSS after them. Even passes take the routes backwards."""
    routes = [r for r in args.routes if r in stack.routes]
    if number % 2 == 0:
        routes.reverse()
    if not args.smoke:
        # Warm up once, on the first route: threads started, nginx's keep-alive
        # connections to the app open, as on a server that has been running.
        loadgen.run_load(live.port, PATHS[routes[0]], 1, live.host, use)
    rows = []
    for route in routes:
        # Every route must answer 200 before it is loaded: a wrong config
        # would otherwise show up as a fast stream of errors.
        answer = http_get(live.port, PATHS[route], {"Host": live.host or "localhost"}, 15)
        if answer.status != 200:
            raise RuntimeError(f"{PATHS[route]} answered {answer.status}: {answer.body[:200]!r}")
        result, share, tries = measure_route(live, PATHS[route], args, use)
        rows.append(
            {
                "stack": stack.name,
                "route": route,
                "pass": number,
                "foreign_cpu": round(share, 3),
                "tries": tries,
                "load": result.as_json(),
            }
        )
        print(
            f"  {stack.name:18} {route:4} {result.rps:9,.0f} req/s  p50 {result.p50_ms:7.1f} ms"
            f"  p99 {result.p99_ms:7.1f} ms  others' CPU {share:4.0%}",
            flush=True,
        )
    return rows, stack_pss_mib(live.roots)


def measure_route(
    live: Running, path: str, args: argparse.Namespace, use: str
) -> tuple[loadgen.LoadResult, float, int]:
    """One measurement; when others took more than their share of the CPUs
    meanwhile, wait for quiet and measure once more, keeping the quieter one."""

    def once() -> tuple[loadgen.LoadResult, float]:
        window = machine.CpuWindow(live.roots).start()
        result = loadgen.run_load(live.port, path, args.duration, live.host, use)
        return result, window.share()

    result, share = once()
    tries = 1
    while share > machine.FOREIGN_LIMIT and not args.smoke and tries <= RETRIES:
        print(f"  (others used {share:.0%} of the CPUs: waiting for quiet, then again)")
        machine.wait_until_quiet(QUIET_WAIT_S / 2)
        tries += 1
        again, again_share = once()
        if again_share < share:
            result, share = again, again_share
    return result, share, tries


def run_pass(
    index: int,
    stacks: list[Stack],
    projects: dict[str, Project],
    args: argparse.Namespace,
    results: dict[str, Any],
    use: str,
) -> None:
    order = stacks if index % 2 == 0 else stacks[::-1]
    quiet = 0.0 if args.smoke else machine.wait_until_quiet(QUIET_WAIT_S)
    before, load_before = machine.calibrate(), machine.load_average()
    print(
        f"pass {index + 1}/{args.passes} ({'forwards' if index % 2 == 0 else 'backwards'}): "
        f"calibration {before:.1f} ms, load {load_before:.2f}",
        flush=True,
    )
    for stack in order:
        work = args.out / "logs" / f"pass{index + 1}-{stack.name}"
        try:
            with running(stack, projects[stack.template], work) as live:
                idle = settled_pss_mib(live.roots)
                rows, loaded = measure_stack(stack, live, args, index + 1, use)
        except (RuntimeError, AssertionError, OSError, subprocess.SubprocessError) as exc:
            # One broken stack must not lose the others' figures: record it, go on.
            error = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            results["failures"].append(
                {"pass": index + 1, "stack": stack.name, "error": error, "log": str(work)}
            )
            print(f"  {stack.name}: FAILED ({error}); logs in {work}", flush=True)
            continue
        results["measurements"] += rows
        results["memory"].append(
            {
                "stack": stack.name,
                "pass": index + 1,
                "idle_pss_mib": round(idle, 1),
                "loaded_pss_mib": round(loaded, 1),
            }
        )
    results["passes"].append(
        {
            "index": index + 1,
            "order": "forwards" if index % 2 == 0 else "backwards",
            "foreign_cpu_before": round(quiet, 3),
            "calibration_before_ms": round(before, 2),
            "calibration_after_ms": round(machine.calibrate(), 2),
            "load_before": round(load_before, 2),
            "load_after": round(machine.load_average(), 2),
        }
    )


def versions(project: Project) -> dict[str, str]:
    """The versions that decide the figures: servers, framework, tools."""
    code = (
        "import importlib.metadata as m\nfor n in ('flask', 'gunicorn', 'granian', 'gevent'):"
        "\n    print(n, m.version(n))"
    )
    found = subprocess.run(  # noqa: S603 (fixed commands of our own)
        [str(project.bindir / "python"), "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split("\n")
    pairs = dict(line.split(" ", 1) for line in found if line)
    pairs["python"] = sys.version.split()[0]
    for tool, flag in (("nginx", "-v"), ("wrk", "-v")):
        path = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if path:
            text = subprocess.run(  # noqa: S603 (fixed commands of our own)
                [path, flag], capture_output=True, text=True, timeout=10, check=False
            )
            words = (text.stdout + text.stderr).split()
            pairs[tool] = next((w.split("/")[-1] for w in words if "/" in w), "?")
    return pairs


def template_version() -> str:
    """The commit rendered, and whether the working tree had local edits (it is rendered)."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run(  # noqa: S603 (fixed commands of our own)
        [*git, "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    ).stdout.strip()
    dirty = subprocess.run(  # noqa: S603 (fixed commands of our own)
        [*git, "status", "--porcelain", "--", "template", "copier.yml"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    ).stdout
    return f"{head or 'unknown'}{' + local edits' if dirty.strip() else ''}"


def plot(project: Project, results_json: Path, png: Path) -> None:
    """matplotlib lives in the benchmark's venv, not in .venv: plot from there."""
    done = subprocess.run(  # noqa: S603 (fixed commands of our own)
        [str(project.bindir / "python"), str(PLOT), str(results_json), str(png)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        print(f"plot failed: {done.stderr}", file=sys.stderr)


def stop_like_ctrl_c(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM (`timeout`, a CI runner, kill) ends the run as Ctrl+C does: the
    servers are stopped on the way out instead of being left running."""
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, stop_like_ctrl_c)
    args = parse(argv)
    stacks = select(args.stacks)
    if not nginx_available():
        print("nginx is not installed (apt-get install nginx): skipping the nginx stacks")
        stacks = [s for s in stacks if not (s.behind_nginx or s.server == "none")]
    use = "python" if args.python_load else loadgen.generator()
    if args.publish and (use != "wrk" or not nginx_available()):
        # The README's figures come from wrk, with every stack, or not at all.
        raise SystemExit("--publish needs wrk and nginx (apt-get install wrk nginx)")
    if use == "python":
        print("Using the Python load generator: figures are capped by it (apt-get install wrk)")
    measured = sum(len([r for r in args.routes if r in s.routes]) for s in stacks)
    per_stack = STARTUP_ESTIMATE_S + (0 if args.smoke else 1)  # start, warm-up, memory, stop
    estimate = args.passes * (measured * args.duration + len(stacks) * per_stack)
    print(
        f"{len(stacks)} stacks x {len(args.routes)} routes x {args.passes} passes: "
        f"about {estimate / 60:.1f} min (longer while others load the machine)",
        flush=True,
    )

    shutil.rmtree(args.out / "logs", ignore_errors=True)
    load_at_start = machine.load_average()
    project = render(args.out / "project")
    # A project per template version the stacks ask for (HEAD, and e.g. 0.1.0).
    projects = {"HEAD": project}
    for ref in sorted({s.template for s in stacks} - {"HEAD"}):
        # A release by its commit: a clone may lack the tags.
        projects[ref] = render(args.out / f"project-{ref}", RELEASES.get(ref, ref))
    results: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "cpus": machine.CPUS,
            "generator": use,
            "connections": loadgen.CONNECTIONS,
            "duration_s": args.duration,
            "passes": args.passes,
            "routes": args.routes,
            "load_at_start": load_at_start,
            "template": template_version(),
            "versions": versions(project),
            "smoke": args.smoke,
        },
        "stacks": [
            {
                "name": s.name,
                "label": s.label,
                "server": s.server,
                "behind_nginx": s.behind_nginx,
                "env": dict(s.env),
                "routes": [r for r in args.routes if r in s.routes],
                "template": s.template,
            }
            for s in stacks
        ],
        "passes": [],
        "measurements": [],
        "memory": [],
        "failures": [],
    }
    deadline = time.monotonic() + args.max_minutes * 60
    try:
        for index in range(args.passes):
            if time.monotonic() > deadline:
                print(f"--max-minutes {args.max_minutes} reached: no more passes")
                break
            run_pass(index, stacks, projects, args, results, use)
    except KeyboardInterrupt:  # the servers were stopped on the way out; keep what we have
        print("interrupted: writing the passes done so far")
    results["meta"]["passes_done"] = len(results["passes"])
    results["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    report.flag_noise(results)
    results["summary"] = report.summarize(results)
    results["targets"] = report.targets(results, results["summary"])

    args.out.mkdir(parents=True, exist_ok=True)
    results_json = args.out / "results.json"
    results_json.write_text(json.dumps(results, indent=1) + "\n")
    table = report.markdown(results)
    (args.out / "results.md").write_text(table)
    plot(project, results_json, args.out / "results.png")
    print(f"\n{table}\nWritten: {results_json}, results.md, results.png")
    if results["failures"]:
        return 1
    if args.publish:
        # The committed copy is what the README quotes (bench/publish.py).
        shutil.copyfile(results_json, publish.RESULTS)
        publish.update_readme(results)
        print(f"Published: {publish.RESULTS.relative_to(REPO)} and README.md's table")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
