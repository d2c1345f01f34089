"""The generated project's CI workflow run here, its jobs' own shell steps: on the host
(this interpreter is setup-python's) or in a stand-in image (images.run_project_ci)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from harness import REPO
from harness.tools import require_tool
from harness.venvs import uv_env

WORKFLOW = ".github/workflows/ci.yml"

_PYTHON = yaml.safe_load((REPO / "copier.yml").read_text())
#: The python_version answer's default, and every Python it offers.
DEFAULT_PYTHON: str = _PYTHON["python_version"]["default"]
OFFERED_PYTHONS: list[str] = _PYTHON["python_version"]["choices"]
#: The uv the generated workflow installs.
UV_VERSION: str = _PYTHON["uv_version"]["default"]

#: Two variants hold every package of every lock between them (test_pythons_static.py):
#: the default, and the one with the most compiled wheels (psycopg's, granian's).
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "postgresql+granian": {"database": "postgresql", "server": "granian"},
}

#: (python, variant) that tests/container/test_pythons.py runs: the default Python and
#: every newer one offered (none yet); the other container tests run Debian 12's 3.11.
PYTHON_RUNS = [("3.15", "default"), ("3.15", "postgresql+granian")]

PACKAGE = re.compile(r'^\[\[package\]\]\nname = "([^"]+)"', flags=re.MULTILINE)


def lock_packages(answers: dict[str, str]) -> set[str]:
    """The packages of the lock in locks/ that a project with `answers` ships."""
    lock = REPO / "locks" / f"{answers.get('database', 'none')}-{answers.get('server', 'gunicorn')}"
    return set(PACKAGE.findall((lock / "uv.lock").read_text()))


def version(python: str) -> tuple[int, ...]:
    """ "3.15" -> (3, 15), to compare."""
    return tuple(int(part) for part in python.split("."))


def copy_without_venv(project: Path, into: Path) -> Path:
    """A copy of a rendered project to break, without its .venv."""
    return Path(shutil.copytree(project, into, ignore=shutil.ignore_patterns(".venv")))


def job_steps(project: Path, job: str) -> dict[str, str]:
    """The shell steps of one job of the rendered CI workflow, by name."""
    steps = yaml.safe_load((project / WORKFLOW).read_text())["jobs"][job]["steps"]
    return {step["name"]: step["run"] for step in steps if "run" in step}


def lowest_steps(project: Path) -> list[str]:
    """The `lowest` job's steps after uv is installed (the caller provides uv)."""
    return [script for name, script in job_steps(project, "lowest").items() if name != "Install uv"]


def run_steps(
    project: Path, env: dict[str, str], scripts: list[str], timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Workflow steps with bash -e, as the runner runs them, up to the first that fails;
    the last one's result."""
    result = subprocess.CompletedProcess[str]([], 0, "", "")
    for script in scripts:
        result = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            break
    return result


def runner_env(venv: Path) -> dict[str, str]:
    """What the runner has: uv on PATH, a Python (this one); uv's venv goes to `venv`."""
    env = uv_env(UV_PROJECT_ENVIRONMENT=str(venv))
    env["PATH"] = f"{Path(require_tool('uv')).parent}{os.pathsep}{env['PATH']}"
    return env


def lowest_job(project: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    """The `lowest` job on the host, with this interpreter."""
    return run_steps(project, runner_env(venv), lowest_steps(project))
