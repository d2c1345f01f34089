"""A generated project's CI goes red on a stale uv.lock or requirements.txt, and names the fix
(its own workflow steps, run offline with bash as the runner does)."""

from __future__ import annotations

from pathlib import Path

from harness.project_ci import copy_without_venv, job_steps, run_steps, runner_env
from harness.template_versions import GIT_ENV


def test_a_stale_lock_fails_the_install_step(default_project: Path, tmp_path: Path) -> None:
    project = copy_without_venv(default_project, tmp_path / "project")
    env = runner_env(tmp_path / "venv") | {"UV_OFFLINE": "1"}
    # pyproject.toml asks for a package the lock has only as a dependency, and for one it
    # has never heard of.
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"flask>=', '"itsdangerous>=2",\n    "rich",\n    "flask>=')
    )
    install = [job_steps(project, "test")["Install the locked dependencies"]]
    result = run_steps(project, env, install, timeout=120)
    assert result.returncode != 0
    assert "needs to be updated" in result.stderr, result.stderr
    assert "To update the lockfile, run `uv lock`" in result.stderr, result.stderr


def test_a_stale_requirements_txt_fails_and_names_the_fix(
    default_project: Path, tmp_path: Path
) -> None:
    project = copy_without_venv(default_project, tmp_path / "project")
    env = runner_env(tmp_path / "venv") | GIT_ENV | {"UV_OFFLINE": "1"}
    check = [job_steps(project, "test")["requirements.txt matches uv.lock"]]
    git = ["git init -q", "git add -A", "git commit -qm generated"]
    assert run_steps(project, env, [*git, *check], timeout=120).returncode == 0, "fresh: passes"

    requirements = project / "requirements.txt"
    requirements.write_text(requirements.read_text().replace("flask==", "flask>="))
    git = ["git add -A", "git commit -qm 'a hand edit'"]
    result = run_steps(project, env, [*git, *check], timeout=120)
    assert result.returncode == 1
    expected = "::error file=requirements.txt::requirements.txt is stale. Run: uv export"
    assert expected in result.stdout, result.stdout
