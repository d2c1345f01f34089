"""The app's features through the project's real nginx config, in front of real gunicorn.

Request ids end to end, which layer sends which security header, versioned
static URLs across a deploy, and what one request that kills its worker costs.
A copy of the default project gets a test-only entry point (probe_wsgi.py).
"""

from __future__ import annotations

import http.client
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.chaos import wait_for_workers, worker_pids
from tests.helpers.figures import record
from tests.helpers.load import Load
from tests.helpers.project_env import project_venv
from tests.helpers.render import render
from tests.helpers.servers import LOOPBACK
from tests.helpers.stack import Stack, nginx_stack, project_env

pytestmark = pytest.mark.nginx

APP = ["gunicorn", "-c", "gunicorn.conf.py", "probe_wsgi:app"]
PROBE = """\
import os
import signal
import time

from flask import current_app

from wsgi import app


@app.get("/_probe/log")
def log_a_line():
    current_app.logger.info("order placed")
    return {"logged": True}


@app.get("/_probe/die")
def die():
    # The instant of death, so the test can tell which requests were in flight.
    with open(os.environ["PROBE_DIED_AT"], "w") as died_at:
        died_at.write(repr(time.time()))
    # What a segfault or the kernel's OOM killer does to a worker.
    os.kill(os.getpid(), signal.SIGKILL)
"""
# Quiet and steady: no worker recycling, so PIDs change only when a test acts.
SETTINGS = {"WEB_CONCURRENCY": "2", "GUNICORN_MAX_REQUESTS": "0"}


@pytest.fixture(scope="module")
def probe_project(default_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_probe(default_project, tmp_path_factory)


def with_probe(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of `project` with the test-only entry point, probe_wsgi.py."""
    copy = tmp_path_factory.mktemp("behind-nginx") / "project"
    shutil.copytree(project, copy)
    (copy / "probe_wsgi.py").write_text(PROBE)
    return copy


def serve(
    project: Path, venv_bin: Path, work: Path, app: list[str] = APP, **settings: str
) -> AbstractContextManager[Stack]:
    return nginx_stack(app, project, project_env(venv_bin, **SETTINGS | settings), work)


@pytest.fixture(scope="module")
def stack(
    probe_project: Path, venv_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with serve(probe_project, venv_bin, tmp_path_factory.mktemp("stack")) as running:
        yield running


def get(stack: Stack, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """A GET through nginx; the response is read, its raw header list kept."""
    conn = http.client.HTTPConnection(LOOPBACK, stack.port, timeout=10)
    conn.request("GET", path, headers={"Host": stack.host or "", **(headers or {})})
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def nginx_access_log(stack: Stack) -> Path:
    # tests/helpers/nginx.py's localize(): the site's access log, in its prefix.
    return stack.gunicorn.log.parent / "nginx" / "access.log"


def wait_for_text(path: Path, pattern: str, deadline: float = 5) -> str:
    end = time.monotonic() + deadline
    while not re.search(pattern, text := path.read_text(errors="replace")):
        assert time.monotonic() < end, f"{pattern!r} not in {path.name}:\n{text[-3000:]}"
        time.sleep(0.05)
    return text


# -- request ids ---------------------------------------------------------------------------


def test_one_request_id_in_the_response_the_app_log_and_both_access_logs(stack: Stack) -> None:
    forged = "chosen-by-the-client-0001"
    response = get(stack, "/_probe/log", {"X-Request-ID": forged})
    rid = response.getheader("X-Request-ID")
    assert response.status == 200
    # nginx replaced the client's id with its own $request_id.
    assert rid != forged and re.fullmatch(r"[0-9a-f]{32}", rid or ""), rid
    wait_for_text(stack.gunicorn.log, rf"\[{rid}\] order placed")
    # gunicorn writes its access line after the response: wait for it too.
    app_log = wait_for_text(
        stack.gunicorn.log, rf"\[{rid}\] .*\"GET /_probe/log HTTP/1.[01]\" 200 .*\d+ms"
    )
    nginx_line = wait_for_text(nginx_access_log(stack), rf"request_id={rid}")
    assert re.search(rf"GET /_probe/log .*request_id={rid} request_time=[\d.]+", nginx_line)
    assert forged not in app_log


# -- security headers: each from one layer -------------------------------------------------

BOTH = (
    "x-content-type-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
)
APP_HEADERS = ("content-security-policy", *BOTH)
NGINX_HEADERS = ("x-frame-options", *BOTH)
EVERY_HEADER = set(APP_HEADERS) | set(NGINX_HEADERS) | {"strict-transport-security"}


@pytest.mark.parametrize(
    ("path", "status", "owner"),
    [
        ("/", 200, "app"),
        ("/nowhere", 404, "app"),
        ("/healthz", 200, "app"),
        ("/static/style.css", 200, "nginx"),
        ("/static/nothing.css", 404, "nginx"),
    ],
)
def test_each_security_header_comes_once_from_one_layer(
    stack: Stack, path: str, status: int, owner: str
) -> None:
    response = get(stack, path)
    assert response.status == status
    names = [name.lower() for name, _ in response.getheaders()]
    expected = APP_HEADERS if owner == "app" else NGINX_HEADERS
    for name in EVERY_HEADER:
        assert names.count(name) == (1 if name in expected else 0), (path, name, names)


# -- static files: a changed stylesheet reaches browsers on the next load ------------------


def stylesheet_url(page: bytes) -> str:
    found = re.search(rb'<link rel="stylesheet" href="([^"]+)"', page)
    assert found, page
    return found.group(1).decode()


def test_a_changed_stylesheet_gets_a_new_url_after_a_restart(
    probe_project: Path, venv_bin: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(probe_project, project)
    css = project / "demo_shop" / "static" / "style.css"
    with serve(project, venv_bin, tmp_path / "before") as before:
        old_url = stylesheet_url(get(before, "/").body)  # type: ignore[attr-defined]
        old = get(before, old_url)
        assert old.status == 200
        assert old.getheader("Cache-Control") == "public, max-age=31536000, immutable"
        # Unchanged, the URL stays the same: browsers keep using their copy.
        assert stylesheet_url(get(before, "/").body) == old_url  # type: ignore[attr-defined]

    css.write_text(css.read_text() + "\nh1 { color: rebeccapurple; }\n")
    with serve(project, venv_bin, tmp_path / "after") as after:  # the deploy
        new_url = stylesheet_url(get(after, "/").body)  # type: ignore[attr-defined]
        fetched = get(after, new_url)
    assert new_url != old_url and new_url.startswith("/static/style.css?v=")
    assert fetched.status == 200 and b"rebeccapurple" in fetched.body  # type: ignore[attr-defined]


# -- a request that kills its worker --------------------------------------------------------

# The death is timed just before the SIGKILL, but the worker's sockets close
# only once the kernel has torn it down: nginx can still hand it a request on a
# kept-alive connection in between, or just after, before it sees them closed.
# Such requests started up to 3.6 ms after the recorded death (110 runs, 2 busy cores).
DEATH_SLACK = 0.010


@pytest.fixture(scope="module")
def granian_probe_project(copie_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_probe(render(copie_session, server="granian"), tmp_path_factory)


# Sync workers, as proxy.conf suggests them (with threads > 1 gunicorn would
# run gthread instead).
SYNC = {"GUNICORN_WORKER_CLASS": "sync", "GUNICORN_THREADS": "1"}


@pytest.mark.parametrize("server", ["gunicorn", "gunicorn-sync", "granian"])
def test_a_request_that_kills_its_worker_costs_one_worker_and_fails_fast(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    granian = server == "granian"
    project = request.getfixturevalue("granian_probe_project" if granian else "probe_project")
    app = ["python", "run_granian.py", "probe_wsgi:app"] if granian else APP
    died_at = tmp_path / "died-at"
    clients = 4
    with serve(
        project,
        project_venv(project),
        tmp_path,
        app,
        GUNICORN_ACCESS_LOG="",
        GRANIAN_LOG_ACCESS_ENABLED="false",
        PROBE_DIED_AT=str(died_at),
        **(SYNC if server == "gunicorn-sync" else {}),
    ) as stack:
        before = stack.workers(2)
        with Load(stack.port, "/healthz", clients=clients, seconds=20, host=stack.host) as load:
            # Every worker serves some requests: nginx holds kept-alive
            # connections to both, where its default would replay a failed request.
            load.wait_for(ok=300)
            started = time.monotonic()
            answer = get(stack, "/_probe/die")
            took = time.monotonic() - started
            # Both workers alive again (one respawned), and serving.
            wait_for_workers(stack.master, lambda pids: len(pids) == 2, "2 workers again")
            load.wait_for(ok=100)
        killed = before - worker_pids(stack.master)
    died = float(died_at.read_text())
    # Failed requests not in flight on the dying worker (start, end in ms from its death).
    unexplained = [
        (round((o.started - died) * 1000, 1), round((o.ended - died) * 1000, 1))
        for o in load.failed
        if not (o.started < died + DEATH_SLACK and o.ended > died)
    ]
    others = f"others: {len(load.failed)} failed of {len(load.outcomes)}"
    if load.failed:
        others += (
            f", {len(unexplained)} of them not in flight then"
            if unexplained
            else ", all in flight on the dying worker"
        )
    record(
        "04b-crash-nginx" + ("" if server == "gunicorn" else f"-{server}"),
        "a GET that kills its own worker (SIGKILL), 4 clients looping",
        stack.label,
        f"{len(killed)} worker killed; its client got HTTP {answer.status} in "
        f"{took * 1000:.0f} ms; {others}",
        "1 worker killed, an error page within 2 s, "
        + ("no other failed" if server == "gunicorn-sync" else "no other failed unless in flight"),
    )
    assert answer.status == 502 and b"Temporarily unavailable" in answer.body  # type: ignore[attr-defined]
    assert took < 2
    # nginx does not send it again to the next worker (proxy_next_upstream
    # off): with its default, the same request killed both workers here.
    assert len(killed) == 1, f"one request killed {len(killed)} workers"
    # The other clients lose only what was in flight when the worker died:
    # nginx replays nothing, so those fail, and nothing else does.
    assert not unexplained, f"failed, not in flight at the death (ms): {unexplained}"
    assert len(load.failed) <= clients, load.summary()
    if server == "gunicorn-sync":
        # A sync worker holds one request at a time and no kept-alive
        # connection: the crash loses its own request and nothing else
        # (proxy.conf recommends it where that matters).
        assert load.failed == [], load.summary()
