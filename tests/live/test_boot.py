"""Rendered projects under their real servers, gunicorn and granian, on loopback: they
serve (the presets too, rendered with `copier copy --data-file` as the README says, under
gunicorn and the waitress command the README gives Windows users), refuse a setting that
would not work in one line, reload (on a signal, and on a code change in development with
GUNICORN_RELOAD) and stop on a signal. The app inside logs in the server's format with the
request id, answers errors as pages or JSON, and sends its headers.

The probe (harness/apps/probe_wsgi.py, in a copy of the project) adds a route that logs one
INFO line and one that raises; the shared `probe_server` (conftest.py) runs it under the
project's own launcher, and a log setting gets a server of its own."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.chaos import APPS, chaos_copy, copy_with_apps, worker_pids
from harness.http import LOOPBACK, free_port, http_get
from harness.processes import start, stop
from harness.procfile import serve_under_honcho
from harness.readme import readme_blocks
from harness.render import PRESETS, render_preset
from harness.serving import Served, answers, serve, server_command
from harness.venvs import SECRET, production_env, project_venv, run_env, run_project_tests
from harness.waiting import eventually

WAITRESS = ["waitress-serve", "--listen={host}:{port}", "wsgi:app"]
PROBE, CRASH_MARKER = "probe_wsgi:app", "probe-secret-7c1e"  # harness/apps/probe_wsgi.py
# How each launcher's access log is turned off (both write one by default, on
# their own port; behind nginx on a unix socket gunicorn's is off already).
ACCESS_LOG_OFF = {
    "gunicorn": {"GUNICORN_ACCESS_LOG": ""},
    "granian": {"GRANIAN_LOG_ACCESS_ENABLED": "false"},
}
RID = r"[0-9a-f]{32}"
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
# SIGTERM while the workers start, and to whom: gunicorn's whole group (as honcho
# and container runtimes send it) while a worker is slow to boot, before its own
# handlers exist; granian's main process once it spawns its workers (forked ones
# missed it and granian waited its kill timeout; run_granian.py uses "spawn").
SLOW_BOOT = ["gunicorn", "-c", str(APPS / "slow_boot_gunicorn_conf.py"), "wsgi:app"]
BOOTING = {
    "gunicorn": (SLOW_BOOT, "1", "Booting worker", os.killpg),
    "granian": (["python", "run_granian.py"], "2", "Spawning worker-2", os.kill),
}


def assert_serves(served: Served) -> None:
    health = served.get("/healthz")
    assert (health.status, health.body) == (200, b'{"status":"ok"}\n')
    assert health.headers["content-type"] == "application/json"
    index = served.get("/")
    assert index.status == 200 and "<h1>Demo Shop</h1>" in index.text


def assert_three_workers(served: Served, server: str) -> None:
    """WEB_CONCURRENCY=3 reached the server; it serves, on its port, with its access log."""
    assert_serves(served)
    served.wait_for_log('"GET /healthz HTTP/1.1" 200')  # the access log, on stdout
    log = served.wait_for_log(WORKER_STARTED[server], count=3, timeout=10)
    assert log.count(WORKER_STARTED[server]) == 3, "WEB_CONCURRENCY sets the workers"
    assert f"Listening at: http://{LOOPBACK}:{served.port}" in log
    assert server != "gunicorn" or "Using worker: gthread" in log


def test_procfile_web_process_serves_under_honcho(server_project: Path, tmp_path: Path) -> None:
    env = run_env(project_venv(server_project))
    settings = {"FLASK_SECRET_KEY": SECRET, "WEB_CONCURRENCY": "3"}
    with serve_under_honcho(server_project, tmp_path, env, **settings) as served:
        assert_three_workers(served, answers(server_project)["server"])


def test_gunicorn_binds_a_unix_socket_when_told(default_project: Path, tmp_path: Path) -> None:
    sock = tmp_path / "gunicorn.sock"
    env = production_env(project_venv(default_project), GUNICORN_BIND=f"unix:{sock}")
    server = start(server_command(default_project), default_project, env, tmp_path / "g.log")
    try:
        server.wait_for_log(f"Listening at: unix:{sock}")
        assert http_get(sock, "/healthz", timeout=20).status == 200  # once a worker is up
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


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_passes_its_own_tests_and_serves(preset: str, tmp_path: Path) -> None:
    project = render_preset(preset, tmp_path / preset)
    venv = project_venv(project)
    result = run_project_tests(project, run_env(venv))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout

    # Production refuses to start without a database URL; a SQLite file stands in for
    # PostgreSQL (/healthz and / never touch it).
    database = {"DATABASE_URL": f"sqlite:///{project / 'instance' / 'boot.sqlite3'}"}
    env = production_env(venv, **(database if (project / "migrations").is_dir() else {}))
    # The waitress command in the README's PowerShell blocks, exactly one, on one line;
    # PowerShell may set variables first on the same line (`$env:X = ...;`).
    found = {
        line.split(";")[-1].split(" #")[0].strip()
        for block in readme_blocks((project / "README.md").read_text(), "powershell")
        for line in block.lines()
        if "waitress-serve" in line
    }
    assert len(found) == 1, f"expected one waitress-serve command in the README, got {found}"
    # `uv run X` runs X in the project's environment: here the shared venv, with the same
    # locked packages.
    waitress = shlex.split(found.pop().removeprefix("uv run "))
    assert waitress[0] == "waitress-serve", waitress
    listen = [arg for arg in waitress if arg.startswith("--listen=")]
    assert len(listen) == 1, f"the README's command says where it listens: {waitress}"
    # As written, except the port (the README's may be taken here) and, should the
    # README listen on every interface, the host: tests bind to loopback.
    port = free_port()
    waitress = [f"--listen={LOOPBACK}:{port}" if arg in listen else arg for arg in waitress]
    for server, command, at in [("gunicorn", None, None), ("waitress", waitress, port)]:
        with serve(project, tmp_path / server, env, command=command, port=at) as served:
            assert served.get("/healthz").status == 200, server
            assert served.get("/").status == 200, server


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


def test_sigterm_while_workers_start_stops_at_once(server_project: Path, tmp_path: Path) -> None:
    project = server_project
    command, workers, booting, kill = BOOTING[answers(project)["server"]]
    env = production_env(
        project_venv(project),
        PORT=str(free_port()),
        HOST=LOOPBACK,
        WEB_CONCURRENCY=workers,
        GUNICORN_GRACEFUL_TIMEOUT="30",
    )
    process = start(command, project, env, tmp_path / "server.log")
    try:
        process.wait_for_log(booting, timeout=30)
        sent = time.monotonic()
        kill(process.pid, signal.SIGTERM)
        returncode = process.wait(40)
        took = time.monotonic() - sent
    finally:
        stop(process)
    log = process.output()
    assert returncode == 0 and "refused to gracefully stop" not in log, log
    assert took < 5, f"stopped {took:.1f} s after SIGTERM (graceful_timeout 30):\n{log}"


def test_granian_behind_nginx_finishes_in_flight_requests_on_sigterm(
    granian_project: Path, tmp_path: Path
) -> None:
    copy = chaos_copy(granian_project, tmp_path / "app")
    marks = tmp_path / "marks"  # a file for each /_chaos/sleep request as it starts
    marks.mkdir()
    env = production_env(project_venv(copy), WEB_CONCURRENCY="2", CHAOS_MARKS=str(marks))
    with serve(copy, tmp_path / "logs", env, app="chaos_wsgi:app", behind_nginx=True) as granian:
        assert granian.get("/healthz").status == 200
        static = granian.get("/static/style.css?v=0123456789ab")
        assert static.status == 200
        assert "max-age=31536000" in static.headers["cache-control"]
        assert "granian" not in static.headers.get("server", "")
        granian.wait_for_log("Started worker", count=2)
        with ThreadPoolExecutor(3) as pool:
            slow = [pool.submit(granian.get, "/_chaos/sleep?s=2", timeout=20) for _ in range(3)]
            eventually(lambda: len(list(marks.iterdir())) == 3, what="3 requests in flight")
            os.kill(granian.pid, signal.SIGTERM)
            statuses = [future.result().status for future in slow]
        assert statuses == [200, 200, 200]
        assert granian.process.wait(timeout=30) == 0
        assert worker_pids(granian.pid) == set()
        granian_log = granian.output()
    assert "GET /healthz" in granian_log
    assert "/static/style.css" not in granian_log, "nginx serves static files itself"


def test_granian_reloads_new_code_on_sighup_one_worker_at_a_time(
    granian_project: Path, tmp_path: Path
) -> None:
    """`systemctl reload` (the unit's ExecReload sends SIGHUP), as the generated
    README promises: new code served, and no request lost on the way."""
    copy = copy_with_apps(granian_project, tmp_path / "app", "versioned_wsgi.py")
    (copy / "probe_version.py").write_text('VERSION = "v1"\n')
    env = production_env(project_venv(copy), WEB_CONCURRENCY="2")
    with serve(copy, tmp_path, env, app="versioned_wsgi:app") as granian:
        assert granian.get("/_probe/version").body == b"v1"
        (copy / "probe_version.py").write_text('VERSION = "v2"\n')
        with granian.load("/_probe/version", clients=4, seconds=60) as load:
            load.wait_for(ok=50)
            os.kill(granian.pid, signal.SIGHUP)
            granian.wait_for_log("Stopped old worker", count=2, timeout=40)
            load.wait_for(ok=50)  # the new workers serve
        versions = {granian.get("/_probe/version").body for _ in range(20)}
    assert versions == {b"v2"}, "every worker runs the new code"
    # Not lossless (the README says so): a connection that reaches an old worker just
    # as it closes is reset, a few in thousands.
    assert all(o.status is None for o in load.failed), load.summary()
    assert len(load.failed) <= max(3, load.ok // 1000), load.summary()


def test_gunicorn_reload_picks_up_code_changes(default_project: Path, tmp_path: Path) -> None:
    project = shutil.copytree(default_project, tmp_path / "project")
    env = run_env(project_venv(default_project), FLASK_SECRET_KEY=SECRET, GUNICORN_RELOAD="1")
    with serve(project, tmp_path / "logs", env) as served:
        assert served.get("/healthz").body == b'{"status":"ok"}\n'
        health = project / "demo_shop" / "health.py"
        health.write_text(health.read_text().replace('"status": "ok"', '"status": "reloaded"'))
        eventually(
            lambda: b"reloaded" in served.get("/healthz").body,
            what="gunicorn serving the changed module",
            interval=0.2,
        )


def test_the_launcher_serves_and_logs_app_lines_in_its_format_with_the_request_id(
    probe_server: Served,
) -> None:
    assert_three_workers(probe_server, answers(probe_server.cwd)["server"])
    rid = "0123456789abcdef0123456789abcdef"  # as nginx's $request_id
    response = probe_server.get("/_probe/log", {"X-Request-ID": rid})
    assert response.status == 200 and response.headers["x-request-id"] == rid
    # The app's INFO line, in the server's layout: time, pid, level, id.
    probe_server.wait_for_log(rf"\[INFO\] \[{rid}\] order placed", regex=True)
    # The access line: the same id, and the duration.
    log = probe_server.wait_for_log(
        rf"\[{rid}\] .*\"GET /_probe/log HTTP/1.1\" 200 .*\d+ms", regex=True
    )
    # Server lines outside any request carry "-".
    assert re.search(r"\[INFO\] \[-\] ", log), log

    # A request without an id gets one; a bad one is replaced.
    assert re.fullmatch(RID, probe_server.get("/healthz").headers["x-request-id"])
    for bad in ("a" * 300, "spaces are not ok", "<script>alert(1)</script>"):
        sent = probe_server.get("/healthz", {"X-Request-ID": bad}).headers["x-request-id"]
        assert sent != bad and re.fullmatch(RID, sent)


def test_log_format_json_and_access_lines_off(probe_project: Path, tmp_path: Path) -> None:
    """LOG_FORMAT=json writes one object per line; each launcher's access log turns off."""
    env = production_env(project_venv(probe_project), WEB_CONCURRENCY="1")
    with serve(probe_project, tmp_path / "json", env | {"LOG_FORMAT": "json"}, app=PROBE) as served:
        rid = served.get("/_probe/log").headers["x-request-id"]
        served.wait_for_log('"message": "order placed"')
        served.wait_for_log("GET /_probe/log HTTP/1.1")
        lines = [json.loads(line) for line in served.output().splitlines() if line.strip()]
    app_line = next(line for line in lines if line["message"] == "order placed")
    assert app_line["request_id"] == rid and app_line["level"] == "info"
    access = [line for line in lines if "/_probe/log" in line["message"]]
    assert access and access[0]["logger"].endswith(".access")
    # The id the app made up (the request came without one), under granian too.
    assert access[0]["request_id"] == rid

    off = ACCESS_LOG_OFF[answers(probe_project)["server"]]
    with serve(probe_project, tmp_path / "off", env | off, app=PROBE) as served:
        served.get("/_probe/log")
        served.wait_for_log("order placed")
        time.sleep(0.5)  # an access line is written right after the response
        output = served.output()
    assert "GET /_probe/log" not in output, output


def test_errors_are_pages_or_json_a_500_is_logged_once_and_security_headers_sent(
    probe_server: Served,
) -> None:
    page = probe_server.get("/nowhere")
    assert page.status == 404 and page.headers["content-type"].startswith("text/html")
    assert b"/static/style.css?v=" in page.body, "the site's look (base.html)"
    api = probe_server.get("/nowhere", {"Accept": "application/json"})
    body = json.loads(api.body)
    assert body == {"error": body["error"], "status": 404, "request_id": body["request_id"]}
    assert probe_server.request("PUT", "/").status == 405

    crash = probe_server.get("/_probe/crash")
    rid = crash.headers["x-request-id"]
    assert crash.status == 500 and rid.encode() in crash.body
    for leak in (CRASH_MARKER.encode(), b"hunter2", b"Traceback", b"RuntimeError"):
        assert leak not in crash.body
    log = probe_server.wait_for_log(f"RuntimeError: {CRASH_MARKER}")
    assert log.count("Traceback (most recent call last)") == 1, log
    assert re.search(rf"\[ERROR\] \[{rid}\] Exception on /_probe/crash \[GET\]", log), log

    # Without nginx the app refuses a body over FLASK_MAX_CONTENT_LENGTH itself.
    assert probe_server.request("POST", "/_probe/upload", body=b"x" * 999).status == 200
    page = probe_server.request("POST", "/_probe/upload", body=b"x" * 2000)
    assert page.status == 413 and b"/static/style.css?v=" in page.body
    json_only = {"Accept": "application/json"}
    api = probe_server.request("POST", "/_probe/upload", body=b"x" * 2000, headers=json_only)
    assert api.status == 413 and json.loads(api.body)["status"] == 413

    # The app's own security headers (no nginx here), HSTS only over HTTPS.
    for path in ("/", "/nowhere", "/healthz"):
        headers = probe_server.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "script-src" not in headers["content-security-policy"], "default-src 'self'"
        assert "strict-transport-security" not in headers, path
    # One proxy hop is trusted by default (PROXY_HOPS=1): it says https.
    secure = probe_server.get("/", {"X-Forwarded-Proto": "https"}).headers
    assert secure["strict-transport-security"] == "max-age=31536000"
