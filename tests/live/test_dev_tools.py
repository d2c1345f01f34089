"""Developer tooling. The generated one passes on a fresh render of every variant, run as the
generated CI runs it from the shared project venv (the variant's lock): `pre-commit run
--all-files` (hooks from PyPI), mypy, and the project's tests with coverage above the floor
in pyproject.toml. The template's own: `python3 dev.py demo` serves the defaults."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import REPO
from harness.http import LOOPBACK, free_port, http_get
from harness.render import render
from harness.tools import require_tool
from harness.venvs import CACHE, project_venv, run_env, uv_env

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


# The project's suite with the coverage floor: on the variants whose code (and tests) differ.
COVERAGE_VARIANTS = {name for name in VARIANTS if not name.startswith("py")}


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

    if variant not in COVERAGE_VARIANTS:
        return
    result = run(project, env, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--cov")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
    floor = re.search(r"^fail_under = (\d+)", (project / "pyproject.toml").read_text(), re.M)
    assert floor and f"Required test coverage of {floor[1]}.0% reached" in result.stdout
    # What coverage wrote (.coverage) is ignored by git.
    status = run(project, env, "git", "status", "--porcelain").stdout
    assert [line for line in status.splitlines() if line.startswith("??")] == []


def test_dev_py_demo_renders_and_serves_the_defaults() -> None:
    """`python3 dev.py demo --once`: render into build/demo, serve it with the
    generated gunicorn.conf.py until it answers, then stop it."""
    port = free_port()
    result = subprocess.run(
        [sys.executable, "dev.py", "demo", "--once"],
        cwd=REPO,
        env={**os.environ, "PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'Serving on http://{LOOPBACK}:{port}/  (health: {{"status":"ok"}})' in result.stdout
    assert (REPO / "build" / "demo" / "gunicorn.conf.py").is_file()
    with pytest.raises(OSError):
        http_get(port, "/healthz", timeout=1)  # the server stopped with dev.py
