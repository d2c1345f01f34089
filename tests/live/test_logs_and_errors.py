"""The app inside the stack, under each real server: logs, request ids, errors, headers.

The probe (harness/apps/probe_wsgi.py, in a copy of the project) adds a route that
logs one INFO line and one that raises; the shared `probe_server` (conftest.py) runs
it under the project's own launcher, and a log setting gets a server of its own.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import AbstractContextManager
from pathlib import Path

from harness.serving import Served, answers, serve
from harness.venvs import production_env, project_venv

CRASH_MARKER = "probe-secret-7c1e"  # harness/apps/probe_wsgi.py's
# How each launcher's access log is turned off (both write one by default, on
# their own port; behind nginx on a unix socket gunicorn's is off already).
ACCESS_LOG_OFF = {
    "gunicorn": {"GUNICORN_ACCESS_LOG": ""},
    "granian": {"GRANIAN_LOG_ACCESS_ENABLED": "false"},
}
RID = r"[0-9a-f]{32}"


def with_settings(project: Path, work: Path, **settings: str) -> AbstractContextManager[Served]:
    env = production_env(project_venv(project), WEB_CONCURRENCY="1", **settings)
    return serve(project, work, env, app="probe_wsgi:app")


def test_app_lines_appear_in_the_server_format_with_the_request_id(probe_server: Served) -> None:
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


def test_json_format_writes_one_object_per_line(probe_project: Path, tmp_path: Path) -> None:
    with with_settings(probe_project, tmp_path, LOG_FORMAT="json") as served:
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


def test_access_lines_can_be_turned_off(probe_project: Path, tmp_path: Path) -> None:
    off = ACCESS_LOG_OFF[answers(probe_project)["server"]]
    with with_settings(probe_project, tmp_path, **off) as served:
        served.get("/_probe/log")
        served.wait_for_log("order placed")
        time.sleep(0.5)  # an access line is written right after the response
        output = served.output()
    assert "GET /_probe/log" not in output, output


def test_errors_are_pages_or_json_and_a_500_is_logged_once(probe_server: Served) -> None:
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


def test_security_headers_without_nginx_and_hsts_only_over_https(probe_server: Served) -> None:
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
