"""The granian option: same knobs, Procfile, nginx and resilience as gunicorn.

A `server=granian` project is rendered once; its own tests pass, it serves
through its Procfile and behind its nginx config, refuses to start without a
secret, respawns a killed worker, and finishes in-flight requests on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.chaos import chaos_copy, wait_for_workers, worker_pids
from tests.helpers.load import Load
from tests.helpers.project_env import project_environment, project_venv, run_project_tests
from tests.helpers.render import BASE_ANSWERS
from tests.helpers.servers import free_port, http_get, running, start, stop
from tests.helpers.stack import gunicorn_stack, nginx_stack
from tests.helpers.tools import require_tool

pytestmark = pytest.mark.boot

SECRET = "s" * 64
LAUNCH = ["python", "run_granian.py"]


@pytest.fixture(scope="module")
def project(copie_session: Any) -> Path:
    result = copie_session.copy(extra_answers={**BASE_ANSWERS, "server": "granian"})
    assert result.exit_code == 0, result.exception
    return Path(result.project_dir)


@pytest.fixture(scope="module")
def env(project: Path) -> Callable[..., dict[str, str]]:
    """Environments with the granian project's own venv (its pins differ)."""
    return partial(project_environment, project_venv(project))


def test_renders_granian_instead_of_gunicorn(project: Path) -> None:
    assert (project / "run_granian.py").exists()
    assert not (project / "gunicorn.conf.py").exists()
    assert "granian==" in (project / "requirements.txt").read_text()
    assert "gunicorn" not in (project / "requirements.txt").read_text()
    assert (project / "Procfile").read_text().startswith("web: python run_granian.py\n")
    unit = (project / "deploy/systemd/demo-shop.service").read_text()
    assert "GRANIAN_UDS=/run/demo-shop/granian.sock" in unit
    site = (project / "deploy/nginx/demo-shop.conf").read_text()
    assert "server unix:/run/demo-shop/granian.sock fail_timeout=0;" in site


def test_project_tests_pass(project: Path, env: Callable[..., dict[str, str]]) -> None:
    result = run_project_tests(project, env())
    assert result.returncode == 0, result.stdout + result.stderr


def test_procfile_serves_under_honcho_with_platform_knobs(
    project: Path, env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    port = free_port()
    envfile = tmp_path / "production.env"
    envfile.write_text(f"FLASK_SECRET_KEY={SECRET}\nHOST=127.0.0.1\nWEB_CONCURRENCY=3\n")
    command = [require_tool("honcho"), "-e", str(envfile), "start", "-p", str(port), "web"]
    with running(command, project, env(), tmp_path / "honcho.log", port) as server:
        assert http_get(port, "/healthz").body == b'{"status":"ok"}\n'
        assert b"<h1>Demo Shop</h1>" in http_get(port, "/").body
        deadline = time.monotonic() + 10
        while server.output().count("Started worker") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        log = server.output()
    assert log.count("Started worker") == 3, "WEB_CONCURRENCY sets the workers"
    assert f"Listening at: http://127.0.0.1:{port}" in log
    assert '"GET /healthz HTTP/1.1" 200' in log, "the access log is on"


def test_refuses_to_start_without_secret_in_one_line(
    project: Path, env: Callable[..., dict[str, str]]
) -> None:
    result = subprocess.run(
        LAUNCH, cwd=project, env=env(PORT=str(free_port())), capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [
        "FLASK_SECRET_KEY must be set: production refuses to start without it "
        "(set FLASK_DEBUG=1 for development)."
    ]
    assert "Starting granian" not in result.stdout, "it stops before granian starts"


def test_killed_worker_is_respawned_and_sigterm_finishes_in_flight(
    project: Path, env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    copy = chaos_copy(project, tmp_path / "app")
    settings = env(FLASK_SECRET_KEY=SECRET, WEB_CONCURRENCY="2")
    command = [*LAUNCH, "chaos_wsgi:app"]
    with gunicorn_stack(command, copy, settings, tmp_path / "logs") as stack:
        main = stack.master
        before = wait_for_workers(main, lambda pids: len(pids) == 2, "2 workers")
        # Serving, not only forked: each worker loads the app and says so.
        deadline = time.monotonic() + 20
        while stack.gunicorn.output().count("Started worker") < 2:
            assert time.monotonic() < deadline, stack.gunicorn.output()
            time.sleep(0.05)
        with Load(stack.port, clients=4, seconds=20) as load:
            load.wait_for(ok=50)
            os.kill(min(before), signal.SIGKILL)
            after = wait_for_workers(main, lambda p: len(p) == 2 and p != before, "a respawn")
            load.wait_for(ok=load.ok + 50)
            load.stop()
        assert min(before) not in after
        assert len(load.failed) <= 4, load.summary()

        # Three slow requests in flight, then SIGTERM to the main process.
        with ThreadPoolExecutor(3) as pool:
            slow = [
                pool.submit(http_get, stack.port, "/_chaos/sleep?s=2", timeout=20) for _ in range(3)
            ]
            time.sleep(0.5)
            os.kill(main, signal.SIGTERM)
            statuses = [future.result().status for future in slow]
        assert statuses == [200, 200, 200]
        assert stack.gunicorn.process.wait(timeout=30) == 0
        assert worker_pids(main) == set()


VERSIONED_WSGI = """\
from probe_version import VERSION
from wsgi import app


@app.get("/_probe/version")
def version():
    return VERSION
"""


def test_sighup_replaces_the_workers_with_new_code_one_at_a_time(
    project: Path, env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    """`systemctl reload` (the unit's ExecReload sends SIGHUP), as the generated
    README promises: new code served, and no request lost on the way."""
    copy = tmp_path / "app"
    shutil.copytree(project, copy)
    (copy / "probe_wsgi.py").write_text(VERSIONED_WSGI)
    (copy / "probe_version.py").write_text('VERSION = "v1"\n')
    port = free_port()
    settings = env(FLASK_SECRET_KEY=SECRET, WEB_CONCURRENCY="2", PORT=str(port))
    command = [*LAUNCH, "probe_wsgi:app"]
    with running(command, copy, settings, tmp_path / "granian.log", port) as server:
        assert http_get(port, "/_probe/version").body == b"v1"
        (copy / "probe_version.py").write_text('VERSION = "v2"\n')
        with Load(port, "/_probe/version", clients=4, seconds=60) as load:
            load.wait_for(ok=50)
            os.kill(server.process.pid, signal.SIGHUP)
            deadline = time.monotonic() + 40
            while server.output().count("Stopped old worker") < 2:
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.1)
            load.wait_for(ok=load.ok + 50)
        answers = {http_get(port, "/_probe/version").body for _ in range(20)}
    assert answers == {b"v2"}, "every worker runs the new code"
    assert load.failed == [], load.summary()


def test_sigterm_while_workers_start_stops_at_once(
    project: Path, env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    """SIGTERM as soon as granian spawns its workers, before they have loaded the
    app. Forked workers missed it and granian waited its kill timeout (30 s);
    run_granian.py starts them with "spawn", so they stop with the rest."""
    settings = env(FLASK_SECRET_KEY=SECRET, WEB_CONCURRENCY="2", PORT=str(free_port()))
    server = start(LAUNCH, project, settings, tmp_path / "granian.log")
    try:
        deadline = time.monotonic() + 30
        while "Spawning worker-2" not in server.output():
            assert server.process.poll() is None, server.output()
            assert time.monotonic() < deadline, f"no worker spawned:\n{server.output()}"
            time.sleep(0.005)
        sent = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        returncode = server.process.wait(timeout=40)
        stopped_in = time.monotonic() - sent
    finally:
        stop(server)
    log = server.output()
    assert returncode == 0, log
    assert "refused to gracefully stop" not in log, log
    assert stopped_in < 5, f"exited {stopped_in:.1f} s after SIGTERM:\n{log}"


def test_behind_nginx_on_a_unix_socket(
    project: Path, env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    settings = env(FLASK_SECRET_KEY=SECRET)
    with nginx_stack(LAUNCH, project, settings, tmp_path) as stack:
        headers = {"Host": stack.host or ""}
        assert http_get(stack.port, "/healthz", headers).status == 200
        static = http_get(stack.port, "/static/style.css?v=0123456789ab", headers)
        assert static.status == 200
        assert "max-age=31536000" in static.headers["cache-control"]
        assert "granian" not in static.headers.get("server", "")
        log = stack.gunicorn.output()
    assert "GET /healthz" in log
    assert "/static/style.css" not in log, "nginx serves static files itself"
