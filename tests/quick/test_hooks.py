"""The scripts Copier tasks run are idempotent and never overwrite the user's files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import REPO

WRITE_DOTENV = REPO / "hooks" / "write_dotenv.py"


def run_hook(cwd: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WRITE_DOTENV), *flags],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_write_dotenv_creates_once_and_then_keeps_it(tmp_path: Path) -> None:
    assert run_hook(tmp_path).returncode == 0
    written = (tmp_path / ".env").read_text()
    assert "FLASK_SECRET_KEY=" in written

    again = run_hook(tmp_path)
    assert again.returncode == 0
    assert "Kept" in again.stdout
    assert (tmp_path / ".env").read_text() == written


def test_write_dotenv_adds_a_database_password_when_asked(tmp_path: Path) -> None:
    plain, with_db = tmp_path / "plain", tmp_path / "db"
    plain.mkdir()
    with_db.mkdir()
    assert run_hook(plain).returncode == 0
    assert run_hook(with_db, "--postgres").returncode == 0
    assert "POSTGRES_PASSWORD" not in (plain / ".env").read_text()
    password = (with_db / ".env").read_text().split("POSTGRES_PASSWORD=")[1].strip()
    assert len(password) >= 32
    assert (with_db / ".env").stat().st_mode & 0o777 == 0o600


def test_write_dotenv_never_overwrites_the_users_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FLASK_SECRET_KEY=mine\n")
    assert run_hook(tmp_path).returncode == 0
    assert (tmp_path / ".env").read_text() == "FLASK_SECRET_KEY=mine\n"


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
