"""The benchmark runs end to end (bench/run.py --smoke, on loopback): each stack starts,
answers every route under load, and the results come out as JSON, Markdown and a plot.
(A smoke run measures nothing worth reading; the figures come from a full run.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.launch import nginx_available
from bench.loadgen import generator
from harness import REPO
from harness.tools import skip_or_fail
from harness.waiting import eventually

# The generated default stack (now and as released in template 0.1.0; they
# need nginx), and two that need nothing more.
STACKS = ["default", "default-0.1.0", "gunicorn", "granian-2"]


def smoke(out: Path, *options: str) -> dict[str, Any]:
    # The first run on a machine also builds the benchmark's venv.
    command = [sys.executable, "bench/run.py", "--smoke", "--out", str(out), *options]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def test_smoke_run_measures_every_route_of_each_stack(tmp_path: Path) -> None:
    # Without nginx or wrk the harness still runs (without the nginx stacks,
    # with its Python load generator): check that much, then say what was left out.
    missing = [
        *([] if nginx_available() else ["nginx is not installed: the default stack was left out"]),
        *([] if generator() == "wrk" else ["wrk is not installed: Python load stood in"]),
    ]
    stacks = STACKS if nginx_available() else [s for s in STACKS if not s.startswith("default")]
    results = smoke(tmp_path / "all", "--stacks", ",".join(stacks))
    assert results["failures"] == []
    assert results["meta"]["generator"] == generator()
    assert set(results["summary"]) == set(stacks)
    for name, row in results["summary"].items():
        routes = ("json", "io") if name == "default-0.1.0" else ("json", "cpu", "io")
        for route in routes:
            assert row["routes"][route]["rps"] > 0, f"{name} {route}: {row['routes'][route]}"
        assert row["idle_pss_mib"] > 0, name
    assert len(results["targets"]) == 7, "every target of issues #7 and #12 is reported"
    assert (tmp_path / "all/results.md").read_text().startswith("# Benchmark")
    assert (tmp_path / "all/results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The Python load generator stands in for wrk.
    python = tmp_path / "python"
    results = smoke(python, "--stacks", "gunicorn", "--routes", "json", "--python-load")
    assert results["meta"]["generator"] == "python"
    measured = results["measurements"][0]["load"]
    assert measured["rps"] > 0 and measured["errors"]["status"] == 0, measured
    if missing:
        skip_or_fail("; ".join(missing))


def processes_under(folder: Path, named: str = "") -> list[int]:
    """PIDs of the processes working inside `folder` (with `named` in their command line)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            inside = Path(os.readlink(proc / "cwd")).is_relative_to(folder)
            if inside and named.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def test_sigterm_stops_the_run_and_its_servers(tmp_path: Path) -> None:
    # `timeout 600 python3 bench/run.py` ends a run with SIGTERM: the servers
    # it started (they run in the rendered project, under --out) must go too.
    command = [sys.executable, "bench/run.py", "--smoke", "--out", str(tmp_path)]
    command += ["--stacks", "gunicorn", "--routes", "json", "--passes", "5"]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL) as harness:
        try:

            def gunicorn_started() -> list[int]:
                assert harness.poll() is None, "the run ended before gunicorn started"
                return processes_under(tmp_path, named="gunicorn")

            eventually(gunicorn_started, 120, what="gunicorn started by the run", interval=0.2)
            harness.send_signal(signal.SIGTERM)
            harness.wait(timeout=60)
        finally:
            harness.kill()  # a no-op when it has exited
    left = processes_under(tmp_path)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"servers left running after SIGTERM: {left}"
