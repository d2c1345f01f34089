"""copier.yml's `_min_copier_version` is true: that Copier renders a project and runs the
generated README's update commands; an older one is refused."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from harness import REPO
from harness import template_versions as tv
from harness.venvs import tool_venv

MIN_COPIER = yaml.safe_load((REPO / "copier.yml").read_text())["_min_copier_version"]
# The last release without `_copier_operation` (9.6): it would render no .env.
TOO_OLD_COPIER = "9.5.0"
README_COMMANDS = ["copier check-update", "copier update --trust --defaults"]


def copier_release(version: str) -> str:
    """The `copier` command of that release from PyPI, in a venv cached across runs."""
    return str(tool_venv(f"copier=={version}") / "copier")


def copy_with(copier: str, template: Path, project: Path) -> subprocess.CompletedProcess[str]:
    copy = [copier, "copy", "--trust", "--defaults", f"--vcs-ref={tv.V1}", str(template)]
    return tv.run_as_user(project.parent, [*copy, str(project)])


def test_the_minimum_copier_renders_the_env_and_runs_the_readmes_update_commands(
    template: Path, tmp_path: Path
) -> None:
    copier, project = copier_release(MIN_COPIER), tmp_path / "project"
    tv.succeeded(copy_with(copier, template, project))
    # The task that writes .env runs only on a copy (_copier_operation, Copier 9.6+).
    assert "FLASK_SECRET_KEY=" in (project / ".env").read_text()
    tv.git(project, "init", "-q", "-b", "main")
    tv.commit_all(project, "generated")

    # The README's update commands that need no version or answer of ours.
    readme = (project / "README.md").read_text()
    found = re.findall(r"^(copier [a-z-]+[^#\n]*?)\s*(?:#.*)?$", readme, re.MULTILINE)
    assert [command for command in found if command in README_COMMANDS] == README_COMMANDS
    check_update, update = (command.split()[1:] for command in README_COMMANDS)
    assert tv.V2 in tv.succeeded(tv.run_as_user(project, [copier, *check_update]))
    tv.succeeded(tv.run_as_user(project, [copier, *update]))
    assert f"_commit: {tv.V2}" in (project / ".copier-answers.yml").read_text()


def test_an_older_copier_is_refused_with_the_version_to_install(
    template: Path, tmp_path: Path
) -> None:
    refused = copy_with(copier_release(TOO_OLD_COPIER), template, tmp_path / "project")
    assert refused.returncode != 0
    assert f"requires Copier version >= {MIN_COPIER}" in refused.stdout + refused.stderr
    assert not (tmp_path / "project" / ".env").exists()
