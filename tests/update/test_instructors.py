"""The README's "For instructors" section, run command by command: each ```sh block in
bash, in order, as written, but with `https://github.com/you/` pointing at repositories in
a temp dir (the "forge"). Between the blocks the test does what the prose asks of people:
the instructor fixes the template; a student edits the very lines the fix changes.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from harness import REPO
from harness import template_versions as tv
from harness.readme import readme_blocks

GITHUB = "https://github.com/you/"
GUNICORN_CONF = "{% if server == 'gunicorn' %}gunicorn.conf.py{% endif %}.jinja"
FIX = 'timeout = env_int("GUNICORN_TIMEOUT", 60)  # fix: the exercise needs longer'
STUDENT = "timeout = 90  # mine: my laptop is slow"
FIX_CHANGELOG = "## 0.2.1 (2026-12-01)\n\n### On update\n- gunicorn's timeout is 60 s.\n\n"


def run_block(block: str, cwd: Path, forge: Path) -> str:
    """One block in bash, stopping at the first failing command or unset variable."""
    bindir = Path(sys.executable).parent  # copier and python, as installed by the reader
    env = {**os.environ, **tv.GIT_ENV, "PATH": f"{bindir}:{os.environ['PATH']}", "NO_COLOR": "1"}
    return tv.run_shell("set -u\n" + block.replace(GITHUB, f"{forge}/"), cwd, env)


def test_the_instructors_commands_work_as_written(tmp_path: Path) -> None:
    readme = readme_blocks((REPO / "README.md").read_text())
    blocks = [block.text for block in readme if block.section.startswith("For instructors")]
    assert len(blocks) == 5, "this test follows the section's five blocks; update both"
    make_preset, make_kit, student_copy, tag_fix, student_update = blocks
    forge, home = tmp_path / "forge", tmp_path / "home"
    home.mkdir()
    # This repository as the fork on the forge, without tags (tags made in a clone do not
    # reach a fork: the first block makes one). A fork is the whole repository; what git
    # and Python leave around is not.
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "build", "__pycache__", "*.pyc", ".ruff_cache", ".pytest_cache"
    )
    shutil.copytree(REPO, forge / "copier-flask", ignore=ignore)
    tv.commit_all(forge / "copier-flask", "copier-flask", init=True)
    tv.git(forge, "init", "-q", "-b", "main", "python-101-kit")
    for name in ("copier-flask", "python-101-kit"):
        # Not bare: Copier takes a bare repository's path for a folder to copy.
        # updateInstead lets pushes into its checked-out branch, like GitHub.
        tv.git(forge / name, "config", "receive.denyCurrentBranch", "updateInstead")

    # Blocks 1 and 2 in one shell, as one terminal runs them: block 1 ends where block 2 starts.
    run_block(make_preset + make_kit, home, forge)
    assert (home / "copier-flask" / "presets" / "python-101.yml").is_file()
    assert "python-101.yml" in tv.git(forge / "copier-flask", "ls-tree", "-r", "main", "presets")
    assert "0.2.0" in tv.git(forge / "copier-flask", "tag", "--list")
    kit = home / "python-101-kit"
    assert "_commit: 0.2.0" in (kit / ".copier-answers.yml").read_text()
    assert not (kit / "Dockerfile").exists(), "the course preset: no Docker"
    assert tv.git(forge / "python-101-kit", "rev-parse", "main")

    # A student without GitHub got the preset file from the instructor.
    shutil.copy2(home / "copier-flask" / "presets" / "python-101.yml", home)
    run_block(student_copy, home, forge)
    student = home / "my-project"
    tv.edit(student / "gunicorn.conf.py", r"^timeout = .*$", STUDENT)
    tv.commit_all(student, "my timeout")
    # Another student made a repository from the kit ("Use this template").
    tv.git(home, "clone", "-q", str(forge / "python-101-kit"), "from-kit")

    # The instructor's fix, committed in the fork as the prose says; then the block tags it.
    fork = home / "copier-flask"
    tv.edit(fork / "template" / GUNICORN_CONF, r"^timeout = .*$", FIX)
    tv.insert_after(fork / "CHANGELOG.md", tv.BEFORE_FIRST_HEADING, FIX_CHANGELOG)
    tv.commit_all(fork, "Fix: a longer timeout for the exercise")
    run_block(tag_fix, home, forge)

    output = run_block(student_update, home, forge)
    assert "1 conflict(s)" in output
    assert tv.git(student, "branch", "--show-current").strip() == "template-update/0.2.1"
    merged = (student / "gunicorn.conf.py").read_text()
    assert f"<<<<<<< before updating\n{STUDENT}\n=======\n{FIX}\n>>>>>>> after updating" in merged
    body = (student / ".git" / "TEMPLATE_UPDATE.md").read_text()
    assert "- `gunicorn.conf.py`" in body
    assert "### 0.2.1 (2026-12-01)" in body and "60 s" in body
    assert "Update from the template: 0.2.0 → 0.2.1" in tv.git(student, "log", "-1", "--format=%s")

    # The kit's copy updates the same way, and cleanly: its student changed nothing.
    from_kit = run_block(student_update.replace("my-project", "from-kit"), home, forge)
    assert "0 conflict(s)" in from_kit
    assert FIX in (home / "from-kit" / "gunicorn.conf.py").read_text()
