"""The app inside the stack, under each real server: logs, request ids, errors, headers.

The default project (gunicorn) and a granian one are served by their own
generated launchers, on loopback, in production mode, with a test-only entry
point (probe_wsgi.py, in a copy of the project) that adds a route logging one
INFO line and a route that raises.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.project_env import project_environment, project_venv
from tests.helpers.render import render
from tests.helpers.servers import Server, free_port, http_get, http_request, running

pytestmark = pytest.mark.boot

SECRET = "s" * 64
PACKAGE = "demo_shop"
PROBE = """\
from flask import current_app, request

from demo_shop.security import csrf
from wsgi import app


@app.get("/_probe/log")
def log_a_line():
    current_app.logger.info("order placed")
    return {"logged": True}


@app.get("/_probe/crash")
def crash():
    raise RuntimeError("probe-secret-7c1e: the password is hunter2")


@app.post("/_probe/upload")
@csrf.exempt  # a test client with no session
def upload():
    return {"received": len(request.get_data())}
"""
LAUNCH = {
    "gunicorn": ["gunicorn", "-c", "gunicorn.conf.py", "probe_wsgi:app"],
    "granian": ["python", "run_granian.py", "probe_wsgi:app"],
}
# Lines each server writes for every worker it starts.
WORKER_STARTED = {"gunicorn": "Booting worker", "granian": "Spawning worker"}


@pytest.fixture(scope="module", params=["gunicorn", "granian"])
def served(request: pytest.FixtureRequest, copie_session: Any, tmp_path_factory: Any) -> Any:
    """(server, project copy with the probe, venv bin/) for each server option."""
    server = request.param
    copy = tmp_path_factory.mktemp(f"logs-{server}") / "project"
    shutil.copytree(render(copie_session, server=server), copy)
    (copy / "probe_wsgi.py").write_text(PROBE)
    return server, copy, project_venv(copy)


def serve(served: Any, tmp_path: Path, **settings: str) -> Any:
    server, project, bindir = served
    port = free_port()
    env = project_environment(
        bindir,
        FLASK_SECRET_KEY=SECRET,
        PORT=str(port),
        HOST="127.0.0.1",
        WEB_CONCURRENCY="1",
        **settings,
    )
    log = tmp_path / f"{server}.log"
    return running(LAUNCH[server], project, env, log, port), port


@pytest.fixture
def text_server(served: Any, tmp_path: Path) -> Iterator[tuple[Server, int]]:
    context, port = serve(served, tmp_path)
    with context as server:
        yield server, port


def wait_for(server: Server, pattern: str, deadline: float = 5) -> str:
    """The server's output once `pattern` (a regex) appears in it."""
    end = time.monotonic() + deadline
    while not re.search(pattern, output := server.output()):
        assert time.monotonic() < end, f"{pattern!r} never logged:\n{output}"
        time.sleep(0.05)
    return output


def test_app_lines_appear_in_the_server_format_with_the_request_id(
    text_server: tuple[Server, int],
) -> None:
    server, port = text_server
    rid = "0123456789abcdef0123456789abcdef"  # as nginx's $request_id
    response = http_get(port, "/_probe/log", {"X-Request-ID": rid})
    assert response.status == 200 and response.headers["x-request-id"] == rid
    # The app's INFO line, in the server's layout: time, pid, level, id.
    log = wait_for(server, rf"\[INFO\] \[{rid}\] order placed")
    # The access line: the same id, and the duration.
    access = wait_for(server, rf"\[{rid}\] .*\"GET /_probe/log HTTP/1.1\" 200 .*\d+ms")
    assert log and access
    # Server lines outside any request carry "-".
    assert re.search(r"\[INFO\] \[-\] ", log), log


def test_a_request_without_an_id_gets_one_and_a_bad_one_is_replaced(
    text_server: tuple[Server, int],
) -> None:
    _, port = text_server
    made_up = http_get(port, "/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made_up)
    for bad in ("a" * 300, "spaces are not ok", "<script>alert(1)</script>"):
        sent = http_get(port, "/healthz", {"X-Request-ID": bad}).headers["x-request-id"]
        assert sent != bad and re.fullmatch(r"[0-9a-f]{32}", sent)


def test_json_format_writes_one_object_per_line(served: Any, tmp_path: Path) -> None:
    context, port = serve(served, tmp_path, LOG_FORMAT="json")
    with context as server:
        rid = http_get(port, "/_probe/log").headers["x-request-id"]
        wait_for(server, r'"message": "order placed"')
        wait_for(server, r"GET /_probe/log HTTP/1.1")
        lines = [json.loads(line) for line in server.output().splitlines() if line.strip()]
    app_line = next(line for line in lines if line["message"] == "order placed")
    assert app_line["request_id"] == rid and app_line["level"] == "info"
    access = [line for line in lines if "/_probe/log" in line["message"]]
    assert access and access[0]["logger"].endswith(".access")
    # The id the app made up (the request came without one), under granian too.
    assert access[0]["request_id"] == rid


# How each launcher's access log is turned off (both write one by default, on
# their own port; behind nginx on a unix socket gunicorn's is off already).
ACCESS_LOG_OFF = {
    "gunicorn": {"GUNICORN_ACCESS_LOG": ""},
    "granian": {"GRANIAN_LOG_ACCESS_ENABLED": "false"},
}


def test_access_lines_can_be_turned_off(served: Any, tmp_path: Path) -> None:
    context, port = serve(served, tmp_path, **ACCESS_LOG_OFF[served[0]])
    with context as server:
        http_get(port, "/_probe/log")
        wait_for(server, r"order placed")
        time.sleep(0.5)  # an access line is written right after the response
        output = server.output()
    assert "GET /_probe/log" not in output, output


@pytest.mark.parametrize("setting", [{"LOG_LEVEL": "verbose"}, {"LOG_FORMAT": "xml"}])
def test_invalid_log_settings_stop_the_start_with_one_line(
    served: Any, setting: dict[str, str]
) -> None:
    server, project, bindir = served
    env = project_environment(bindir, FLASK_SECRET_KEY=SECRET, PORT=str(free_port()), **setting)
    result = subprocess.run(
        LAUNCH[server], cwd=project, env=env, capture_output=True, text=True, timeout=30
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 4, output
    assert output.count("\n") == 0 and "use " in output, output
    assert "Traceback" not in output and WORKER_STARTED[server] not in output


def test_errors_are_pages_or_json_and_a_500_is_logged_once(
    text_server: tuple[Server, int],
) -> None:
    server, port = text_server
    page = http_get(port, "/nowhere")
    assert page.status == 404 and page.headers["content-type"].startswith("text/html")
    assert b"/static/style.css?v=" in page.body, "the site's look (base.html)"
    api = http_get(port, "/nowhere", {"Accept": "application/json"})
    body = json.loads(api.body)
    assert body == {"error": body["error"], "status": 404, "request_id": body["request_id"]}
    assert http_request(port, "PUT", "/").status == 405

    crash = http_get(port, "/_probe/crash")
    rid = crash.headers["x-request-id"]
    assert crash.status == 500 and rid.encode() in crash.body
    for leak in (b"probe-secret-7c1e", b"hunter2", b"Traceback", b"RuntimeError"):
        assert leak not in crash.body
    log = wait_for(server, r"RuntimeError: probe-secret-7c1e")
    assert log.count("Traceback (most recent call last)") == 1, log
    assert re.search(rf"\[ERROR\] \[{rid}\] Exception on /_probe/crash \[GET\]", log), log


def test_413_from_the_app_without_nginx(served: Any, tmp_path: Path) -> None:
    context, port = serve(served, tmp_path, FLASK_MAX_CONTENT_LENGTH="1000")
    with context:
        assert http_request(port, "POST", "/_probe/upload", body=b"x" * 999).status == 200
        page = http_request(port, "POST", "/_probe/upload", body=b"x" * 2000)
        assert page.status == 413 and b"/static/style.css?v=" in page.body
        api = http_request(
            port, "POST", "/_probe/upload", body=b"x" * 2000, headers={"Accept": "application/json"}
        )
        assert api.status == 413 and json.loads(api.body)["status"] == 413


def test_security_headers_without_nginx_and_hsts_only_over_https(
    text_server: tuple[Server, int],
) -> None:
    _, port = text_server
    for path in ("/", "/nowhere", "/healthz"):
        headers = http_get(port, path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "script-src" not in headers["content-security-policy"], "default-src 'self'"
        assert "strict-transport-security" not in headers, path
    # One proxy hop is trusted by default (PROXY_HOPS=1): it says https.
    secure = http_get(port, "/", {"X-Forwarded-Proto": "https"}).headers
    assert secure["strict-transport-security"] == "max-age=31536000"
