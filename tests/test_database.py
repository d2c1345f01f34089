"""The database option, against a real PostgreSQL server and a real SQLite file.

One rendered project per backend: its own tests run against the database,
the Procfile's release command migrates it, gunicorn serves the CRUD routes
over HTTP, and readiness follows the database going down and coming back.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.postgres import PostgresServer, remove_postgres, start_postgres
from tests.helpers.project_env import project_venv, run_project_tests
from tests.helpers.render import BASE_ANSWERS, RUNNING_PYTHON
from tests.helpers.servers import free_port, http_get, http_request, running

pytestmark = pytest.mark.boot

SECRET = "s" * 64


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    remove_postgres(server)


@pytest.fixture(scope="module")
def pg_project(copie_session: Any) -> Path:
    result = copie_session.copy(
        extra_answers={**BASE_ANSWERS, "python_version": RUNNING_PYTHON, "database": "postgresql"}
    )
    assert result.exit_code == 0, result.exception
    return Path(result.project_dir)


@pytest.fixture(scope="module")
def pg_env(
    pg_project: Path, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., dict[str, str]]:
    """A production environment for the PostgreSQL project, in its own venv
    (its pins differ from the default project's)."""
    bindir = project_venv(pg_project)

    def make(**extra: str) -> dict[str, str]:
        return {
            "PATH": f"{bindir}:/usr/bin:/bin",
            "HOME": str(tmp_path_factory.getbasetemp()),
            "PYTHONDONTWRITEBYTECODE": "1",
            "FLASK_SECRET_KEY": SECRET,
            "DATABASE_URL": postgres.url(),
            **extra,
        }

    return make


def run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        shlex.split(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def procfile_command(project: Path, process: str) -> str:
    for line in (project / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise AssertionError(f"no {process}: line in the Procfile")


def test_project_tests_pass_on_postgresql(
    pg_project: Path, pg_env: Callable[..., dict[str, str]], postgres: PostgresServer
) -> None:
    result = run_project_tests(pg_project, pg_env())
    assert result.returncode == 0, result.stdout + result.stderr
    # The fixture migrated the real server up and back down to base.
    assert postgres.psql("SELECT to_regclass('items') IS NULL") == "t\n"


def test_release_migrates_once_and_downgrade_works(
    pg_project: Path, pg_env: Callable[..., dict[str, str]], postgres: PostgresServer
) -> None:
    release = procfile_command(pg_project, "release")
    assert release == "flask db upgrade"

    first = run(release, pg_project, pg_env())
    assert first.returncode == 0, first.stderr
    assert "Running upgrade  -> 0001" in first.stderr
    assert postgres.psql("SELECT version_num FROM alembic_version") == "0001\n"

    again = run(release, pg_project, pg_env())
    assert again.returncode == 0, again.stderr
    assert "Running upgrade" not in again.stderr, "a second upgrade is a no-op"

    down = run("flask db downgrade base", pg_project, pg_env())
    assert down.returncode == 0, down.stderr
    assert postgres.psql("SELECT to_regclass('items') IS NULL") == "t\n"
    assert run(release, pg_project, pg_env()).returncode == 0


def test_crud_over_http_and_readiness_follows_the_database(
    pg_project: Path,
    pg_env: Callable[..., dict[str, str]],
    postgres: PostgresServer,
    tmp_path: Path,
) -> None:
    assert run(procfile_command(pg_project, "release"), pg_project, pg_env()).returncode == 0
    port = free_port()
    env = pg_env(PORT=str(port), HOST="127.0.0.1", WEB_CONCURRENCY="2")
    command = shlex.split(procfile_command(pg_project, "web"))
    with running(command, pg_project, env, tmp_path / "gunicorn.log", port) as server:
        exercise_crud(port)
        assert http_get(port, "/readyz").status == 200

        postgres.stop()
        try:
            down = http_get(port, "/readyz", timeout=10)
            assert down.status == 503
            assert json.loads(down.body)["database"] == "unreachable"
            assert http_get(port, "/healthz").status == 200, "liveness ignores the database"
        finally:
            postgres.start()

        # pool_pre_ping swaps the dead pooled connections for new ones.
        deadline = time.monotonic() + 10
        while http_get(port, "/readyz").status != 200:
            assert time.monotonic() < deadline, "readiness did not recover within 10 s"
            time.sleep(0.2)
        exercise_crud(port)
        log = server.output()
    assert len(re.findall("Booting worker", log)) == 2, "no worker crashed or restarted"
    assert "readiness check failed: OperationalError" in log


def exercise_crud(port: int) -> None:
    headers = {"Content-Type": "application/json"}
    created = http_request(port, "POST", "/items", json.dumps({"name": "lamp"}).encode(), headers)
    assert created.status == 201, created.body
    item = json.loads(created.body)
    assert created.headers["location"] == f"/items/{item['id']}"
    assert json.loads(http_get(port, f"/items/{item['id']}").body) == item
    assert item in json.loads(http_get(port, "/items").body)["items"]
    assert http_request(port, "DELETE", f"/items/{item['id']}").status == 204
    assert http_get(port, f"/items/{item['id']}").status == 404
    bad = http_request(port, "POST", "/items", b'{"name": ""}', headers)
    assert bad.status == 400


def test_sqlite_project_migrates_and_serves(
    copie: Any, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    result = copie.copy(extra_answers={**BASE_ANSWERS, "database": "sqlite"})
    assert result.exit_code == 0, result.exception
    project = Path(result.project_dir)
    bindir = project_venv(project)
    env = run_env(FLASK_SECRET_KEY=SECRET, PATH=f"{bindir}:/usr/bin:/bin")

    tests = run_project_tests(project, env)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    release = run(procfile_command(project, "release"), project, env)
    assert release.returncode == 0, release.stderr
    assert (project / "instance" / "app.sqlite3").exists()

    port = free_port()
    command = shlex.split(procfile_command(project, "web"))
    server_env = {**env, "PORT": str(port), "HOST": "127.0.0.1"}
    with running(command, project, server_env, tmp_path / "gunicorn.log", port):
        exercise_crud(port)
        assert http_get(port, "/readyz").status == 200
