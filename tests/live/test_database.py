"""The database option, against a real PostgreSQL server and a real SQLite file.

One rendered project per backend: its own tests run against the database,
the Procfile's release command migrates it, gunicorn serves the CRUD routes
over HTTP, and readiness follows the database going down and coming back.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from harness.postgres import PostgresServer, remove_postgres, start_postgres
from harness.procfile import procfile_command
from harness.render import render
from harness.serving import Served, serve
from harness.venvs import BEARER, production_env, project_venv, run_project_tests
from harness.waiting import eventually


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    remove_postgres(server)


@pytest.fixture(scope="module")
def pg_project(copie_session: Any) -> Path:
    return render(copie_session, database="postgresql")


@pytest.fixture(scope="module")
def pg_env(pg_project: Path, postgres: PostgresServer) -> Callable[..., dict[str, str]]:
    """A production environment for the PostgreSQL project, in its own venv
    (its pins differ from the default project's)."""
    return partial(production_env, project_venv(pg_project), DATABASE_URL=postgres.url())


def run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        shlex.split(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def serve_procfile_web(
    project: Path, work: Path, env: dict[str, str]
) -> AbstractContextManager[Served]:
    """The Procfile's web process, as a platform runs it."""
    command = shlex.split(procfile_command(project, "web"))
    return serve(project, work, env, command=command)


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
    with serve_procfile_web(pg_project, tmp_path, pg_env(WEB_CONCURRENCY="2")) as served:
        exercise_crud(served)
        assert served.get("/readyz").status == 200

        postgres.stop()
        try:
            down = served.get("/readyz", timeout=10)
            assert down.status == 503
            assert json.loads(down.body)["database"] == "unreachable"
            assert served.get("/healthz").status == 200, "liveness ignores the database"
        finally:
            postgres.start()

        # pool_pre_ping swaps the dead pooled connections for new ones.
        eventually(
            lambda: served.get("/readyz").status == 200,
            10,
            what="readiness after the database came back",
            interval=0.2,
        )
        exercise_crud(served)
        log = served.output()
    assert log.count("Booting worker") == 2, "no worker crashed or restarted"
    assert "readiness check failed: OperationalError" in log


def exercise_crud(served: Served) -> None:
    headers = {"Content-Type": "application/json", **BEARER}
    created = served.request("POST", "/items", json.dumps({"name": "lamp"}).encode(), headers)
    assert created.status == 201, created.body
    item = json.loads(created.body)
    assert created.headers["location"] == f"/items/{item['id']}"
    assert json.loads(served.get(f"/items/{item['id']}").body) == item
    assert item in json.loads(served.get("/items").body)["items"]
    assert served.request("DELETE", f"/items/{item['id']}", headers=BEARER).status == 204
    assert served.get(f"/items/{item['id']}").status == 404
    assert served.request("POST", "/items", b'{"name": ""}', headers).status == 400


def test_sqlite_project_migrates_and_serves(copie: Any, tmp_path: Path) -> None:
    project = render(copie, database="sqlite")
    env = production_env(project_venv(project))

    tests = run_project_tests(project, env)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    release = run(procfile_command(project, "release"), project, env)
    assert release.returncode == 0, release.stderr
    assert (project / "instance" / "app.sqlite3").exists()

    with serve_procfile_web(project, tmp_path, env) as served:
        exercise_crud(served)
        assert served.get("/readyz").status == 200
