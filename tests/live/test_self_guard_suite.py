"""A generated project's own suite and its `lowest` CI job go red when its server would break.

Each guard runs twice, on the project as rendered (green) and on a broken
input (red): gunicorn 23 forced into a copy of the venv (the project's own
suite boots its server), a floor in pyproject.toml that is too low (the job on
the lowest versions). The job runs from the rendered workflow's own shell
steps, with uv from this repo's venv and this interpreter as the runner's
Python (the one the default render names), on the default variant only;
tests/container/test_self_guard.py runs it on the default Python's stand-in.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from harness.project_ci import copy_without_venv, lowest_job
from harness.tools import require_tool
from harness.venvs import run_env, uv_env


def server_tests(project: Path, bindir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_server.py"],
        cwd=project,
        env=run_env(bindir),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_projects_suite_fails_when_gunicorn_23_is_forced_in(
    default_project: Path, venv_bin: Path, tmp_path: Path
) -> None:
    locked = server_tests(default_project, venv_bin)
    assert locked.returncode == 0, locked.stdout + locked.stderr

    # A copy of the shared venv (never the venv itself), with gunicorn 23.0.0.
    venv = Path(shutil.copytree(venv_bin.parent, tmp_path / "venv", symlinks=True))
    python = str(venv / "bin" / "python")
    subprocess.run(
        [require_tool("uv"), "pip", "install", "--quiet", "--python", python, "gunicorn==23.0.0"],
        env=uv_env(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    forced = server_tests(default_project, venv / "bin")
    assert forced.returncode != 0, forced.stdout
    # Its workers die in the post_fork hook: the queue gunicorn 24 introduced.
    assert "get_nowait" in forced.stdout, forced.stdout


def test_the_lowest_versions_allowed_pass_the_projects_suite(
    default_project: Path, tmp_path: Path
) -> None:
    project = copy_without_venv(default_project, tmp_path / "project")
    result = lowest_job(project, tmp_path / "venv")
    assert result.returncode == 0, result.stdout + result.stderr
    # It really ran on the floor: the gunicorn installed is pyproject.toml's lower bound.
    floor = re.search(r'"gunicorn>=([\d.]+)', (project / "pyproject.toml").read_text())
    assert floor, "no gunicorn floor in pyproject.toml"
    lock = (project / "uv.lock").read_text()
    locked = re.search(r'name = "gunicorn"\nversion = "([\d.]+)"', lock)
    assert locked and locked[1].startswith(floor[1]), (floor[1], locked and locked[1])
    assert " passed" in result.stdout


def test_a_floor_that_is_too_low_fails_the_lowest_versions_job(
    default_project: Path, tmp_path: Path
) -> None:
    project = copy_without_venv(default_project, tmp_path / "project")
    pyproject = project / "pyproject.toml"
    pyproject.write_text(re.sub(r'"gunicorn>=[\d.]+', '"gunicorn>=23', pyproject.read_text()))
    result = lowest_job(project, tmp_path / "venv")
    assert result.returncode != 0, result.stdout
    assert "test_server.py" in result.stdout and "failed" in result.stdout, result.stdout
