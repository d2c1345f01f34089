"""The scripts Copier tasks run are idempotent and never overwrite the user's files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import REPO


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
