"""The granian option: same knobs, Procfile, nginx and resilience as gunicorn.

Its Procfile, one-line refusals, logs and errors are tested with gunicorn's
(`server_project` in test_boot.py and test_logs_and_errors.py); here, what only
granian does: its own tests pass, it serves behind its nginx config, respawns a
killed worker, finishes in-flight requests on SIGTERM and reloads on SIGHUP.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.chaos import chaos_copy, copy_with_apps, wait_for_workers, worker_pids
from harness.http import free_port
from harness.processes import start, stop
from harness.serving import serve, server_command
from harness.venvs import production_env, project_venv, run_env, run_project_tests
from harness.waiting import eventually


def env(project: Path, **settings: str) -> dict[str, str]:
    """The granian project's own venv (its pins differ), in production."""
    return production_env(project_venv(project), **settings)


def test_renders_granian_instead_of_gunicorn_and_its_tests_pass(granian_project: Path) -> None:
    project = granian_project
    assert server_command(project) == ["python", "run_granian.py"]
    assert (project / "run_granian.py").exists()
    assert not (project / "gunicorn.conf.py").exists()
    assert "granian==" in (project / "requirements.txt").read_text()
    assert "gunicorn" not in (project / "requirements.txt").read_text()
    assert (project / "Procfile").read_text().startswith("web: python run_granian.py\n")
    unit = (project / "deploy/systemd/demo-shop.service").read_text()
    assert "GRANIAN_UDS=/run/demo-shop/granian.sock" in unit
    site = (project / "deploy/nginx/demo-shop.conf").read_text()
    assert "server unix:/run/demo-shop/granian.sock fail_timeout=0;" in site
    result = run_project_tests(project, run_env(project_venv(project)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_killed_worker_is_respawned_and_sigterm_finishes_in_flight(
    granian_project: Path, tmp_path: Path
) -> None:
    copy = chaos_copy(granian_project, tmp_path / "app")
    marks = tmp_path / "marks"  # a file for each /_chaos/sleep request as it starts
    marks.mkdir()
    settings = env(copy, WEB_CONCURRENCY="2", CHAOS_MARKS=str(marks))
    with serve(copy, tmp_path / "logs", settings, app="chaos_wsgi:app") as granian:
        before = granian.workers(2)
        # Serving, not only forked: each worker loads the app and says so.
        granian.wait_for_log("Started worker", count=2)
        with granian.load(clients=4, seconds=20) as load:
            load.wait_for(ok=50)
            os.kill(min(before), signal.SIGKILL)
            after = wait_for_workers(granian.pid, lambda p: len(p) == 2 and p != before, "respawn")
            load.wait_for(ok=load.ok + 50)
            load.stop()
        assert min(before) not in after
        assert len(load.failed) <= 4, load.summary()

        # Three slow requests in flight, then SIGTERM to the main process.
        with ThreadPoolExecutor(3) as pool:
            slow = [pool.submit(granian.get, "/_chaos/sleep?s=2", timeout=20) for _ in range(3)]
            eventually(lambda: len(list(marks.iterdir())) == 3, what="3 requests in flight")
            os.kill(granian.pid, signal.SIGTERM)
            statuses = [future.result().status for future in slow]
        assert statuses == [200, 200, 200]
        assert granian.process.wait(timeout=30) == 0
        assert worker_pids(granian.pid) == set()


def test_sighup_replaces_the_workers_with_new_code_one_at_a_time(
    granian_project: Path, tmp_path: Path
) -> None:
    """`systemctl reload` (the unit's ExecReload sends SIGHUP), as the generated
    README promises: new code served, and no request lost on the way."""
    copy = copy_with_apps(granian_project, tmp_path / "app", "versioned_wsgi.py")
    (copy / "probe_version.py").write_text('VERSION = "v1"\n')
    with serve(copy, tmp_path, env(copy, WEB_CONCURRENCY="2"), app="versioned_wsgi:app") as granian:
        assert granian.get("/_probe/version").body == b"v1"
        (copy / "probe_version.py").write_text('VERSION = "v2"\n')
        with granian.load("/_probe/version", clients=4, seconds=60) as load:
            load.wait_for(ok=50)
            os.kill(granian.pid, signal.SIGHUP)
            granian.wait_for_log("Stopped old worker", count=2, timeout=40)
            load.wait_for(ok=load.ok + 50)
        answers = {granian.get("/_probe/version").body for _ in range(20)}
    assert answers == {b"v2"}, "every worker runs the new code"
    assert load.failed == [], load.summary()


def test_sigterm_while_workers_start_stops_at_once(granian_project: Path, tmp_path: Path) -> None:
    """SIGTERM as soon as granian spawns its workers, before they have loaded the
    app. Forked workers missed it and granian waited its kill timeout (30 s);
    run_granian.py starts them with "spawn", so they stop with the rest."""
    settings = env(granian_project, WEB_CONCURRENCY="2", PORT=str(free_port()))
    command = server_command(granian_project)
    server = start(command, granian_project, settings, tmp_path / "granian.log")
    try:
        server.wait_for_log("Spawning worker-2", timeout=30)
        sent = time.monotonic()
        server.popen.send_signal(signal.SIGTERM)
        returncode = server.wait(timeout=40)
        stopped_in = time.monotonic() - sent
    finally:
        stop(server)
    log = server.output()
    assert returncode == 0, log
    assert "refused to gracefully stop" not in log, log
    assert stopped_in < 5, f"exited {stopped_in:.1f} s after SIGTERM:\n{log}"


def test_behind_nginx_on_a_unix_socket(granian_project: Path, tmp_path: Path) -> None:
    with serve(granian_project, tmp_path, env(granian_project), behind_nginx=True) as stack:
        assert stack.get("/healthz").status == 200
        static = stack.get("/static/style.css?v=0123456789ab")
        assert static.status == 200
        assert "max-age=31536000" in static.headers["cache-control"]
        assert "granian" not in static.headers.get("server", "")
        granian_log = stack.output()
    assert "GET /healthz" in granian_log
    assert "/static/style.css" not in granian_log, "nginx serves static files itself"
