"""Updating a project from 0.1.0 (hand-written pins in requirements.txt, no
lock) to this version (uv.lock): the user's own added dependency stays where
they put it, and the CHANGELOG's "By hand" commands, run as printed, move it
into the lock and the exported requirements.txt."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.project_env import uv_environment
from tests.helpers.template_versions import (
    GIT_ENV,
    RELEASED,
    REPO,
    append,
    build_release_versions,
    commit_all,
    copier_update,
    copy_project,
    git,
    marker_files,
    version_in_the_making,
)
from tests.helpers.tools import require_tool

pytestmark = pytest.mark.update

OLD, NEW = RELEASED, version_in_the_making()
USER_REQUIREMENT = "requests==2.32.3"  # as the CHANGELOG's example names it


def by_hand_commands() -> list[str]:
    """The shell block under 0.2.0's "By hand" in CHANGELOG.md."""
    changelog = (REPO / "CHANGELOG.md").read_text()
    section = changelog.split(f"## {NEW}", 1)[1].split("\n## ", 1)[0]
    by_hand = section.split("### By hand", 1)[1]
    block = re.search(r"```sh\n(.*?)```", by_hand, flags=re.DOTALL)
    assert block, "no shell block under By hand"
    lines = [line.strip() for line in block[1].splitlines()]
    return [line.split("  #")[0].strip() for line in lines if line]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_release_versions(tmp_path_factory.mktemp("versions") / "copier-flask")


def test_own_dependency_survives_the_update_and_moves_to_the_lock(
    template: Path, tmp_path: Path
) -> None:
    project = copy_project(template, tmp_path / "demo-shop", vcs_ref=OLD)
    assert not (project / "uv.lock").exists()
    # What 0.1.0's requirements.txt told users to do: add the pin there.
    append(project / "requirements.txt", USER_REQUIREMENT)
    commit_all(project, "my dependency")

    result = copier_update(project, vcs_ref=NEW)
    assert result.returncode == 0, result.stdout + result.stderr
    # Left in place: the template rewrote the file, so the user's line is in
    # a conflict block, on their side, for them to move.
    requirements = (project / "requirements.txt").read_text()
    assert USER_REQUIREMENT in requirements.splitlines()
    assert marker_files(project) == ["requirements.txt"]
    assert (project / "uv.lock").is_file()

    env = uv_environment(**GIT_ENV)
    env["PATH"] = f"{Path(require_tool('uv')).parent}:{env['PATH']}"
    commands = by_hand_commands()
    assert commands[0].startswith("uv add ") and USER_REQUIREMENT in commands[0]
    for command in commands:
        run = subprocess.run(
            ["bash", "-c", command],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, f"{command}\n{run.stdout}{run.stderr}"

    assert f'"{USER_REQUIREMENT}"' in (project / "pyproject.toml").read_text()
    lock = (project / "uv.lock").read_text()
    assert re.search(r'^name = "requests"\nversion = "2\.32\.3"$', lock, flags=re.MULTILINE)
    requirements = (project / "requirements.txt").read_text()
    assert f"{USER_REQUIREMENT} \\" in requirements.splitlines()
    assert marker_files(project) == []
    check = subprocess.run(
        [require_tool("uv"), "lock", "--check"], cwd=project, env=env, capture_output=True
    )
    assert check.returncode == 0, check.stderr
    assert git(project, "status", "--porcelain").strip() == "", "everything is committed"
