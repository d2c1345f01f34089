"""The development paths the README promises: `flask run --debug` and gunicorn with reload."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.servers import free_port, http_get, running

pytestmark = pytest.mark.boot


def test_flask_run_debug_reads_dotenv(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    # No FLASK_* variables given: debug mode and the secret come from the .env
    # copier wrote, through python-dotenv, as in the README.
    port = free_port()
    command = ["flask", "run", "--debug", "--host", "127.0.0.1", "--port", str(port)]
    with running(command, default_project, run_env(), tmp_path / "flask.log", port) as server:
        assert http_get(port, "/healthz").status == 200
        # The startup banner says debug mode (reloader, debugger) came from .env.
        assert "Debug mode: on" in server.output()
    with pytest.raises(OSError):
        http_get(port, "/healthz", timeout=1)  # stopped, reloader child included


def test_gunicorn_reload_picks_up_code_changes(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(default_project, project)
    port = free_port()
    env = run_env(FLASK_SECRET_KEY="s" * 64, PORT=str(port), HOST="127.0.0.1", GUNICORN_RELOAD="1")
    command = ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    with running(command, project, env, tmp_path / "gunicorn.log", port):
        assert http_get(port, "/healthz").body == b'{"status":"ok"}\n'
        health = project / "demo_shop" / "health.py"
        health.write_text(health.read_text().replace('"status": "ok"', '"status": "reloaded"'))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if b"reloaded" in http_get(port, "/healthz").body:
                break
            time.sleep(0.2)
        else:
            pytest.fail("gunicorn did not reload the changed module within 20 s")
