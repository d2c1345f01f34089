"""Developer tooling. The generated one passes on a fresh render of every variant, run as the
generated CI runs it from the shared project venv (the variant's lock): `pre-commit run
--all-files` (hooks from PyPI), mypy, and the project's tests with coverage above the floor
in pyproject.toml. The generated README's Develop commands work as printed, the way a
newcomer runs them (tests/quick/test_render.py reads what needs no server).

The template's own: `python3 dev.py demo` serves the defaults; the benchmark runs end to end
(bench/run.py --smoke, on loopback): each stack starts, answers every route under load, and
the results come out as JSON, Markdown and a plot (a smoke run measures nothing worth
reading; the figures come from a full run)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.launch import nginx_available
from bench.loadgen import generator
from harness import REPO
from harness.http import LOOPBACK, free_port, http_get
from harness.processes import start, stop
from harness.readme import PLACEHOLDERS, copy_as_user, section
from harness.render import render
from harness.serving import serve
from harness.template_versions import GIT_ENV
from harness.tools import require_tool, skip_or_fail
from harness.venvs import CACHE, project_venv, run_env, uv_env
from harness.waiting import eventually

# Code differs by database and server; python_version only changes settings
# (mypy's python_version, ruff's target), so one variant checks 3.14. Other names
# and a bare project (every switch off) must pass their own tests too.
BARE = {"with_docker": False, "with_nginx": False, "with_procfile": False, "ci": "none"}
VARIANTS = {
    f"{database}-{server}": {"database": database, "server": server}
    for database in ("none", "sqlite", "postgresql")
    for server in ("gunicorn", "granian")
} | {
    "py3.14-bare": {"python_version": "3.14", **BARE},
    "bare": BARE,
    "other-names": {"project_name": "Inventory API", "package_name": "inventory"},
}


def run(project: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), cwd=project, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_generated_tooling_passes(copie_session: Any, variant: str) -> None:
    """pre-commit on every file (and its merge-conflict hook really fails, as a
    `copier update` with conflicts needs), mypy, and the tests with coverage
    above the floor. A fresh render, committed as a user's first commit would be
    (pre-commit only sees tracked files)."""
    project = render(copie_session, **VARIANTS[variant])
    for command in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", *command], cwd=project, check=True, timeout=60)
    venv_bin = project_venv(project)
    env = run_env(venv_bin)
    # Hook environments are shared between runs; uv (in the lock hooks) uses
    # this interpreter, as it cannot download the project's here. The ruff
    # hooks' `uv run` finds uv on PATH and the locked tools in the shared venv,
    # which it must never change: no sync, and that venv's own interpreter
    # (asked for another one, uv would delete the venv to make a new one).
    env |= {k: v for k, v in uv_env().items() if k.startswith("UV_")}
    env |= {"UV_PROJECT_ENVIRONMENT": str(venv_bin.parent), "UV_NO_SYNC": "1"}
    env["UV_PYTHON"] = str(venv_bin / "python")
    env["PATH"] += os.pathsep + str(Path(require_tool("uv")).parent)
    env["PRE_COMMIT_HOME"] = str(CACHE / "pre-commit")
    env["MYPY_CACHE_DIR"] = str(CACHE / "mypy" / variant)
    result = run(project, env, "pre-commit", "run", "--all-files", "--show-diff-on-failure")
    assert result.returncode == 0, result.stdout + result.stderr
    for hook in ("no merge conflict markers", "ruff format", "uv.lock matches pyproject.toml"):
        assert re.search(rf"^{re.escape(hook)}\.+Passed$", result.stdout, re.MULTILINE), hook

    readme = project / "README.md"
    original = readme.read_text()
    readme.write_text(original + "<<<<<<< before updating\nmine\n=======\ntheirs\n>>>>>>> after\n")
    result = run(project, env, "pre-commit", "run", "check-merge-conflict", "--files", "README.md")
    readme.write_text(original)
    assert result.returncode == 1 and "Merge conflict string" in result.stdout, result.stdout

    result = run(project, env, "mypy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found"), result.stdout

    if variant.startswith("py"):
        return  # the suite with the coverage floor: where code (and tests) differ
    result = run(project, env, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--cov")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
    floor = re.search(r"^fail_under = (\d+)", (project / "pyproject.toml").read_text(), re.M)
    assert floor and f"Required test coverage of {floor[1]}.0% reached" in result.stdout
    # What coverage wrote (.coverage) is ignored by git.
    status = run(project, env, "git", "status", "--porcelain").stdout
    assert [line for line in status.splitlines() if line.startswith("??")] == []


def test_dev_py_demo_serves_the_defaults_until_ctrl_c_or_sigterm(tmp_path: Path) -> None:
    """`python3 dev.py demo`: render into build/demo, serve it with the generated
    gunicorn.conf.py, and stop the server with the demo, on a terminal's Ctrl+C (SIGINT
    to its process group) and on SIGTERM to its PID: nothing left on the port."""
    for name, stop_demo in {
        "ctrl-c": lambda pid: os.killpg(pid, signal.SIGINT),
        "sigterm": lambda pid: os.kill(pid, signal.SIGTERM),
    }.items():
        port = free_port()
        env = {**os.environ, "PORT": str(port)}
        # The README's `python3 dev.py demo`: the interpreter outside .venv, so dev.py
        # goes through its step into .venv as a newcomer's does.
        python3 = os.path.realpath(sys.executable)
        demo = start([python3, "dev.py", "demo"], REPO, env, tmp_path / f"{name}.log")
        try:
            served = f'Serving on http://{LOOPBACK}:{port}/  (health: {{"status":"ok"}})'
            demo.wait_for_log(served, timeout=300)
            assert (REPO / "build" / "demo" / "gunicorn.conf.py").is_file()
            stop_demo(demo.pid)
            assert demo.wait(60) == 0, demo.output()
        finally:
            stop(demo)
        with pytest.raises(OSError):
            http_get(port, "/healthz", timeout=1)  # the server stopped with the demo


def test_develop_commands_work_as_printed(tmp_path: Path) -> None:
    """From `copier copy` to a running dev server (`flask run --debug`, which reads
    the .env Copier's task wrote), the tests, the pre-commit hooks, and adding a
    package (which reaches uv.lock and, through the hook, requirements.txt)."""
    # uv on PATH (from the template's own venv, as `pip install uv` gives it); no
    # project venv active, and uv picks the interpreter from .python-version.
    env = uv_env(**GIT_ENV, PRE_COMMIT_HOME=str(CACHE / "pre-commit"))
    env.pop("UV_PYTHON")
    env["PATH"] = f"{Path(require_tool('uv')).parent}{os.pathsep}{env['PATH']}"
    project = tmp_path / "shop"
    started = time.monotonic()
    copy_as_user(project)
    block = section((project / "README.md").read_text(), "Develop")
    commands = [line.split("  #")[0].strip() for line in block.lines()]
    assert [c.split()[:3] for c in commands] == [
        ["uv", "sync"],
        ["uv", "run", "flask"],
        ["uv", "run", "pytest"],
        ["git", "init", "-q"],
        ["uv", "run", "pre-commit"],
        ["uv", "add", "NAME"],
    ]
    sync, flask_run, test, first_commit, hooks, add = commands

    result = run(project, env, "bash", "-c", sync)
    assert result.returncode == 0, result.stderr
    port = free_port()
    # As printed; the port comes from Flask's own variable, so tests never clash.
    env_run = env | {"FLASK_RUN_PORT": str(port)}
    command = shlex.split(flask_run)
    with serve(project, tmp_path, env_run, command=command, port=port, ready="/") as server:
        first_page = time.monotonic() - started
        assert "Debug mode: on" in server.output()
    with pytest.raises(OSError):
        http_get(port, "/healthz", timeout=1)  # stopped, reloader child included
    print(f"FIGURE copier copy to a running dev server (uv cache warm): {first_page:.1f} s")

    package = PLACEHOLDERS["NAME"]
    for command in (test, first_commit, hooks, add.replace("NAME", package)):
        result = run(project, env, "bash", "-c", command)
        assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        assert command != test or "Required test coverage" in result.stdout, result.stdout
    tracked = run(project, env, "git", "ls-files").stdout
    assert "README.md" in tracked, "the first commit holds it all"
    assert f'"{package}>=' in (project / "pyproject.toml").read_text()
    assert f'name = "{package}"' in (project / "uv.lock").read_text()

    # The next commit: the hook exports the new package into requirements.txt
    # and stops the commit, as pre-commit does when a hook changed a file;
    # adding the file and committing again succeeds.
    commit = "git add -A && git commit -qm 'a new package'"
    result = run(project, env, "bash", "-c", commit)
    hook_output = result.stdout + result.stderr
    assert result.returncode != 0 and "hook id: uv-export" in hook_output, hook_output
    assert f"{package}==" in (project / "requirements.txt").read_text()
    result = run(project, env, "bash", "-c", commit)
    assert result.returncode == 0, result.stdout + result.stderr


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
