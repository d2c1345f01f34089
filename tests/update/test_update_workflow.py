"""The weekly update workflow's script and shell steps, run for real.

Against template versions built in a temp git repo, and a bare repo standing in
for GitHub. tests/quick/test_template_update_workflow.py reads the workflow;
tests/update/test_fleet.py runs the script on twelve projects, and
tests/update/test_update_from_release.py on a project of the 0.1.0 release.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from harness.template_versions import (
    GIT_ENV,
    V1,
    V2,
    append,
    commit_all,
    copy_project,
    git,
    run_as_user,
    run_copier,
    run_shell,
    succeeded,
)

WORKFLOW = ".github/workflows/template-update.yml"
SCRIPT = ".github/scripts/update_from_template.py"
TITLE = f"Update from the template: {V1} → {V2}"
BRANCH = f"template-update/{V2}"


def run_script(project: Path, *args: str, **env: str) -> str:
    """The project's own copy of the script, as the workflow runs it; its output."""
    return succeeded(run_as_user(project, [sys.executable, SCRIPT, *args], **env))


def outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_script_updates_on_a_branch_and_tells_the_workflow(template: Path, tmp_path: Path) -> None:
    project = copy_project(template, tmp_path / "project")
    github_output = tmp_path / "github-output"
    output = run_script(
        project, "--body-file", str(tmp_path / "body.md"), GITHUB_OUTPUT=str(github_output)
    )
    assert outputs(github_output) == {"branch": BRANCH, "title": TITLE, "conflicts": "0"}
    # main is where it was; the update is one commit on the branch.
    assert git(project, "rev-list", "--count", "main").strip() == "1"
    assert git(project, "log", "-1", "--format=%s").strip() == TITLE
    # Copier's reminder before the update says how to undo one (_message_before_update).
    assert "copier recopy --trust --defaults" in output

    # Run again on the updated branch: nothing newer, no branch, nothing for the workflow to do.
    again = run_script(project, GITHUB_OUTPUT=str(tmp_path / "again"))
    assert f"Up to date: template version {V2}" in again
    assert outputs(tmp_path / "again") == {"branch": ""}


def test_script_leaves_an_existing_remote_branch_alone(template: Path, tmp_path: Path) -> None:
    project = copy_project(template, tmp_path / "project")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(project, "remote", "add", "origin", str(remote))
    git(project, "push", "-q", "origin", f"main:refs/heads/{BRANCH}")
    before = git(project, "rev-parse", "HEAD")

    output = run_script(project, "--remote", "origin", GITHUB_OUTPUT=str(tmp_path / "out"))
    assert "already exists on origin" in output
    assert outputs(tmp_path / "out") == {"branch": ""}
    assert git(project, "rev-parse", "HEAD") == before
    assert git(project, "branch", "--list").split() == ["*", "main"]


def test_script_refuses_a_dirty_tree_and_changes_nothing(template: Path, tmp_path: Path) -> None:
    project = copy_project(template, tmp_path / "project")
    append(project / "README.md", "Not committed yet.")
    result = run_as_user(project, [sys.executable, SCRIPT])
    assert result.returncode != 0
    assert "Commit or stash your changes first" in result.stderr
    assert git(project, "branch", "--list").split() == ["*", "main"]
    commit_all(project, "now committed")
    run_script(project)


def test_recopy_as_documented_puts_the_template_back_and_shows_the_users_edits(
    template: Path, tmp_path: Path
) -> None:
    project = copy_project(template, tmp_path / "project")
    pristine = (project / "wsgi.py").read_text()
    append(project / "wsgi.py", "# mine: an edit the recopy sets aside")
    commit_all(project, "my edit")
    # The command the README and _message_before_update give for an update gone wrong.
    succeeded(run_copier(project, "recopy", "--trust", "--defaults", "--overwrite"))
    assert (project / "wsgi.py").read_text() == pristine
    assert "-# mine: an edit the recopy sets aside" in git(project, "diff", "--", "wsgi.py")


def run_steps(
    workflow: dict[str, Any], job: str, cwd: Path, env: dict[str, str], skip: str = ""
) -> None:
    """The `run:` steps of `job`, in bash as a GitHub runner runs them."""
    for step in workflow["jobs"][job]["steps"]:
        if "run" in step and step.get("name") != skip:
            settings = {k: v for k, v in step.get("env", {}).items() if "${{" not in v}
            run_shell(step["run"], cwd, env | settings)


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

    def checkout(name: str) -> Path:
        """A shallow clone, as actions/checkout makes."""
        git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", name)
        return tmp_path / name

    # Job 1 (Copier is installed here).
    first = tmp_path / "runner-1"
    first.mkdir()
    output = tmp_path / "job-1-output"
    job1 = runner | {"RUNNER_TEMP": str(first), "GITHUB_OUTPUT": str(output), "BRANCH": BRANCH}
    run_steps(workflow, "update", checkout("checkout-1"), job1, skip="Install Copier")
    produced = outputs(output)
    assert produced["branch"] == BRANCH
    assert sorted(p.name for p in (first / "update").iterdir()) == [
        "branch.bundle",
        "pull-request.md",
    ]

    # Job 2, in a fresh checkout with the artifact: fetch, push, open the pull request.
    second = tmp_path / "runner-2"
    shutil.copytree(first / "update", second / "update")
    job2 = runner | {
        "RUNNER_TEMP": str(second),
        "BRANCH": produced["branch"],
        "TITLE": produced["title"],
        "CONFLICTS": produced["conflicts"],
    }
    checkout_2 = checkout("checkout-2")
    run_steps(workflow, "pull-request", checkout_2, job2)

    assert git(origin, "rev-parse", "main").strip() == sha, "the default branch is untouched"
    assert git(origin, "log", "-1", "--format=%s", BRANCH).strip() == TITLE
    body = second / "update" / "pull-request.md"
    assert (tmp_path / "gh-calls").read_text().splitlines() == [
        "auth setup-git",
        f"pr create --head {BRANCH} --title {TITLE} --body-file {body}",  # no --draft
    ]

    # Next week, while that pull request is open: the branch exists, nothing is pushed.
    head = git(origin, "rev-parse", BRANCH)
    run_steps(workflow, "pull-request", checkout_2, job2)
    assert git(origin, "rev-parse", BRANCH) == head
    assert (tmp_path / "gh-calls").read_text().splitlines()[2:] == ["auth setup-git"]
