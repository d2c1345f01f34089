"""The development paths the README promises: `flask run --debug` and gunicorn with reload."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.http import LOOPBACK, free_port, http_get
from harness.serving import serve
from harness.venvs import SECRET
from harness.waiting import eventually


def test_flask_run_debug_reads_dotenv(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    # No FLASK_* variables given: debug mode and the secret come from the .env
    # copier wrote, through python-dotenv, as in the README.
    port = free_port()
    command = ["flask", "run", "--debug", "--host", LOOPBACK, "--port", str(port)]
    with serve(default_project, tmp_path, run_env(), command=command, port=port) as served:
        assert served.get("/healthz").status == 200
        # The startup banner says debug mode (reloader, debugger) came from .env.
        assert "Debug mode: on" in served.output()
    with pytest.raises(OSError):
        http_get(port, "/healthz", timeout=1)  # stopped, reloader child included


def test_gunicorn_reload_picks_up_code_changes(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(default_project, project)
    env = run_env(FLASK_SECRET_KEY=SECRET, GUNICORN_RELOAD="1")
    with serve(project, tmp_path / "logs", env) as served:
        assert served.get("/healthz").body == b'{"status":"ok"}\n'
        health = project / "demo_shop" / "health.py"
        health.write_text(health.read_text().replace('"status": "ok"', '"status": "reloaded"'))
        eventually(
            lambda: b"reloaded" in served.get("/healthz").body,
            what="gunicorn serving the changed module",
            interval=0.2,
        )
