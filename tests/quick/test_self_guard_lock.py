"""A generated project's CI goes red on a stale lock: `uv sync --locked` refuses it (offline)."""

from __future__ import annotations

from pathlib import Path

from harness.project_ci import copy_without_venv, job_steps, run_steps, runner_env


def test_a_stale_lock_fails_the_install_step(default_project: Path, tmp_path: Path) -> None:
    project = copy_without_venv(default_project, tmp_path / "project")
    install = [job_steps(project, "test")["Install the locked dependencies"]]
    env = runner_env(tmp_path / "venv") | {"UV_OFFLINE": "1"}
    # pyproject.toml asks for a package the lock has never heard of.
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"flask>=', '"itsdangerous>=2",\n    "flask>=')
    )
    result = run_steps(project, env, install, timeout=120)
    assert result.returncode != 0
    assert "needs to be updated" in result.stderr and "uv lock" in result.stderr, result.stderr
