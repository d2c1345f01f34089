"""The scripts Copier runs (hooks/), standard library only: write_dotenv.py, a task, is
idempotent and never overwrites the user's files; the `_migrations` entries point at real
scripts, and move_path.py carries a user's edits, on a project in the state Copier leaves
before it runs (tests/update/test_update.py runs it in a real update)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from harness import REPO
from harness.serving import answers
from harness.template_versions import MOVE_MIGRATION, commit_all, conflict_files, git, snapshot
from hooks.migrations import move_path


def test_migrations_point_at_real_scripts_and_paths(default_project: Path) -> None:
    # copier.yml's entries, and the move a release makes (the update tests' 2.0.0).
    entries = [*yaml.safe_load((REPO / "copier.yml").read_text())["_migrations"], MOVE_MIGRATION]
    for entry in entries:
        command = entry["command"]
        assert isinstance(command, list), "list form: no shell, paths with spaces work"
        script = command[1].replace("{{ _copier_conf.src_path }}", str(REPO))
        assert Path(script).is_file(), script
        if "version" in entry:
            Version(entry["version"])  # PEP 440, or Copier cannot compare it
        if script.endswith("move_path.py"):
            # A move names a path the template renders now (or, once made, its
            # new one): a typo would make it a silent no-op.
            values = answers(default_project)
            old, new = (default_project / p.format_map(values) for p in command[2:])
            assert old.is_file() != new.is_file(), (old, new)


@pytest.fixture
def moved_repo(tmp_path: Path) -> Path:
    """A committed project with OLD (user-edited) whose update deleted OLD and wrote NEW."""
    root = tmp_path / "project"
    (root / "old").mkdir(parents=True)
    (root / ".copier-answers.yml").write_text("_commit: 1.0.0\nproject_slug: shop\n")
    (root / "old" / "shop.conf").write_text("one\nmine\nthree\n")
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "before the update")
    (root / "old" / "shop.conf").unlink()
    (root / "new").mkdir()
    (root / "new" / "shop.conf").write_text("one\ntheirs\nthree\n")
    return root


@pytest.mark.parametrize(
    ("base", "said", "merged", "conflicts"),
    [
        (b"one\ntwo\nthree\n", "merged your edits (three-way), with conflicts to resolve",
         "<<<<<<< before updating\nmine\n=======\ntheirs\n>>>>>>> after updating\n",
         ["new/shop.conf"]),
        (b"one\nmine\nthree\n", "you had not changed it", "one\ntheirs\nthree\n", []),
        # A bare python (no Copier to render the old version): every difference
        # between the user's file and the template's is a conflict, none is lost.
        (None, "two-way", "\nmine\n=======\ntheirs\n", ["new/shop.conf"]),
    ],
    ids=["three-way", "unedited", "no-base"],
)  # fmt: skip
def test_move_path_carries_the_users_edits_once(
    moved_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    base: bytes | None,
    said: str,
    merged: str,
    conflicts: list[str],
) -> None:
    monkeypatch.setattr(move_path, "render_base", lambda answers, rel: base)
    assert said in move_path.carry(moved_repo, "old/{project_slug}.conf", "new/{project_slug}.conf")
    result = (moved_repo / "new" / "shop.conf").read_text()
    assert merged in result
    assert conflict_files(moved_repo) == conflicts
    # Idempotent: a second run leaves the result alone.
    again = move_path.carry(moved_repo, "old/shop.conf", "new/shop.conf")
    assert ("already holds a merge" if conflicts else said) in again
    assert (moved_repo / "new" / "shop.conf").read_text() == result


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("old/none.conf", "new/shop.conf", "the project had no old/none.conf"),
        ("old/shop.conf", "new/none.conf", "the template has no new/none.conf"),
        ("old/shop.conf", "../elsewhere.conf", "not a path inside the project"),
    ],
)
def test_move_path_does_nothing_when_there_is_nothing_to_carry(
    moved_repo: Path, old: str, new: str, said: str
) -> None:
    before = snapshot(moved_repo)
    try:
        message = move_path.carry(moved_repo, old, new)
    except SystemExit as refused:
        message = str(refused)
    assert said in message
    assert snapshot(moved_repo) == before


def run_hook(cwd: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    hook = REPO / "hooks" / "write_dotenv.py"
    return subprocess.run(
        [sys.executable, str(hook), *flags], cwd=cwd, capture_output=True, text=True, timeout=30
    )


def test_write_dotenv_writes_once_never_overwrites_and_adds_a_password(tmp_path: Path) -> None:
    plain, with_db, users = tmp_path / "plain", tmp_path / "db", tmp_path / "users"
    for folder in (plain, with_db, users):
        folder.mkdir()
    assert run_hook(plain).returncode == 0
    written = (plain / ".env").read_text()
    assert "FLASK_SECRET_KEY=" in written and "POSTGRES_PASSWORD" not in written
    again = run_hook(plain)
    assert again.returncode == 0 and "Kept" in again.stdout
    assert (plain / ".env").read_text() == written

    assert run_hook(with_db, "--postgres").returncode == 0
    password = (with_db / ".env").read_text().split("POSTGRES_PASSWORD=")[1].strip()
    assert len(password) >= 32
    assert (with_db / ".env").stat().st_mode & 0o777 == 0o600

    (users / ".env").write_text("FLASK_SECRET_KEY=mine\n")
    assert run_hook(users).returncode == 0
    assert (users / ".env").read_text() == "FLASK_SECRET_KEY=mine\n"


def test_hooks_use_only_the_standard_library() -> None:
    # Tasks run with Copier's interpreter, before the project has any packages.
    for script in (REPO / "hooks").rglob("*.py"):
        result = subprocess.run(
            [sys.executable, "-S", "-c", f"import runpy; runpy.run_path({str(script)!r})"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=script.parent,
        )
        assert "ModuleNotFoundError" not in result.stderr, result.stderr
