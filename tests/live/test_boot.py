"""Rendered projects really serve HTTP under real WSGI servers, on loopback, and
refuse to start, in one line, with a setting that would not work."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.chaos import APPS
from harness.http import LOOPBACK, free_port, http_get
from harness.processes import start, stop
from harness.procfile import serve_under_honcho
from harness.serving import Served, answers, serve, server_command
from harness.venvs import SECRET, production_env, project_venv, run_env
from harness.waiting import eventually

WAITRESS = ["waitress-serve", "--listen={host}:{port}", "wsgi:app"]
# The line each server writes for every worker it has started.
WORKER_STARTED = {"gunicorn": "Booting worker with pid", "granian": "Started worker"}
NO_SECRET = (
    "FLASK_SECRET_KEY must be set: production refuses to start without it "
    "(set FLASK_DEBUG=1 for development)."
)
# The settings a start must refuse (None: unset), and its one line (a regex).
REFUSALS = {
    "no-secret": ({"FLASK_SECRET_KEY": None}, re.escape(NO_SECRET)),
    "log-level": ({"LOG_LEVEL": "verbose"}, ".*use .*"),
    "log-format": ({"LOG_FORMAT": "xml"}, ".*use .*"),
}


def assert_serves(served: Served) -> None:
    health = served.get("/healthz")
    assert (health.status, health.body) == (200, b'{"status":"ok"}\n')
    assert health.headers["content-type"] == "application/json"
    index = served.get("/")
    assert index.status == 200 and "<h1>Demo Shop</h1>" in index.text


def test_the_launcher_serves_with_the_generated_config(probe_server: Served) -> None:
    assert_serves(probe_server)
    server = answers(probe_server.cwd)["server"]
    log = probe_server.wait_for_log(WORKER_STARTED[server], count=3, timeout=10)
    assert log.count(WORKER_STARTED[server]) == 3, "WEB_CONCURRENCY sets the workers"
    assert f"Listening at: http://{LOOPBACK}:{probe_server.port}" in log
    assert server != "gunicorn" or "Using worker: gthread" in log
    probe_server.wait_for_log('"GET /healthz HTTP/1.1" 200')  # the access log, on stdout


def test_procfile_web_process_serves_under_honcho(server_project: Path, tmp_path: Path) -> None:
    server = answers(server_project)["server"]
    env = run_env(project_venv(server_project))
    settings = {"FLASK_SECRET_KEY": SECRET, "WEB_CONCURRENCY": "3"}
    with serve_under_honcho(server_project, tmp_path, env, **settings) as served:
        assert_serves(served)
        log = served.wait_for_log(WORKER_STARTED[server], count=3, timeout=10)
        served.wait_for_log('"GET /healthz HTTP/1.1" 200')
    assert log.count(WORKER_STARTED[server]) == 3, "WEB_CONCURRENCY sets the workers"
    assert f"Listening at: http://{LOOPBACK}:{served.port}" in log


def test_gunicorn_binds_a_unix_socket_when_told(default_project: Path, tmp_path: Path) -> None:
    sock = tmp_path / "gunicorn.sock"
    env = production_env(project_venv(default_project), GUNICORN_BIND=f"unix:{sock}")
    server = start(server_command(default_project), default_project, env, tmp_path / "g.log")
    try:

        def answering() -> bool:
            server.assert_alive()
            return http_get(sock, "/healthz").status == 200

        eventually(answering, what=f"gunicorn answering on {sock}")
        assert "Listening at: unix:" in server.output()
        # Behind nginx (a unix socket) nginx keeps the access log; gunicorn's is off.
        assert "GET /healthz" not in server.output()
    finally:
        assert stop(server) == 0


def test_waitress_serves_the_same_app(default_project: Path, tmp_path: Path) -> None:
    port = free_port()
    command = [part.format(host=LOOPBACK, port=port) for part in WAITRESS]
    env = production_env(project_venv(default_project))
    with serve(default_project, tmp_path, env, command=command, port=port) as served:
        assert_serves(served)


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_a_bad_setting_stops_the_start_with_one_line(server_project: Path, refusal: str) -> None:
    unset, expected = REFUSALS[refusal]
    port = free_port()
    env = production_env(project_venv(server_project), PORT=str(port), HOST=LOOPBACK) | unset
    commands = [server_command(server_project)]
    if refusal == "no-secret" and answers(server_project)["server"] == "gunicorn":
        commands.append([part.format(host=LOOPBACK, port=port) for part in WAITRESS])
    for command in commands:
        result = subprocess.run(
            command,
            cwd=server_project,
            env={name: value for name, value in env.items() if value is not None},
            capture_output=True,
            text=True,
            timeout=30,
        )
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 4, output
        # The whole output, besides gunicorn's "Starting gunicorn": one line, on stderr.
        [line] = [line for line in output.splitlines() if "Starting gunicorn" not in line]
        assert re.fullmatch(expected, line) and result.stderr.strip().endswith(line), output
        # It stops before any worker starts (gunicorn's on_starting checks the app once).
        for late in ("Traceback", "Booting worker", "Spawning worker", "Starting granian"):
            assert late not in output, output


def test_python_wsgi_py_serves_nothing(default_project: Path) -> None:
    result = subprocess.run(
        ["python", str(APPS / "watch_listen.py")],
        cwd=default_project,
        env=production_env(project_venv(default_project)),
        capture_output=True,
        text=True,
        timeout=20,  # a server would block here until the timeout
    )
    assert result.returncode == 0, result.stderr
    assert "LISTENED []" in result.stdout


def test_sigterm_to_the_group_while_a_worker_boots_stops_at_once(
    default_project: Path, tmp_path: Path
) -> None:
    """honcho and container runtimes signal the whole process group; a worker that gets
    SIGTERM before its own handlers exist must not hold the stop for graceful_timeout."""
    env = production_env(
        project_venv(default_project),
        PORT=str(free_port()),
        HOST=LOOPBACK,
        WEB_CONCURRENCY="1",
        GUNICORN_GRACEFUL_TIMEOUT="30",
    )
    command = ["gunicorn", "-c", str(APPS / "slow_boot_gunicorn_conf.py"), "wsgi:app"]
    server = start(command, default_project, env, tmp_path / "gunicorn.log")
    try:
        server.wait_for_log("Booting worker")
        signalled = time.monotonic()
        os.killpg(server.pid, signal.SIGTERM)
        returncode = server.wait(15)
        took = time.monotonic() - signalled
    finally:
        stop(server)
    assert returncode == 0, server.output()
    assert took < 5, f"stopped {took:.1f} s after SIGTERM (graceful_timeout 30):\n{server.output()}"
