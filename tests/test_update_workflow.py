"""The weekly update workflow and the script that does its work.

The workflow is checked statically (actionlint, the GitHub workflow schema,
its token permissions and what it pushes); the script runs for real against
template versions built in a temp git repo, and against a bare repo standing
in for GitHub. tests/test_fleet.py runs it on twelve projects.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.actionlint import actionlint
from tests.helpers.render import render
from tests.helpers.template_versions import (
    GIT_ENV,
    REPO,
    V1,
    V2,
    append,
    build_release_versions,
    build_template_versions_with_changelog,
    commit_all,
    copy_project,
    git,
    run_as_user,
    version_in_the_making,
)
from tests.helpers.tools import check_jsonschema

WORKFLOW = ".github/workflows/template-update.yml"
SCRIPT = ".github/scripts/update_from_template.py"


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return workflow["jobs"][job]["steps"]


def run_text(workflow: dict[str, Any], job: str) -> str:
    return "\n".join(step.get("run", "") for step in steps(workflow, job))


# ---- the workflow, as rendered ------------------------------------------------------


@pytest.mark.quick
@pytest.mark.parametrize(
    ("answers", "present"),
    [
        ({}, True),
        ({"update_workflow": False}, False),
        ({"ci": "none"}, False),
    ],
    ids=["default", "turned-off", "no-ci"],
)
def test_the_workflow_comes_with_github_ci_by_default(
    copie: Any, answers: dict[str, Any], present: bool
) -> None:
    project = render(copie, **answers)
    assert (project / WORKFLOW).is_file() == present
    assert (project / SCRIPT).is_file() == present


@pytest.mark.quick
def test_workflows_are_actionlint_clean(default_project: Path) -> None:
    assert actionlint(default_project, WORKFLOW, ".github/workflows/ci.yml") == []


@pytest.mark.quick
def test_workflow_matches_the_schema(default_project: Path) -> None:
    result = check_jsonschema(default_project, "vendor.github-workflows", WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.quick
def test_workflow_asks_for_the_least_token_permissions(default_project: Path) -> None:
    workflow = yaml.safe_load((default_project / WORKFLOW).read_text())
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


@pytest.mark.quick
def test_workflow_runs_the_script_and_never_pushes_the_default_branch(
    default_project: Path,
) -> None:
    workflow = yaml.safe_load((default_project / WORKFLOW).read_text())
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


@pytest.mark.quick
def test_workflow_pins_actions_to_commits(default_project: Path) -> None:
    workflow = yaml.safe_load((default_project / WORKFLOW).read_text())
    uses = [s["uses"] for job in workflow["jobs"] for s in steps(workflow, job) if "uses" in s]
    assert all(re.fullmatch(r"actions/[a-z-]+@[0-9a-f]{40}", ref) for ref in uses), uses


@pytest.mark.quick
def test_workflow_pins_the_copier_this_repo_tests_with(default_project: Path) -> None:
    workflow = (default_project / WORKFLOW).read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    tested = re.search(r'"(copier==[^"]+)"', pyproject)
    assert tested is not None
    assert f'pip install "{tested[1]}"' in workflow


# ---- the script, run for real ------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_template_versions_with_changelog(tmp_path_factory.mktemp("wf") / "template")


def run_script(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The project's own copy of the script, as the workflow runs it."""
    return run_as_user(project, [sys.executable, SCRIPT, *args], **env)


def outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


@pytest.mark.update
def test_script_updates_on_a_branch_and_tells_the_workflow(template: Path, tmp_path: Path) -> None:
    project = copy_project(template, tmp_path / "project")
    github_output = tmp_path / "github-output"
    result = run_script(
        project, "--body-file", str(tmp_path / "body.md"), GITHUB_OUTPUT=str(github_output)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert outputs(github_output) == {
        "branch": f"template-update/{V2}",
        "title": f"Update from the template: {V1} → {V2}",
        "conflicts": "0",
    }
    # main is where it was; the update is one commit on the branch.
    assert git(project, "rev-list", "--count", "main").strip() == "1"
    assert (
        git(project, "log", "-1", "--format=%s").strip() == f"Update from the template: {V1} → {V2}"
    )
    # Copier's reminder before the update says how to undo one (_message_before_update).
    assert "copier recopy --trust --defaults" in result.stdout + result.stderr

    # Run again on the updated branch: nothing newer, no branch, nothing for the workflow to do.
    again = run_script(project, GITHUB_OUTPUT=str(tmp_path / "again"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"Up to date: template version {V2}" in again.stdout
    assert outputs(tmp_path / "again") == {"branch": ""}


@pytest.mark.update
def test_script_leaves_an_existing_remote_branch_alone(template: Path, tmp_path: Path) -> None:
    project = copy_project(template, tmp_path / "project")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(project, "remote", "add", "origin", str(remote))
    git(project, "push", "-q", "origin", f"main:refs/heads/template-update/{V2}")
    before = git(project, "rev-parse", "HEAD")

    result = run_script(project, "--remote", "origin", GITHUB_OUTPUT=str(tmp_path / "out"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "already exists on origin" in result.stdout
    assert outputs(tmp_path / "out") == {"branch": ""}
    assert git(project, "rev-parse", "HEAD") == before
    assert git(project, "branch", "--list").split() == ["*", "main"]


@pytest.mark.update
def test_script_refuses_a_dirty_tree_and_changes_nothing(template: Path, tmp_path: Path) -> None:
    project = copy_project(template, tmp_path / "project")
    append(project / "README.md", "Not committed yet.")
    result = run_script(project)
    assert result.returncode != 0
    assert "Commit or stash your changes first" in result.stderr
    assert git(project, "branch", "--list").split() == ["*", "main"]
    commit_all(project, "now committed")
    assert run_script(project).returncode == 0


@pytest.mark.update
def test_recopy_as_documented_puts_the_template_back_and_shows_the_users_edits(
    template: Path, tmp_path: Path
) -> None:
    project = copy_project(template, tmp_path / "project")
    pristine = (project / "wsgi.py").read_text()
    append(project / "wsgi.py", "# mine: an edit the recopy sets aside")
    commit_all(project, "my edit")
    # The command the README and _message_before_update give for an update gone wrong.
    recopy = [sys.executable, "-m", "copier", "recopy", "--trust", "--defaults", "--overwrite"]
    result = run_as_user(project, recopy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "wsgi.py").read_text() == pristine
    assert "-# mine: an edit the recopy sets aside" in git(project, "diff", "--", "wsgi.py")


def run_steps(
    workflow: dict[str, Any], job: str, cwd: Path, env: dict[str, str], skip: str = ""
) -> None:
    """The `run:` steps of `job`, in bash as a GitHub runner runs them."""
    for step in steps(workflow, job):
        if "run" not in step or step.get("name") == skip:
            continue
        result = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", step["run"]],
            cwd=cwd,
            env={**env, **{k: v for k, v in step.get("env", {}).items() if "${{" not in v}},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{step['run']}\n{result.stdout}{result.stderr}"


@pytest.mark.update
def test_the_workflows_shell_steps_push_only_the_update_branch(
    template: Path, tmp_path: Path
) -> None:
    """Both jobs' shell steps, run here: GitHub's remote is a bare repo, gh a stub."""
    project = copy_project(template, tmp_path / "project")
    workflow = yaml.safe_load((project / WORKFLOW).read_text())
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(project, "remote", "add", "origin", str(origin))
    git(project, "push", "-q", "origin", "main")
    sha = git(project, "rev-parse", "HEAD").strip()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    gh = bindir / "gh"
    gh.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/gh-calls\n')
    gh.chmod(0o755)
    path = f"{bindir}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    runner = {**os.environ, **GIT_ENV, "PATH": path, "GITHUB_SHA": sha, "NO_COLOR": "1"}

    # Job 1, in a shallow clone as actions/checkout makes (Copier is installed here).
    first = tmp_path / "runner-1"
    first.mkdir()
    output = tmp_path / "job-1-output"
    job1 = runner | {"RUNNER_TEMP": str(first), "GITHUB_OUTPUT": str(output)}
    branch = f"template-update/{V2}"
    checkout_1 = tmp_path / "checkout-1"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", str(checkout_1))
    run_steps(workflow, "update", checkout_1, job1 | {"BRANCH": branch}, skip="Install Copier")
    produced = outputs(output)
    assert produced["branch"] == branch
    assert sorted(p.name for p in (first / "update").iterdir()) == [
        "branch.bundle",
        "pull-request.md",
    ]

    # Job 2, in a fresh checkout with the artifact: fetch, push, open the pull request.
    second = tmp_path / "runner-2"
    shutil.copytree(first / "update", second / "update")
    checkout_2 = tmp_path / "checkout-2"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", str(checkout_2))
    job2 = runner | {
        "RUNNER_TEMP": str(second),
        "BRANCH": produced["branch"],
        "TITLE": produced["title"],
        "CONFLICTS": produced["conflicts"],
    }
    run_steps(workflow, "pull-request", checkout_2, job2)

    assert git(origin, "rev-parse", "main").strip() == sha, "the default branch is untouched"
    pushed = git(origin, "log", "-1", "--format=%s", branch).strip()
    assert pushed == f"Update from the template: {V1} → {V2}"
    body = second / "update" / "pull-request.md"
    assert (tmp_path / "gh-calls").read_text().splitlines() == [
        "auth setup-git",
        f"pr create --head {branch} --title {pushed} --body-file {body}",  # no --draft
    ]

    # Next week, while that pull request is open: the branch exists, nothing is pushed.
    head = git(origin, "rev-parse", branch)
    run_steps(workflow, "pull-request", checkout_2, job2)
    assert git(origin, "rev-parse", branch) == head
    assert (tmp_path / "gh-calls").read_text().splitlines()[2:] == ["auth setup-git"]


@pytest.mark.update
def test_a_project_from_the_0_1_0_release_gets_the_workflow_and_this_changelog(
    tmp_path: Path,
) -> None:
    """The real first release (its git tag) updated to the working tree, tagged
    with pyproject.toml's version: what users of 0.1.0 will get."""
    version = version_in_the_making()
    root = build_release_versions(tmp_path / "template")

    project = copy_project(template=root, dst=tmp_path / "project", vcs_ref="0.1.0")
    assert not (project / WORKFLOW).exists()
    # The project has no script yet: the one it is about to get does the update.
    script = REPO / "template" / "{% if ci == 'github' %}.github{% endif %}"
    script = script / "{% if update_workflow %}scripts{% endif %}" / "update_from_template.py"
    result = run_as_user(
        project, [sys.executable, str(script), "--body-file", str(tmp_path / "body.md")]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / WORKFLOW).is_file(), "update_workflow's default reaches old projects"
    assert "update_workflow: true" in (project / ".copier-answers.yml").read_text()
    body = (tmp_path / "body.md").read_text()
    assert f"### {version} " in body and "### 0.1.0" not in body
    assert "Update pull requests" in body, "this CHANGELOG's entry for the new version"
