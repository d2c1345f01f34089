"""Projects and servers that several files of tests/live/ share, made once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.chaos import probe_copy
from harness.render import render
from harness.serving import Served, serve
from harness.venvs import production_env, project_venv


@pytest.fixture(scope="session")
def granian_project(copie_session: Any) -> Path:
    return render(copie_session, server="granian")


@pytest.fixture(
    scope="session", params=["default_project", "granian_project"], ids=["gunicorn", "granian"]
)
def server_project(request: pytest.FixtureRequest) -> Path:
    """The project rendered for each server: the defaults (gunicorn), then granian."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def probe_project(server_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return probe_copy(server_project, tmp_path_factory.mktemp("probe") / "project")


@pytest.fixture(scope="session")
def probe_server(probe_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """harness/apps/probe_wsgi.py under the project's own launcher, in production,
    with three workers (not the default) and uploads capped at 1000 bytes."""
    settings = {"WEB_CONCURRENCY": "3", "FLASK_MAX_CONTENT_LENGTH": "1000"}
    env = production_env(project_venv(probe_project), **settings)
    with serve(
        probe_project, tmp_path_factory.mktemp("served"), env, app="probe_wsgi:app"
    ) as served:
        yield served
        assert served.stop() == 0, f"SIGTERM is a clean, graceful stop:\n{served.output()}"
