"""The generated weekly update workflow, read: its token permissions and what it pushes
(test_workflow.py lints it; tests/update/test_update_workflow.py runs it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from harness import REPO

WORKFLOW = ".github/workflows/template-update.yml"
SCRIPT = ".github/scripts/update_from_template.py"


def test_the_workflow_comes_with_github_ci_by_default(rendered: Any) -> None:
    for answers, present in [
        ({}, True),
        ({"update_workflow": False}, False),
        ({"ci": "none"}, False),
    ]:
        project = rendered(**answers)
        assert (project / WORKFLOW).is_file() == present, answers
        assert (project / SCRIPT).is_file() == present, answers


def test_workflow_asks_for_the_least_and_pushes_only_its_branch(default_project: Path) -> None:
    text = (default_project / WORKFLOW).read_text()
    workflow = yaml.safe_load(text)
    jobs = workflow["jobs"]

    def steps(job: str) -> list[dict[str, Any]]:
        return jobs[job]["steps"]

    def run_text(job: str) -> str:
        return "\n".join(step.get("run", "") for step in steps(job))

    assert workflow["permissions"] == {}, "nothing by default"
    # The job that runs the template's code (copier update --trust) may only read...
    assert jobs["update"]["permissions"] == {"contents": "read"}
    assert f"python {SCRIPT}" in run_text("update")
    # ...and the one that writes runs nothing but git and gh.
    assert jobs["pull-request"]["permissions"] == {
        "contents": "write",  # push the update branch
        "pull-requests": "write",  # open the pull request
    }
    writer = run_text("pull-request")
    for other in ("python", "copier", "pip", "uv "):
        assert other not in writer, f"the job with a write token runs {other}"
    actions = [s["uses"].split("@")[0] for s in steps("pull-request") if "uses" in s]
    assert actions == ["actions/checkout", "actions/download-artifact"]
    # No job leaves its token in .git/config for the code that runs after checkout.
    for job in jobs:
        checkout = next(s for s in steps(job) if "checkout" in s.get("uses", ""))
        assert checkout["with"]["persist-credentials"] is False
    # Scheduled, and by hand; never on push or pull_request (no untrusted input).
    assert set(workflow[True]) == {"schedule", "workflow_dispatch"}  # YAML 1.1: on == True

    # It never pushes the default branch...
    lines = [line.strip() for job in jobs for line in run_text(job).splitlines()]
    pushes = [line for line in lines if line.startswith("git push")]
    assert pushes == ['git push origin "refs/heads/$BRANCH:refs/heads/$BRANCH"'], pushes
    push_step = next(s for s in steps("pull-request") if "git push" in s.get("run", ""))
    assert push_step["env"]["BRANCH"] == "${{ needs.update.outputs.branch }}"
    # ...which the script only ever sets to a branch of its own.
    script = (default_project / SCRIPT).read_text()
    assert 'BRANCH_PREFIX = "template-update/"' in script
    assert "branch = BRANCH_PREFIX + new" in script

    # Its actions pinned to commits, and the copier this repository tests with.
    uses = [s["uses"] for job in jobs for s in steps(job) if "uses" in s]
    assert all(re.fullmatch(r"actions/[a-z-]+@[0-9a-f]{40}", ref) for ref in uses), uses
    tested = re.search(r'"(copier==[^"]+)"', (REPO / "pyproject.toml").read_text())
    assert tested is not None and f'pip install "{tested[1]}"' in text
