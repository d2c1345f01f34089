"""`chaos(stack, **settings)`: a copy of the default project with the /_chaos routes
(harness/apps/chaos_routes.py) under real gunicorn, production settings plus `settings`."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from harness.chaos import chaos_copy
from harness.serving import Served, serve
from harness.venvs import production_env

# 2 workers whatever the machine's CPUs; figures name what gunicorn resolved (Served.label).
GTHREAD = {"WEB_CONCURRENCY": "2"}
SYNC = {"WEB_CONCURRENCY": "2", "GUNICORN_WORKER_CLASS": "sync", "GUNICORN_THREADS": "1"}
# Each stack: behind the project's nginx config on a unix socket (as deployed on a host) or
# alone on a loopback port, and its workers.
STACKS = {"gthread": (False, GTHREAD), "sync": (False, SYNC), "nginx": (True, GTHREAD)}

Chaos = Callable[..., AbstractContextManager[Served]]


@pytest.fixture(scope="module")
def chaos(default_project: Path, venv_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Chaos:
    project = chaos_copy(default_project, tmp_path_factory.mktemp("chaos") / "project")

    def start(
        stack: str = "gthread", split_stderr: bool = False, **settings: str
    ) -> AbstractContextManager[Served]:
        nginx, workers = STACKS[stack]
        env = production_env(venv_bin, **workers | settings)
        logs, app = tmp_path_factory.mktemp("logs"), "chaos_wsgi:app"
        return serve(project, logs, env, app=app, behind_nginx=nginx, split_stderr=split_stderr)

    return start
