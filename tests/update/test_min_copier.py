"""copier.yml's `_min_copier_version` is true: that Copier renders a project and
runs the generated README's update commands; an older one is refused."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from harness import REPO
from harness.template_versions import V1, V2, commit_all, git, run_as_user
from harness.venvs import tool_venv

MIN_COPIER = yaml.safe_load((REPO / "copier.yml").read_text())["_min_copier_version"]
# The last release without `_copier_operation` (9.6): it would render no .env.
TOO_OLD_COPIER = "9.5.0"


def copier_release(version: str) -> str:
    """The `copier` command of that release from PyPI, in a venv cached across runs."""
    return str(tool_venv(f"copier=={version}") / "copier")


def readme_update_commands(project: Path) -> list[str]:
    """The generated README's update commands that need no version or answer of ours."""
    readme = (project / "README.md").read_text()
    commands = re.findall(r"^(copier [a-z-]+[^#\n]*?)\s*(?:#.*)?$", readme, re.MULTILINE)
    return [c for c in commands if c in ("copier check-update", "copier update --trust --defaults")]


def copy_with(copier: str, template: Path, project: Path) -> tuple[int, str]:
    copy = [copier, "copy", "--trust", "--defaults", f"--vcs-ref={V1}", str(template)]
    made = run_as_user(project.parent, [*copy, str(project)])
    return made.returncode, made.stdout + made.stderr


def test_the_minimum_copier_renders_the_env_and_runs_the_readmes_update_commands(
    template: Path, tmp_path: Path
) -> None:
    copier = copier_release(MIN_COPIER)
    project = tmp_path / "project"
    code, output = copy_with(copier, template, project)
    assert code == 0, output
    # The task that writes .env runs only on a copy (_copier_operation, Copier 9.6+).
    assert "FLASK_SECRET_KEY=" in (project / ".env").read_text()
    git(project, "init", "-q", "-b", "main")
    commit_all(project, "generated")

    commands = readme_update_commands(project)
    assert commands == ["copier check-update", "copier update --trust --defaults"], commands
    for command in commands:
        result = run_as_user(project, [copier, *command.split()[1:]])
        assert result.returncode == 0, f"{command}:\n{result.stdout}{result.stderr}"
        if command == "copier check-update":
            assert V2 in result.stdout + result.stderr, result.stdout + result.stderr
    assert f"_commit: {V2}" in (project / ".copier-answers.yml").read_text()


def test_an_older_copier_is_refused_with_the_version_to_install(
    template: Path, tmp_path: Path
) -> None:
    code, output = copy_with(copier_release(TOO_OLD_COPIER), template, tmp_path / "project")
    assert code != 0
    assert f"requires Copier version >= {MIN_COPIER}" in output
    assert not (tmp_path / "project" / ".env").exists()
