"""The generated weekly update workflow, read: actionlint, the GitHub workflow
schema, its token permissions and what it pushes. tests/update/test_update_workflow.py
runs it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import REPO
from harness.actionlint import actionlint
from harness.render import render
from harness.tools import check_jsonschema

WORKFLOW = ".github/workflows/template-update.yml"
SCRIPT = ".github/scripts/update_from_template.py"


@pytest.fixture
def workflow(default_project: Path) -> dict[str, Any]:
    return yaml.safe_load((default_project / WORKFLOW).read_text())


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return workflow["jobs"][job]["steps"]


def run_text(workflow: dict[str, Any], job: str) -> str:
    return "\n".join(step.get("run", "") for step in steps(workflow, job))


@pytest.mark.parametrize(
    ("answers", "present"),
    [({}, True), ({"update_workflow": False}, False), ({"ci": "none"}, False)],
    ids=["default", "turned-off", "no-ci"],
)
def test_the_workflow_comes_with_github_ci_by_default(
    copie: Any, answers: dict[str, Any], present: bool
) -> None:
    project = render(copie, **answers)
    assert (project / WORKFLOW).is_file() == present
    assert (project / SCRIPT).is_file() == present


def test_workflow_is_actionlint_clean_and_matches_the_schema(default_project: Path) -> None:
    assert actionlint(default_project, WORKFLOW) == []
    result = check_jsonschema(default_project, "vendor.github-workflows", WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_asks_for_the_least_token_permissions(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {}, "nothing by default"
    # The job that runs the template's code (copier update --trust) may only read...
    assert workflow["jobs"]["update"]["permissions"] == {"contents": "read"}
    assert "update_from_template.py" in run_text(workflow, "update")
    # ...and the one that writes runs nothing but git and gh.
    assert workflow["jobs"]["pull-request"]["permissions"] == {
        "contents": "write",  # push the update branch
        "pull-requests": "write",  # open the pull request
    }
    writer = run_text(workflow, "pull-request")
    for other in ("python", "copier", "pip", "uv "):
        assert other not in writer, f"the job with a write token runs {other}"
    actions = [s["uses"].split("@")[0] for s in steps(workflow, "pull-request") if "uses" in s]
    assert actions == ["actions/checkout", "actions/download-artifact"]
    # No job leaves its token in .git/config for the code that runs after checkout.
    for job in workflow["jobs"]:
        checkout = next(s for s in steps(workflow, job) if "checkout" in s.get("uses", ""))
        assert checkout["with"]["persist-credentials"] is False
    # Scheduled, and by hand; never on push or pull_request (no untrusted input).
    assert set(workflow[True]) == {"schedule", "workflow_dispatch"}  # YAML 1.1: on == True


def test_workflow_runs_the_script_and_never_pushes_the_default_branch(
    workflow: dict[str, Any], default_project: Path
) -> None:
    assert f"python {SCRIPT}" in run_text(workflow, "update")
    pushes = [
        line.strip()
        for job in workflow["jobs"]
        for line in run_text(workflow, job).splitlines()
        if line.strip().startswith("git push")
    ]
    assert pushes == ['git push origin "refs/heads/$BRANCH:refs/heads/$BRANCH"'], pushes
    push_step = next(s for s in steps(workflow, "pull-request") if "git push" in s.get("run", ""))
    assert push_step["env"]["BRANCH"] == "${{ needs.update.outputs.branch }}"
    # ...which the script only ever sets to a branch of its own.
    script = (default_project / SCRIPT).read_text()
    assert 'BRANCH_PREFIX = "template-update/"' in script
    assert "branch = BRANCH_PREFIX + new" in script


def test_workflow_pins_its_actions_and_the_copier_this_repo_tests_with(
    workflow: dict[str, Any], default_project: Path
) -> None:
    uses = [s["uses"] for job in workflow["jobs"] for s in steps(workflow, job) if "uses" in s]
    assert all(re.fullmatch(r"actions/[a-z-]+@[0-9a-f]{40}", ref) for ref in uses), uses
    tested = re.search(r'"(copier==[^"]+)"', (REPO / "pyproject.toml").read_text())
    assert tested is not None
    assert f'pip install "{tested[1]}"' in (default_project / WORKFLOW).read_text()
