"""A generated project guards itself: its own suite and CI go red when production would break.

Each guard runs twice, on the project as rendered (green) and on a broken
input (red): gunicorn 23 forced into a copy of the venv (the project's own
suite), a floor in pyproject.toml that is too low (the CI job on the lowest
versions), a stale lock, a Dockerfile that does not build, an nginx file that
fails `nginx -t`. The CI jobs run from the rendered workflow's own shell steps,
with uv from this repo's venv and podman standing in for docker.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.containers import BASE_PYTHON, ca_bundle_volume, podman_env, run_podman
from tests.helpers.images import ensure_nginx_image, require_podman, stand_in_for_from_lines
from tests.helpers.project_env import CACHE, project_environment, uv_environment
from tests.helpers.render import render
from tests.helpers.template_versions import (
    REPO,
    V1,
    V2,
    build_template_versions,
    commit_all,
    git,
    run_as_user,
)
from tests.helpers.tools import require_tool

WORKFLOW = ".github/workflows/ci.yml"


def copy_project(project: Path, into: Path) -> Path:
    return Path(shutil.copytree(project, into, ignore=shutil.ignore_patterns(".venv")))


def job_steps(project: Path, job: str) -> dict[str, str]:
    """The shell steps of one job of the rendered CI workflow, by name."""
    steps = yaml.safe_load((project / WORKFLOW).read_text())["jobs"][job]["steps"]
    return {step["name"]: step["run"] for step in steps if "run" in step}


def run_steps(
    project: Path, env: dict[str, str], scripts: list[str], timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Workflow steps, one after the other, with bash -e as the runner runs them;
    stops at the first that fails (its result is returned)."""
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


# -- the project's own suite boots its server ------------------------------------------


def server_tests(project: Path, bindir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_server.py"],
        cwd=project,
        env=project_environment(bindir),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.boot
def test_the_projects_suite_fails_when_gunicorn_23_is_forced_in(
    default_project: Path, venv_bin: Path, tmp_path: Path
) -> None:
    locked = server_tests(default_project, venv_bin)
    assert locked.returncode == 0, locked.stdout + locked.stderr

    # A copy of the shared venv (never the venv itself), with gunicorn 23.0.0.
    venv = Path(shutil.copytree(venv_bin.parent, tmp_path / "venv", symlinks=True))
    uv = require_tool("uv")
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            "gunicorn==23.0.0",
        ],
        env=uv_environment(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    forced = server_tests(default_project, venv / "bin")
    assert forced.returncode != 0, forced.stdout
    # Its workers die in the post_fork hook: the queue gunicorn 24 introduced.
    assert "get_nowait" in forced.stdout, forced.stdout


# -- CI's job on the lowest versions pyproject.toml allows --------------------------------


def lowest_job_env(venv: Path) -> dict[str, str]:
    """What the runner has: uv on PATH, a Python (this one); uv's venv goes to `venv`."""
    env = uv_environment(UV_PROJECT_ENVIRONMENT=str(venv))
    env["PATH"] = f"{Path(require_tool('uv')).parent}{os.pathsep}{env['PATH']}"
    return env


def lowest_job(project: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    steps = job_steps(project, "lowest")
    scripts = [script for name, script in steps.items() if name != "Install uv"]
    return run_steps(project, lowest_job_env(venv), scripts)


@pytest.mark.boot
def test_the_lowest_versions_allowed_pass_the_projects_suite(
    default_project: Path, tmp_path: Path
) -> None:
    project = copy_project(default_project, tmp_path / "project")
    result = lowest_job(project, tmp_path / "venv")
    assert result.returncode == 0, result.stdout + result.stderr
    # It really ran on the floor: the gunicorn installed is pyproject.toml's lower bound.
    floor = re.search(r'"gunicorn>=([\d.]+)', (project / "pyproject.toml").read_text())
    assert floor, "no gunicorn floor in pyproject.toml"
    lock = (project / "uv.lock").read_text()
    locked = re.search(r'name = "gunicorn"\nversion = "([\d.]+)"', lock)
    assert locked and locked[1].startswith(floor[1]), (floor[1], locked and locked[1])
    assert " passed" in result.stdout


@pytest.mark.boot
def test_a_floor_that_is_too_low_fails_the_lowest_versions_job(
    default_project: Path, tmp_path: Path
) -> None:
    project = copy_project(default_project, tmp_path / "project")
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(re.sub(r'"gunicorn>=[\d.]+', '"gunicorn>=23', text))
    result = lowest_job(project, tmp_path / "venv")
    assert result.returncode != 0, result.stdout
    assert "test_server.py" in result.stdout and "failed" in result.stdout, result.stdout


@pytest.mark.quick
def test_a_stale_lock_fails_the_install_step(default_project: Path, tmp_path: Path) -> None:
    project = copy_project(default_project, tmp_path / "project")
    steps = job_steps(project, "test")
    install = [steps["Install the locked dependencies"]]
    env = lowest_job_env(tmp_path / "venv") | {"UV_OFFLINE": "1"}
    # pyproject.toml asks for a package the lock has never heard of.
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"flask>=', '"itsdangerous>=2",\n    "flask>=')
    )
    result = run_steps(project, env, install, timeout=120)
    assert result.returncode != 0
    assert "needs to be updated" in result.stderr and "uv lock" in result.stderr, result.stderr


# -- CI's deploy job: the image and nginx --------------------------------------------------


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment where `docker` is podman: builds use the local stand-ins for
    the official images (by their names, --pull=never) and reach PyPI through the
    host's CA bundle; `curl` and this Python are on PATH, as on GitHub's runners."""
    require_podman()
    require_tool("curl")
    env = podman_env(tmp_path_factory.mktemp("podman"))
    nginx = ensure_nginx_image(env)
    run_podman(env, "tag", nginx, "docker.io/library/nginx:1.30-alpine")
    bindir = tmp_path_factory.mktemp("bin")
    shim = bindir / "docker"
    shim.write_text(
        "#!/bin/sh\n"
        "# docker -> podman, as the container tests build (tests/helpers/images.py).\n"
        'if [ "$1" = build ]; then\n'
        "    shift\n"
        f'    exec podman build --format docker --pull=never -v {ca_bundle_volume()} "$@"\n'
        "fi\n"
        'exec podman "$@"\n'
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


@pytest.mark.container
def test_the_deploy_job_builds_runs_and_stops_the_image(
    deploy_project: Path, docker: dict[str, str], tmp_path: Path
) -> None:
    result = deploy_job(deploy_project, docker, tmp_path, lambda name: "nginx" not in name)
    assert result.returncode == 0, result.stdout + result.stderr
    # The last step printed the container's log: gunicorn stopped on SIGTERM.
    assert "Shutting down: Master" in result.stdout + result.stderr


@pytest.mark.container
def test_a_dockerfile_that_does_not_build_fails_the_deploy_job(
    deploy_project: Path, docker: dict[str, str], tmp_path: Path
) -> None:
    project = copy_project(deploy_project, tmp_path / "project")
    dockerfile = project / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace(" wsgi.py ./", " no-such-file.py ./", 1))
    assert "no-such-file.py" in dockerfile.read_text()
    result = deploy_job(project, docker, tmp_path, lambda name: name == "Build the image")
    assert result.returncode != 0, result.stdout
    assert "no-such-file.py" in result.stdout + result.stderr


@pytest.mark.container
def test_the_deploy_job_runs_nginx_t_and_fails_on_a_broken_file(
    deploy_project: Path, docker: dict[str, str], tmp_path: Path
) -> None:
    def nginx_steps(name: str) -> bool:
        return "nginx -t" in name

    passed = deploy_job(deploy_project, docker, tmp_path, nginx_steps)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert passed.stderr.count("test is successful") == 2, passed.stderr

    project = copy_project(deploy_project, tmp_path / "project")
    site = project / "deploy" / "nginx" / "include" / "site.conf"
    site.write_text(
        site.read_text().replace("listen 80;", "listen 80;\n    no_such_directive on;", 1)
    )
    failed = deploy_job(project, docker, tmp_path, nginx_steps)
    assert failed.returncode != 0
    assert 'unknown directive "no_such_directive"' in failed.stderr, failed.stderr


# -- _min_copier_version: that Copier renders and updates a project -----------------------

MIN_COPIER = yaml.safe_load((REPO / "copier.yml").read_text())["_min_copier_version"]
# The last release without `_copier_operation` (9.6): it would render no .env.
TOO_OLD_COPIER = "9.5.0"


def copier_release(version: str) -> Path:
    """The `copier` command of that release from PyPI, in a venv cached across runs."""
    target = CACHE / "copier-releases" / version
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            uv, env = require_tool("uv"), uv_environment()
            for command in (
                [uv, "venv", "--quiet", str(target)],
                [uv, "pip", "install", "--quiet", "--python", str(target / "bin" / "python")]
                + [f"copier=={version}"],
            ):
                subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
            (target / ".complete").touch()
    return target / "bin" / "copier"


def readme_update_commands(project: Path) -> list[str]:
    """The generated README's update commands that need no version or answer of ours."""
    readme = (project / "README.md").read_text()
    commands = re.findall(r"^(copier [a-z-]+[^#\n]*?)\s*(?:#.*)?$", readme, re.MULTILINE)
    return [c for c in commands if c in ("copier check-update", "copier update --trust --defaults")]


@pytest.mark.update
def test_the_minimum_copier_renders_the_env_and_runs_the_readmes_update_commands(
    tmp_path: Path,
) -> None:
    copier_command = str(copier_release(MIN_COPIER))
    template = build_template_versions(tmp_path / "template")
    project = tmp_path / "project"
    copy = [copier_command, "copy", "--trust", "--defaults", f"--vcs-ref={V1}"]
    made = run_as_user(tmp_path, [*copy, str(template), str(project)])
    assert made.returncode == 0, made.stdout + made.stderr
    # The task that writes .env runs only on a copy (_copier_operation, Copier 9.6+).
    assert "FLASK_SECRET_KEY=" in (project / ".env").read_text()
    git(project, "init", "-q", "-b", "main")
    commit_all(project, "generated")

    commands = readme_update_commands(project)
    assert commands == ["copier check-update", "copier update --trust --defaults"], commands
    for command in commands:
        result = run_as_user(project, [copier_command, *command.split()[1:]])
        assert result.returncode == 0, f"{command}:\n{result.stdout}{result.stderr}"
        if command == "copier check-update":
            assert V2 in result.stdout + result.stderr, result.stdout + result.stderr
    assert f"_commit: {V2}" in (project / ".copier-answers.yml").read_text()


@pytest.mark.update
def test_an_older_copier_is_refused_with_the_version_to_install(tmp_path: Path) -> None:
    copier_command = str(copier_release(TOO_OLD_COPIER))
    template = build_template_versions(tmp_path / "template")
    copy = [copier_command, "copy", "--trust", "--defaults", f"--vcs-ref={V1}"]
    refused = run_as_user(tmp_path, [*copy, str(template), str(tmp_path / "project")])
    assert refused.returncode != 0
    assert f"requires Copier version >= {MIN_COPIER}" in refused.stdout + refused.stderr
    assert not (tmp_path / "project" / ".env").exists()
