"""The probe and chaos apps the tests add to projects type-check like the project's own code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from harness import REPO
from harness.venvs import run_env

APPS = REPO / "harness" / "apps"


def test_the_apps_pass_mypy_in_a_project(
    default_project: Path, venv_bin: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(default_project, project)
    apps = sorted(APPS.glob("*.py"))
    for app in apps:
        shutil.copy(app, project)
    # The project's mypy settings, on the apps beside its wsgi.py (which they import).
    mypy = [str(venv_bin / "mypy"), "--no-incremental", *(app.name for app in apps)]
    result = subprocess.run(
        mypy, cwd=project, env=run_env(venv_bin), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
