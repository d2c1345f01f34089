"""The generated GitHub Actions workflow and Dependabot config: valid, lint-free,
installing from the lock with caching."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.actionlint import actionlint
from tests.helpers.project_env import uv_environment
from tests.helpers.render import render
from tests.helpers.template_versions import GIT_ENV
from tests.helpers.tools import check_jsonschema, require_tool

pytestmark = pytest.mark.quick

WORKFLOW = ".github/workflows/ci.yml"
DEPENDABOT = ".github/dependabot.yml"
VARIANTS = {
    "default": {},
    "py3.14-postgresql": {"python_version": "3.14", "database": "postgresql"},
    "no-docker-granian": {"with_docker": False, "server": "granian"},
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def project(request: pytest.FixtureRequest, copie_session: Any) -> Path:
    return render(copie_session, **VARIANTS[request.param])


def test_actionlint_finds_nothing(project: Path) -> None:
    assert actionlint(project, WORKFLOW) == []


def test_actionlint_would_notice_a_broken_workflow(project: Path, tmp_path: Path) -> None:
    """The linter runs for real: an unknown job dependency is reported."""
    broken = tmp_path / "broken.yml"
    text = (project / WORKFLOW).read_text()
    broken.write_text(
        text.replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    needs: x", 1)
    )
    assert [f["kind"] for f in actionlint(tmp_path, "broken.yml")] == ["job-needs"]


def test_zizmor_finds_nothing(project: Path) -> None:
    result = subprocess.run(
        [require_tool("zizmor"), "--offline", "--no-progress", ".github"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependabot_config_matches_the_schema(project: Path) -> None:
    result = check_jsonschema(project, "vendor.dependabot", DEPENDABOT)
    assert result.returncode == 0, result.stdout + result.stderr
    updates = yaml.safe_load((project / DEPENDABOT).read_text())["updates"]
    ecosystems = {update["package-ecosystem"] for update in updates}
    assert {"uv", "github-actions"} <= ecosystems
    assert ("docker" in ecosystems) == (project / "Dockerfile").exists()


def test_workflow_installs_from_the_lock_with_a_cache(project: Path) -> None:
    steps = yaml.safe_load((project / WORKFLOW).read_text())["jobs"]["test"]["steps"]
    runs = [step.get("run", "") for step in steps]
    assert "uv sync --locked" in runs
    cache = next(step for step in steps if step.get("uses", "").startswith("actions/cache@"))
    assert "hashFiles('uv.lock'" in cache["with"]["key"]
    # Every check the template's own tests run on the project runs in its CI too.
    joined = "\n".join(runs)
    for command in ("pre-commit run --all-files", "mypy", "pytest --cov", "uv export"):
        assert command in joined
    # Pinned to commits, not tags.
    uses = [step["uses"] for step in steps if "uses" in step]
    assert all(len(ref.split("@")[1]) == 40 for ref in uses), uses


def step_script(project: Path, name: str) -> str:
    steps = yaml.safe_load((project / WORKFLOW).read_text())["jobs"]["test"]["steps"]
    return next(step["run"] for step in steps if step.get("name") == name)


def run_step(project: Path, script: str) -> subprocess.CompletedProcess[str]:
    """A workflow step's script, run with bash as the runner does."""
    env = uv_environment(**GIT_ENV)
    env["PATH"] = f"{Path(require_tool('uv')).parent}:{env['PATH']}"
    return subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ci_fails_on_a_stale_lock_and_names_the_fix(copie: Any) -> None:
    project = render(copie)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"flask>=3.1,<4",', '"flask>=3.1,<4", "rich",')
    )
    result = run_step(project, step_script(project, "Install the locked dependencies"))
    assert result.returncode != 0
    assert "To update the lockfile, run `uv lock`" in result.stderr, result.stderr


def test_ci_fails_on_a_stale_requirements_txt_and_names_the_fix(copie: Any) -> None:
    project = render(copie)
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
