"""The app inside the stack, under each real server: logs, request ids, errors, headers.

The default project (gunicorn) and a granian one are served by their own
generated launchers, on loopback, in production mode, with a test-only entry
point (harness/apps/probe_wsgi.py, in a copy of the project) that adds a route
logging one INFO line and a route that raises.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from harness.chaos import probe_copy
from harness.http import LOOPBACK, free_port
from harness.render import render
from harness.serving import Served, answers, serve, server_command
from harness.venvs import production_env, project_venv

APP = "probe_wsgi:app"
CRASH_MARKER = "probe-secret-7c1e"  # harness/apps/probe_wsgi.py's
# Lines each server writes for every worker it starts.
WORKER_STARTED = {"gunicorn": "Booting worker", "granian": "Spawning worker"}
# How each launcher's access log is turned off (both write one by default, on
# their own port; behind nginx on a unix socket gunicorn's is off already).
ACCESS_LOG_OFF = {
    "gunicorn": {"GUNICORN_ACCESS_LOG": ""},
    "granian": {"GRANIAN_LOG_ACCESS_ENABLED": "false"},
}


@pytest.fixture(scope="module", params=["gunicorn", "granian"])
def project(request: pytest.FixtureRequest, copie_session: Any, tmp_path_factory: Any) -> Path:
    """A copy of the project rendered for each server, with the probe."""
    rendered = render(copie_session, server=request.param)
    return probe_copy(rendered, tmp_path_factory.mktemp(f"logs-{request.param}") / "project")


def server_of(project: Path) -> str:
    return answers(project)["server"]


def start(project: Path, work: Path, **settings: str) -> AbstractContextManager[Served]:
    """The probe under the project's own launcher, one worker, production settings."""
    env = production_env(project_venv(project), WEB_CONCURRENCY="1", **settings)
    return serve(project, work, env, app=APP)


@pytest.fixture
def served(project: Path, tmp_path: Path) -> Iterator[Served]:
    with start(project, tmp_path) as running:
        yield running


def test_app_lines_appear_in_the_server_format_with_the_request_id(served: Served) -> None:
    rid = "0123456789abcdef0123456789abcdef"  # as nginx's $request_id
    response = served.get("/_probe/log", {"X-Request-ID": rid})
    assert response.status == 200 and response.headers["x-request-id"] == rid
    # The app's INFO line, in the server's layout: time, pid, level, id.
    served.wait_for_log(rf"\[INFO\] \[{rid}\] order placed", regex=True)
    # The access line: the same id, and the duration.
    log = served.wait_for_log(rf"\[{rid}\] .*\"GET /_probe/log HTTP/1.1\" 200 .*\d+ms", regex=True)
    # Server lines outside any request carry "-".
    assert re.search(r"\[INFO\] \[-\] ", log), log


def test_a_request_without_an_id_gets_one_and_a_bad_one_is_replaced(served: Served) -> None:
    made_up = served.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made_up)
    for bad in ("a" * 300, "spaces are not ok", "<script>alert(1)</script>"):
        sent = served.get("/healthz", {"X-Request-ID": bad}).headers["x-request-id"]
        assert sent != bad and re.fullmatch(r"[0-9a-f]{32}", sent)


def test_json_format_writes_one_object_per_line(project: Path, tmp_path: Path) -> None:
    with start(project, tmp_path, LOG_FORMAT="json") as served:
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


def test_access_lines_can_be_turned_off(project: Path, tmp_path: Path) -> None:
    with start(project, tmp_path, **ACCESS_LOG_OFF[server_of(project)]) as served:
        served.get("/_probe/log")
        served.wait_for_log("order placed")
        time.sleep(0.5)  # an access line is written right after the response
        output = served.output()
    assert "GET /_probe/log" not in output, output


@pytest.mark.parametrize("setting", [{"LOG_LEVEL": "verbose"}, {"LOG_FORMAT": "xml"}])
def test_invalid_log_settings_stop_the_start_with_one_line(
    project: Path, setting: dict[str, str]
) -> None:
    result = subprocess.run(
        server_command(project, APP),
        cwd=project,
        env=production_env(project_venv(project), PORT=str(free_port()), HOST=LOOPBACK, **setting),
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 4, output
    assert output.count("\n") == 0 and "use " in output, output
    assert "Traceback" not in output and WORKER_STARTED[server_of(project)] not in output


def test_errors_are_pages_or_json_and_a_500_is_logged_once(served: Served) -> None:
    page = served.get("/nowhere")
    assert page.status == 404 and page.headers["content-type"].startswith("text/html")
    assert b"/static/style.css?v=" in page.body, "the site's look (base.html)"
    api = served.get("/nowhere", {"Accept": "application/json"})
    body = json.loads(api.body)
    assert body == {"error": body["error"], "status": 404, "request_id": body["request_id"]}
    assert served.request("PUT", "/").status == 405

    crash = served.get("/_probe/crash")
    rid = crash.headers["x-request-id"]
    assert crash.status == 500 and rid.encode() in crash.body
    for leak in (CRASH_MARKER.encode(), b"hunter2", b"Traceback", b"RuntimeError"):
        assert leak not in crash.body
    log = served.wait_for_log(f"RuntimeError: {CRASH_MARKER}")
    assert log.count("Traceback (most recent call last)") == 1, log
    assert re.search(rf"\[ERROR\] \[{rid}\] Exception on /_probe/crash \[GET\]", log), log


def test_413_from_the_app_without_nginx(project: Path, tmp_path: Path) -> None:
    with start(project, tmp_path, FLASK_MAX_CONTENT_LENGTH="1000") as served:
        assert served.request("POST", "/_probe/upload", body=b"x" * 999).status == 200
        page = served.request("POST", "/_probe/upload", body=b"x" * 2000)
        assert page.status == 413 and b"/static/style.css?v=" in page.body
        json_only = {"Accept": "application/json"}
        api = served.request("POST", "/_probe/upload", body=b"x" * 2000, headers=json_only)
        assert api.status == 413 and json.loads(api.body)["status"] == 413


def test_security_headers_without_nginx_and_hsts_only_over_https(served: Served) -> None:
    for path in ("/", "/nowhere", "/healthz"):
        headers = served.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "script-src" not in headers["content-security-policy"], "default-src 'self'"
        assert "strict-transport-security" not in headers, path
    # One proxy hop is trusted by default (PROXY_HOPS=1): it says https.
    secure = served.get("/", {"X-Forwarded-Proto": "https"}).headers
    assert secure["strict-transport-security"] == "max-age=31536000"
