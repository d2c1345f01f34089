"""What a new user is told to type works as printed (issue "Every command a user is told
to type works as printed"): each failure the issue lists, proved fixed, on live servers.

The README's own lines run literally in a clean environment (harness/readme.py): no
`python` on PATH, an empty HOME, uv as the README says to install it. The static checks
are in tests/quick/test_user_path_static.py, the update script's messages in
tests/update/test_update_workflow.py, the fresh clone's compose settings in
tests/container/test_container.py.
"""

from __future__ import annotations

import re
import shlex
import sqlite3
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from harness.http import free_port
from harness.readme import (
    copy_as_user,
    create_item,
    readme_blocks,
    run_line,
    run_lines,
    section,
    serving,
    user_bin,
    user_environment,
)
from harness.serving import serve, server_command
from harness.tools import require_tool
from harness.venvs import production_env, project_venv

# ---- the Develop block, the reload command, the production block, honcho -------------


class User(NamedTuple):
    project: Path
    env: dict[str, str]  # the user's shell
    readme: str


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> User:
    """A SQLite project as a user has it after the Develop block's `uv sync`."""
    root = tmp_path_factory.mktemp("user")
    project = root / "shop"
    copy_as_user(project, database="sqlite")
    env = user_environment(root / "home", user_bin(root / "bin", ["uv"]))
    run_lines(["uv sync"], project, env, "[sqlite] Develop")
    return User(project, env, (project / "README.md").read_text())


def test_the_develop_block_leaves_a_working_items_api(user: User, tmp_path: Path) -> None:
    project, env, readme = user
    lines = section(readme, "Develop").lines()
    flask_run = next(line for line in lines if "flask run" in line)
    # Everything before the server, as printed (the migration step among them).
    run_lines(lines[: lines.index(flask_run)], project, env, "[sqlite] Develop")
    with serving(flask_run, project, env, tmp_path) as server:
        assert server.get("/items").status == 200
        created = create_item(server)
        assert created.status == 201, created.body
        assert server.get("/readyz").status == 200


def test_the_reload_command_reads_dotenv(user: User, tmp_path: Path) -> None:
    project, env, readme = user
    command = re.search(r"`(GUNICORN_RELOAD=1 [^`]+)`", readme.replace("\n", " "))
    assert command, "the README's reload command"
    assert "--env-file .env" in command[1]
    with serving(command[1], project, env, tmp_path) as server:
        assert server.get("/healthz").status == 200
    assert "must be set" not in server.output()


def test_the_production_block_runs_without_python_on_path(user: User, tmp_path: Path) -> None:
    """Debian and Ubuntu have python3 and no `python`: the key is made with python3."""
    project, env, readme = user
    assert run_line("command -v python", project, env).returncode != 0, "no python here"
    make_key, _, server = section(readme, "Run in production").lines()
    assert "python3 -c" in make_key
    # The export and the server in one shell, as a terminal runs them.
    with serving(f"{make_key} && {server}", project, env, tmp_path) as served:
        assert served.get("/healthz").status == 200


def test_the_local_procfile_run_serves(user: User, tmp_path: Path) -> None:
    """`honcho start` alone stops `web` once `release` ends: the README runs them in order."""
    project, env, readme = user
    block = next(b for b in readme_blocks(readme) if "honcho" in b.text)
    release, web = block.lines()
    assert "honcho start release" in release and "honcho start web" in web
    (project / "instance" / "app.sqlite3").unlink(missing_ok=True)
    run_lines([release], project, env, "[sqlite] Procfile")
    with serving(web, project, env, tmp_path) as server:
        assert server.get("/items").status == 200


# ---- readiness, secrets, the SQLite folder, alembic's lines (production) -------------


@pytest.fixture(scope="module")
def sqlite_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    project = tmp_path_factory.mktemp("prod") / "shop"
    copy_as_user(project, database="sqlite")
    return project, project_venv(project)


def test_readiness_waits_for_the_migrations_and_alembic_keeps_quiet(
    sqlite_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    project, bindir = sqlite_venv
    database = tmp_path / "app.sqlite3"
    env = production_env(bindir, DATABASE_URL=f"sqlite:///{database}", LOG_LEVEL="info")
    with serve(project, tmp_path, env) as server:
        pending = server.get("/readyz")
        assert pending.status == 503 and b"migrations pending" in pending.body
        migrate = subprocess.run(
            [str(bindir / "flask"), "db", "upgrade"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert migrate.returncode == 0, migrate.stderr
        assert server.get("/readyz").status == 200
        # Newer code migrated the database further (a rolling deploy): still ready.
        with sqlite3.connect(database) as connection:
            connection.execute("UPDATE alembic_version SET version_num = 'from_newer_code'")
        assert server.get("/readyz").status == 200
    assert "setup plugin" not in server.output()
    assert "Context impl" not in server.output()


def start_and_fail(project: Path, env: dict[str, str], command: list[str]) -> tuple[int, str]:
    """The exit code and output of a server that must not start."""
    result = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=60
    )
    return result.returncode, (result.stdout + result.stderr).strip()


@pytest.mark.parametrize("secret", ["...", "x" * 31])
def test_production_refuses_a_weak_secret(sqlite_venv: tuple[Path, Path], secret: str) -> None:
    project, bindir = sqlite_venv
    env = production_env(bindir, FLASK_SECRET_KEY=secret, PORT=str(free_port()), HOST="127.0.0.1")
    code, output = start_and_fail(project, env, server_command(project))
    assert code == 4, output
    refusal = [line for line in output.splitlines() if "FLASK_SECRET_KEY" in line]
    assert len(refusal) == 1 and "too short" in refusal[0] and "python3 -c" in refusal[0], output
    assert "Traceback" not in output


def test_an_unwritable_database_folder_stops_the_app_in_one_line(
    sqlite_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    """As under systemd's ProtectSystem=strict: the folder is a read-only mount."""
    project, bindir = sqlite_venv
    unshare = require_tool("unshare")
    folder = tmp_path / "read-only"
    folder.mkdir()
    env = production_env(
        bindir,
        PORT=str(free_port()),
        HOST="127.0.0.1",
        DATABASE_URL=f"sqlite:///{folder}/app.sqlite3",
    )
    script = f"mount --bind -o ro {folder} {folder} && exec {shlex.join(server_command(project))}"
    code, output = start_and_fail(project, env, [unshare, "-m", "bash", "-c", script])
    if "mount:" in output and code != 4:
        pytest.skip(f"no private mounts here: {output}")
    assert code == 4, output
    assert "cannot be written" in output and "Read-only file system" in output, output
    assert "Traceback" not in output and "PermissionError" not in output
