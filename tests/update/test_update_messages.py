"""The update script's messages, as a user reads them after running it (issue "Every
command a user is told to type works as printed"). The messages Copier prints are
read in tests/quick/test_user_path_static.py."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.template_versions import V1, V2, copy_project, run_as_user

SCRIPT = ".github/scripts/update_from_template.py"


def test_the_update_script_reports_under_its_header_and_commits_without_saying_to(
    template: Path, tmp_path: Path
) -> None:
    project = copy_project(template, tmp_path / "project")
    result = run_as_user(project, [sys.executable, SCRIPT])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    header = output.index(f"Updating this project from template version {V1} to {V2}")
    assert header < output.index("copier update: no conflicts.") < output.index("Committed on")
    assert "then commit" not in output and "conflict markers (<<<<<<<)" not in output
    assert "copier recopy --trust --defaults" in output
