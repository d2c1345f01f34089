"""Rendered projects really serve HTTP under real WSGI servers, on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.chaos import APPS
from harness.http import LOOPBACK, free_port, http_get
from harness.processes import start, stop
from harness.procfile import serve_under_honcho
from harness.serving import Served, serve, server_command
from harness.venvs import SECRET
from harness.waiting import eventually

REFUSAL = "FLASK_SECRET_KEY must be set: production refuses to start without it"


def assert_serves(served: Served, project_name: str = "Demo Shop") -> None:
    health = served.get("/healthz")
    assert health.status == 200
    assert health.headers["content-type"] == "application/json"
    assert json.loads(health.body) == {"status": "ok"}
    index = served.get("/")
    assert index.status == 200
    assert f"<h1>{project_name}</h1>" in index.text


def test_gunicorn_serves_with_the_generated_config(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = run_env(FLASK_SECRET_KEY=SECRET, WEB_CONCURRENCY="3")
    with serve(default_project, tmp_path, env) as served:
        assert_serves(served)
        served.wait_for_log("Booting worker with pid", count=3, timeout=10)
        assert served.stop() == 0, "SIGTERM is a clean, graceful stop"
        log = served.output()
    assert "Using worker: gthread" in log
    assert log.count("Booting worker with pid") == 3, "WEB_CONCURRENCY sets workers"
    assert '"GET /healthz HTTP/1.1" 200' in log, "the access log goes to stdout"
    assert f"Listening at: http://{LOOPBACK}:{served.port}" in log


def test_gunicorn_binds_a_unix_socket_when_told(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    sock = tmp_path / "gunicorn.sock"
    env = run_env(FLASK_SECRET_KEY=SECRET, GUNICORN_BIND=f"unix:{sock}")
    server = start(server_command(default_project), default_project, env, tmp_path / "g.log")
    try:

        def answers() -> bool:
            server.assert_alive()
            return http_get(sock, "/healthz").status == 200

        eventually(answers, what=f"gunicorn answering on {sock}")
        assert "Listening at: unix:" in server.output()
        # Behind nginx (a unix socket) nginx keeps the access log; gunicorn's is off.
        assert "GET /healthz" not in server.output()
    finally:
        assert stop(server) == 0


def test_procfile_web_process_serves_under_honcho(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    with serve_under_honcho(
        default_project, tmp_path, run_env(), FLASK_SECRET_KEY=SECRET, WEB_CONCURRENCY="3"
    ) as served:
        assert_serves(served)
        served.wait_for_log("Booting worker with pid", count=3, timeout=10)
    assert "gunicorn" in served.output()


def test_waitress_serves_the_same_app(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    port = free_port()
    command = ["waitress-serve", f"--listen={LOOPBACK}:{port}", "wsgi:app"]
    env = run_env(FLASK_SECRET_KEY=SECRET)
    with serve(default_project, tmp_path, env, command=command, port=port) as served:
        assert_serves(served)


@pytest.mark.parametrize("server", ["gunicorn", "waitress"])
def test_production_without_secret_refuses_with_one_line(
    default_project: Path, run_env: Callable[..., dict[str, str]], server: str
) -> None:
    port = free_port()
    command = server_command(default_project)
    if server == "waitress":
        command = ["waitress-serve", f"--listen={LOOPBACK}:{port}", "wsgi:app"]
    result = subprocess.run(
        command,
        cwd=default_project,
        env=run_env(PORT=str(port), HOST=LOOPBACK),
        capture_output=True,
        text=True,
        timeout=20,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 4, output
    lines = [line for line in output.splitlines() if REFUSAL in line]
    assert len(lines) == 1 and lines[0].startswith("FLASK_SECRET_KEY"), output
    assert "Traceback" not in output
    if server == "waitress":
        assert result.stderr.strip().splitlines() == lines, "the whole of stderr: one line"
    else:
        # on_starting checked the app once, before any worker.
        assert "Booting worker" not in output


def test_python_wsgi_py_serves_nothing(
    default_project: Path, run_env: Callable[..., dict[str, str]]
) -> None:
    result = subprocess.run(
        ["python", str(APPS / "watch_listen.py")],
        cwd=default_project,
        env=run_env(FLASK_SECRET_KEY=SECRET),
        capture_output=True,
        text=True,
        timeout=20,  # a server would block here until the timeout
    )
    assert result.returncode == 0, result.stderr
    assert "LISTENED []" in result.stdout


def test_sigterm_to_the_group_while_a_worker_boots_stops_at_once(
    default_project: Path, run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    """honcho and container runtimes signal the whole process group; a worker that gets
    SIGTERM before its own handlers exist must not hold the stop for graceful_timeout."""
    env = run_env(
        FLASK_SECRET_KEY=SECRET,
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
