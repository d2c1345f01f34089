"""Rendered projects really serve HTTP under real WSGI servers, on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.servers import free_port, http_get, running, start, stop, unix_http_get
from tests.helpers.tools import require_tool

pytestmark = pytest.mark.boot

SECRET = "s" * 64
GUNICORN = ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]


def assert_serves(port: int, project_name: str = "Demo Shop") -> None:
    health = http_get(port, "/healthz")
    assert health.status == 200
    assert health.headers["content-type"] == "application/json"
    assert json.loads(health.body) == {"status": "ok"}
    index = http_get(port, "/")
    assert index.status == 200
    assert f"<h1>{project_name}</h1>".encode() in index.body


def test_gunicorn_serves_with_the_generated_config(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    port = free_port()
    env = run_env(FLASK_SECRET_KEY=SECRET, PORT=str(port), HOST="127.0.0.1", WEB_CONCURRENCY="3")
    with running(GUNICORN, default_project, env, tmp_path / "gunicorn.log", port) as server:
        assert_serves(port)
        # Workers boot one after another: give the last one a moment.
        deadline = time.monotonic() + 10
        while server.output().count("Booting worker") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        log = server.output()
    assert server.process.returncode == 0, "SIGTERM is a clean, graceful stop"
    assert "Using worker: gthread" in log
    assert len(re.findall(r"Booting worker with pid", log)) == 3, "WEB_CONCURRENCY sets workers"
    assert '"GET /healthz HTTP/1.1" 200' in log, "the access log goes to stdout"
    assert f"Listening at: http://127.0.0.1:{port}" in log


def test_gunicorn_binds_a_unix_socket_when_told(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    sock = tmp_path / "gunicorn.sock"
    env = run_env(FLASK_SECRET_KEY=SECRET, GUNICORN_BIND=f"unix:{sock}")
    server = start(GUNICORN, default_project, env, tmp_path / "gunicorn.log")
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline and server.process.poll() is None:
            time.sleep(0.1)
        assert unix_http_get(sock, "/healthz").status == 200
        assert "Listening at: unix:" in server.output()
        # Behind nginx (a unix socket) nginx keeps the access log; gunicorn's is off.
        assert "GET /healthz" not in server.output()
    finally:
        assert stop(server) == 0


def test_procfile_web_process_serves_under_honcho(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    port = free_port()
    # honcho reads .env by default: give it the production settings instead.
    envfile = tmp_path / "production.env"
    envfile.write_text(f"FLASK_SECRET_KEY={SECRET}\nHOST=127.0.0.1\n")
    honcho = require_tool("honcho")
    command = [honcho, "-e", str(envfile), "start", "-p", str(port), "web"]
    with running(command, default_project, run_env(), tmp_path / "honcho.log", port) as server:
        assert_serves(port)
    assert "gunicorn" in server.output()


def test_waitress_serves_the_same_app(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    port = free_port()
    command = ["waitress-serve", f"--listen=127.0.0.1:{port}", "wsgi:app"]
    env = run_env(FLASK_SECRET_KEY=SECRET)
    with running(command, default_project, env, tmp_path / "waitress.log", port):
        assert_serves(port)


def test_production_without_secret_refuses_to_start(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    port = free_port()
    env = run_env(PORT=str(port), HOST="127.0.0.1")
    server = start(GUNICORN, default_project, env, tmp_path / "gunicorn.log")
    try:
        returncode = server.process.wait(timeout=20)
    finally:
        stop(server)
    output = server.output()
    assert returncode == 4, output
    reason = "FLASK_SECRET_KEY must be set: production refuses to start without it"
    lines = [line for line in output.splitlines() if reason in line]
    assert len(lines) == 1 and lines[0].startswith("FLASK_SECRET_KEY"), output
    # on_starting checked the app once, before any worker: no worker, no traceback.
    assert "Booting worker" not in output
    assert "Traceback" not in output


def test_waitress_without_secret_refuses_with_one_line(
    default_project: Path, run_env: Callable[..., dict[str, str]]
) -> None:
    result = subprocess.run(
        ["waitress-serve", f"--listen=127.0.0.1:{free_port()}", "wsgi:app"],
        cwd=default_project,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 4, result.stderr
    # The whole of stderr: one line, no traceback above it.
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("FLASK_SECRET_KEY must be set"), result.stderr


# Runs wsgi.py as a script and reports every socket it tried to listen on.
RUN_WSGI_AND_WATCH_SOCKETS = """
import runpy, socket
listened = []
real_listen = socket.socket.listen
def spy(self, *args):
    listened.append(self.getsockname())
    return real_listen(self, *args)
socket.socket.listen = spy
runpy.run_path("wsgi.py", run_name="__main__")
print("LISTENED", listened)
"""


def test_python_wsgi_py_serves_nothing(
    default_project: Path, run_env: Callable[..., dict[str, str]]
) -> None:
    result = subprocess.run(
        ["python", "-c", RUN_WSGI_AND_WATCH_SOCKETS],
        cwd=default_project,
        env=run_env(FLASK_SECRET_KEY=SECRET),
        capture_output=True,
        text=True,
        timeout=20,  # a server would block here until the timeout
    )
    assert result.returncode == 0, result.stderr
    assert "LISTENED []" in result.stdout


SLOW_BOOT_CONFIG = """
import runpy
import time

globals().update(runpy.run_path("gunicorn.conf.py"))
_generated_post_fork = post_fork


def post_fork(server, worker):
    time.sleep(2)  # widen the moment before gunicorn installs the worker's handlers
    _generated_post_fork(server, worker)
"""


def test_sigterm_to_the_group_while_a_worker_boots_stops_at_once(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    """honcho and container runtimes signal the whole process group; a worker that gets
    SIGTERM before its own handlers exist must not hold the stop for graceful_timeout."""
    config = tmp_path / "slow_boot.conf.py"
    config.write_text(SLOW_BOOT_CONFIG)
    port = free_port()
    env = run_env(
        FLASK_SECRET_KEY=SECRET, PORT=str(port), WEB_CONCURRENCY="1", GUNICORN_GRACEFUL_TIMEOUT="30"
    )
    command = ["gunicorn", "-c", str(config), "wsgi:app"]
    server = start(command, default_project, env, tmp_path / "gunicorn.log")
    try:
        deadline = time.monotonic() + 20
        while "Booting worker" not in server.output() and time.monotonic() < deadline:
            assert server.process.poll() is None, server.output()
            time.sleep(0.05)
        assert "Booting worker" in server.output(), server.output()
        signalled = time.monotonic()
        os.killpg(server.pid, signal.SIGTERM)
        returncode = server.process.wait(15)
        took = time.monotonic() - signalled
    finally:
        stop(server)
    assert returncode == 0, server.output()
    assert took < 5, f"stopped {took:.1f} s after SIGTERM (graceful_timeout 30):\n{server.output()}"
