"""The database option against a real PostgreSQL server and a real SQLite file: the
project's own tests, the Procfile's release command, the CRUD routes served from the
Procfile's web command, and readiness following the database down and back."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.postgres import remove_postgres, start_postgres
from harness.procfile import procfile_command
from harness.render import render
from harness.serving import Served, serve
from harness.venvs import BEARER, production_env, project_venv, run_project_tests
from harness.waiting import eventually


def run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        shlex.split(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


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


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_tests_release_crud_and_readiness(database: str, copie: Any, tmp_path: Path) -> None:
    project = render(copie, database=database)
    postgres = start_postgres() if database == "postgresql" else None
    try:
        # Its own venv: its pins differ from the default project's.
        url = {"DATABASE_URL": postgres.url()} if postgres else {}
        env = production_env(project_venv(project), **url)
        result = run_project_tests(project, env)
        assert result.returncode == 0, result.stdout + result.stderr
        # The fixture migrated the real server up and back down to base.
        assert not postgres or postgres.psql("SELECT to_regclass('items') IS NULL") == "t\n"

        release = procfile_command(project, "release")
        assert release == "flask db upgrade"
        first = run(release, project, env)
        assert first.returncode == 0, first.stderr
        assert "Running upgrade  -> 0001" in first.stderr
        if postgres:
            assert postgres.psql("SELECT version_num FROM alembic_version") == "0001\n"
        else:
            assert (project / "instance" / "app.sqlite3").exists()
        again = run(release, project, env)
        assert again.returncode == 0, again.stderr
        assert "Running upgrade" not in again.stderr, "a second upgrade is a no-op"
        down = run("flask db downgrade base", project, env)
        assert down.returncode == 0, down.stderr
        assert not postgres or postgres.psql("SELECT to_regclass('items') IS NULL") == "t\n"
        assert run(release, project, env).returncode == 0

        # The Procfile's web process, as a platform runs it.
        web = shlex.split(procfile_command(project, "web"))
        with serve(project, tmp_path, env | {"WEB_CONCURRENCY": "2"}, command=web) as served:
            exercise_crud(served)
            assert served.get("/readyz").status == 200
            if postgres is None:
                return
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
    finally:
        if postgres:
            remove_postgres(postgres)
