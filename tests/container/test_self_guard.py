"""A generated project's CI goes red when what it deploys would break: each guard runs on
the project as rendered (green) and on a broken input (red), from the rendered workflow's
own shell steps, with podman standing in for docker; and the `lowest` job on the default
Python's stand-in. (tests/live/test_self_guard_suite.py: the project's suite and the
`lowest` job on this Python; tests/quick/test_self_guard_lock.py: the stale lock.)
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.images import run_project_ci, stand_in_for_from_lines
from harness.podman import ca_bundle_volume, run_podman
from harness.project_ci import (
    DEFAULT_PYTHON,
    UV_VERSION,
    VARIANTS,
    copy_without_venv,
    job_steps,
    lowest_steps,
    run_steps,
)
from harness.provisioning import BASE_PYTHON, ensure_nginx_image, ensure_python_image
from harness.render import render
from harness.tools import require_tool


@pytest.fixture(scope="module")
def docker(podman: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment where `docker` is podman: builds use the local stand-ins for
    the official images (by their names, --pull=never) and reach PyPI through the
    host's CA bundle; `curl` and this Python are on PATH, as on GitHub's runners."""
    require_tool("curl")
    env = dict(podman)
    run_podman(env, "tag", ensure_nginx_image(env), "docker.io/library/nginx:1.30-alpine")
    bindir = tmp_path_factory.mktemp("bin")
    shim = bindir / "docker"
    shim.write_text(  # docker -> podman, built as harness/images.py builds
        '#!/bin/sh\n[ "$1" = build ] && shift && exec podman build --format docker'
        f' --pull=never -v {ca_bundle_volume()} "$@"\nexec podman "$@"\n'
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env["PATH"] = f"{bindir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


@pytest.fixture(scope="module")
def deploy_project(copie_session: Any, docker: dict[str, str]) -> Path:
    # The base image's Python stands in for python:X-slim (no registry).
    project = render(copie_session, python_version=BASE_PYTHON)
    stand_in_for_from_lines(docker, project / "Dockerfile")
    return project


def deploy_job(
    project: Path, env: dict[str, str], tmp_path: Path, only: Callable[[str], bool]
) -> subprocess.CompletedProcess[str]:
    scripts = [script for name, script in job_steps(project, "deploy").items() if only(name)]
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir(exist_ok=True)
    try:
        return run_steps(project, env | {"RUNNER_TEMP": str(runner_temp)}, scripts)
    finally:
        container = runner_temp / "container"
        if container.exists() and container.read_text().strip():
            run_podman(env, "rm", "-f", container.read_text().strip(), check=False)


def test_the_deploy_job_builds_runs_and_stops_the_image_and_runs_nginx_t(
    deploy_project: Path, docker: dict[str, str], tmp_path: Path
) -> None:
    image = deploy_job(deploy_project, docker, tmp_path, lambda name: "nginx" not in name)
    assert image.returncode == 0, image.stdout + image.stderr
    # The last step printed the container's log: gunicorn stopped on SIGTERM.
    assert "Shutting down: Master" in image.stdout + image.stderr
    nginx = deploy_job(deploy_project, docker, tmp_path, lambda name: "nginx -t" in name)
    assert nginx.returncode == 0, nginx.stdout + nginx.stderr
    assert nginx.stderr.count("test is successful") == 2, nginx.stderr


# What breaks: the file, the text replaced, the steps that must fail, and their error.
BROKEN = {
    "dockerfile": ("Dockerfile", " wsgi.py ./", " no-such-file.py ./", "Build the image"),
    "nginx": (
        "deploy/nginx/include/site.conf",
        "listen 80;",
        "listen 80;\n    no_such_directive on;",
        "nginx -t",
    ),
}
ERRORS = {"dockerfile": "no-such-file.py", "nginx": 'unknown directive "no_such_directive"'}


@pytest.mark.parametrize("broken", BROKEN)
def test_a_broken_file_fails_the_deploy_job(
    deploy_project: Path, docker: dict[str, str], tmp_path: Path, broken: str
) -> None:
    """A Dockerfile that does not build; an nginx file that fails `nginx -t`."""
    path, old, new, steps = BROKEN[broken]
    project = copy_without_venv(deploy_project, tmp_path / "project")
    (project / path).write_text((project / path).read_text().replace(old, new, 1))
    assert new in (project / path).read_text()
    result = deploy_job(project, docker, tmp_path, lambda name: steps in name)
    assert result.returncode != 0, result.stdout
    assert ERRORS[broken] in result.stderr, result.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_lowest_versions_allowed_pass_on_the_default_python(
    podman: dict[str, str], copie_session: Any, variant: str
) -> None:
    """The `lowest` job as a project rendered with the defaults runs it: every
    floor of pyproject.toml has a wheel for the default Python and passes
    (VARIANTS hold every locked package between them)."""
    project = render(copie_session, python_version=DEFAULT_PYTHON, **VARIANTS[variant])
    image = ensure_python_image(podman, DEFAULT_PYTHON)
    run = run_project_ci(podman, image, project, UV_VERSION, steps=lowest_steps(project))
    assert run.returncode == 0, f"{run.why()}\n{run.output[-6000:]}"
    assert f"Using CPython {DEFAULT_PYTHON}." in run.output, run.output[-3000:]
    assert " passed" in run.output, run.output[-3000:]
