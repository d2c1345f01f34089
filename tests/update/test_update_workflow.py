"""The weekly update workflow's script and shell steps, run for real, against template
versions in a temp git repo and a bare repo standing in for GitHub.
tests/quick/test_workflow.py reads the workflow; test_fleet.py runs the
script on twelve projects, test_update_from_release.py on a project of the 0.1.0 release.
"""

from __future__ import annotations

import os
import shutil
import sys
from functools import partial
from pathlib import Path

import yaml

from harness import template_versions as tv

WORKFLOW = ".github/workflows/template-update.yml"
SCRIPT = ".github/scripts/update_from_template.py"
TITLE = f"Update from the template: {tv.V1} → {tv.V2}"
BRANCH = f"template-update/{tv.V2}"
# The project's own copy of the script, as the workflow runs it.
run_script = partial(tv.update_script, script=SCRIPT)


def outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_the_workflows_steps_push_only_the_update_branch_and_the_script_runs_by_hand(
    template: Path, tmp_path: Path
) -> None:
    """Both jobs' shell steps, run here: GitHub's remote is a bare repo, gh a stub. Then
    the script as a user runs it, in the same project."""
    project = tv.copy_project(template, tmp_path / "project")
    workflow = yaml.safe_load((project / WORKFLOW).read_text())
    origin = tmp_path / "origin.git"
    tv.git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    tv.git(project, "remote", "add", "origin", str(origin))
    tv.git(project, "push", "-q", "origin", "main")
    sha = tv.git(project, "rev-parse", "HEAD").strip()
    gh = tmp_path / "bin" / "gh"
    gh.parent.mkdir()
    gh.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/gh-calls\n')
    gh.chmod(0o755)
    path = f"{gh.parent}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    runner = {**os.environ, **tv.GIT_ENV, "PATH": path, "GITHUB_SHA": sha, "NO_COLOR": "1"}

    def checkout(name: str) -> Path:
        """A shallow clone, as actions/checkout makes."""
        tv.git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", name)
        return tmp_path / name

    def run_steps(job: str, cwd: Path, env: dict[str, str], skip: str = "") -> None:
        """The `run:` steps of `job`, in bash as a GitHub runner runs them."""
        for step in workflow["jobs"][job]["steps"]:
            if "run" in step and step.get("name") != skip:
                settings = {k: v for k, v in step.get("env", {}).items() if "${{" not in v}
                tv.run_shell(step["run"], cwd, env | settings)

    # Job 1 (Copier is installed here).
    first, output = tmp_path / "runner-1", tmp_path / "job-1-output"
    first.mkdir()
    job1 = runner | {"RUNNER_TEMP": str(first), "GITHUB_OUTPUT": str(output), "BRANCH": BRANCH}
    run_steps("update", checkout("checkout-1"), job1, skip="Install Copier")
    produced = outputs(output)
    assert produced["branch"] == BRANCH
    update = sorted(p.name for p in (first / "update").iterdir())
    assert update == ["branch.bundle", "pull-request.md"]

    # Job 2, in a fresh checkout with the artifact: fetch, push, open the pull request.
    second = tmp_path / "runner-2"
    shutil.copytree(first / "update", second / "update")
    job2 = runner | {"RUNNER_TEMP": str(second), "BRANCH": produced["branch"]}
    job2 |= {"TITLE": produced["title"], "CONFLICTS": produced["conflicts"]}
    checkout_2 = checkout("checkout-2")
    run_steps("pull-request", checkout_2, job2)
    assert tv.git(origin, "rev-parse", "main").strip() == sha, "the default branch is untouched"
    assert tv.git(origin, "log", "-1", "--format=%s", BRANCH).strip() == TITLE
    body = second / "update" / "pull-request.md"
    assert (tmp_path / "gh-calls").read_text().splitlines() == [
        "auth setup-git",
        f"pr create --head {BRANCH} --title {TITLE} --body-file {body}",  # no --draft
    ]

    # Next week, while that pull request is open: the branch exists, nothing is pushed.
    head = tv.git(origin, "rev-parse", BRANCH)
    run_steps("pull-request", checkout_2, job2)
    assert tv.git(origin, "rev-parse", BRANCH) == head
    assert (tmp_path / "gh-calls").read_text().splitlines()[2:] == ["auth setup-git"]

    # The script by hand, in the project: a dirty tree is refused.
    tv.append(project / "README.md", "Not committed yet.")
    refused = tv.run_as_user(project, [sys.executable, SCRIPT])
    assert refused.returncode != 0
    assert "Commit or stash your changes first" in refused.stderr
    assert tv.git(project, "branch", "--list").split() == ["*", "main"]
    tv.commit_all(project, "now committed")

    # The branch exists on the remote already (the pull request above): nothing to do.
    before = tv.git(project, "rev-parse", "HEAD")
    output = run_script(project, "--remote", "origin", GITHUB_OUTPUT=str(tmp_path / "exists"))
    assert "already exists on origin" in output
    assert outputs(tmp_path / "exists") == {"branch": ""}
    assert tv.git(project, "rev-parse", "HEAD") == before
    assert tv.git(project, "branch", "--list").split() == ["*", "main"]

    pr_text = ["--body-file", str(tmp_path / "body.md")]
    output = run_script(project, *pr_text, GITHUB_OUTPUT=str(tmp_path / "github-output"))
    assert outputs(tmp_path / "github-output") == {
        "branch": BRANCH,
        "title": TITLE,
        "conflicts": "0",
    }
    # main is where it was; the update is one commit on the branch.
    assert tv.git(project, "rev-list", "--count", "main").strip() == "2"
    assert tv.git(project, "log", "-1", "--format=%s").strip() == TITLE
    # Its messages in order, under its header; it commits without telling the user to, and
    # Copier's reminder before the update (_message_before_update) says how to undo one.
    header = output.index(f"Updating this project from template version {tv.V1} to {tv.V2}")
    assert header < output.index("copier update: no conflicts.") < output.index("Committed on")
    assert "then commit" not in output and "conflict markers (<<<<<<<)" not in output
    assert "copier recopy --trust --defaults" in output

    # Again on the updated branch: nothing newer, no branch, nothing for the workflow to do.
    again = run_script(project, GITHUB_OUTPUT=str(tmp_path / "again"))
    assert f"Up to date: template version {tv.V2}" in again
    assert outputs(tmp_path / "again") == {"branch": ""}

    # The recopy the README and _message_before_update give for an update gone wrong puts
    # the template back, and the user's edit shows in the diff.
    pristine = (project / "wsgi.py").read_text()
    tv.append(project / "wsgi.py", "# mine: an edit the recopy sets aside")
    tv.commit_all(project, "my edit")
    tv.succeeded(tv.run_copier(project, "recopy", "--trust", "--defaults", "--overwrite"))
    assert (project / "wsgi.py").read_text() == pristine
    assert "-# mine: an edit the recopy sets aside" in tv.git(project, "diff", "--", "wsgi.py")
