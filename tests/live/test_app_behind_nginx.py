"""The app's features through the project's real nginx config, in front of its real server.

Request ids end to end, versioned static URLs across a deploy, and what one
request that kills its worker costs (which layer sends which security header:
test_nginx.py). A copy of the project gets a test-only entry point,
harness/apps/probe_wsgi.py.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from harness.chaos import probe_copy, worker_pids
from harness.figures import record
from harness.processes import wait_for_text
from harness.render import render
from harness.serving import Served, serve
from harness.venvs import production_env, project_venv

# Quiet and steady: no worker recycling, so PIDs change only when a test acts.
SETTINGS = {"WEB_CONCURRENCY": "2", "GUNICORN_MAX_REQUESTS": "0"}


@pytest.fixture(scope="module")
def probe_project(default_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return probe_copy(default_project, tmp_path_factory.mktemp("behind-nginx") / "project")


def behind_nginx(project: Path, work: Path, **settings: str) -> AbstractContextManager[Served]:
    """probe_wsgi:app under the project's server, behind its nginx config."""
    env = production_env(project_venv(project), **SETTINGS | settings)
    return serve(project, work, env, app="probe_wsgi:app", behind_nginx=True)


@pytest.fixture(scope="module")
def stack(probe_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with behind_nginx(probe_project, tmp_path_factory.mktemp("stack")) as served:
        yield served


# -- request ids ---------------------------------------------------------------------------


def test_one_request_id_in_the_response_the_app_log_and_both_access_logs(stack: Served) -> None:
    forged = "chosen-by-the-client-0001"
    response = stack.get("/_probe/log", {"X-Request-ID": forged})
    rid = response.headers.get("x-request-id")
    assert response.status == 200
    # nginx replaced the client's id with its own $request_id.
    assert rid != forged and re.fullmatch(r"[0-9a-f]{32}", rid or ""), rid
    stack.wait_for_log(rf"\[{rid}\] order placed", regex=True)
    # gunicorn writes its access line after the response: wait for it too.
    app_log = stack.wait_for_log(
        rf"\[{rid}\] .*\"GET /_probe/log HTTP/1.[01]\" 200 .*\d+ms", regex=True
    )
    assert stack.site is not None
    nginx_line = wait_for_text(stack.site.access_log, rf"request_id={rid}")
    assert re.search(rf"GET /_probe/log .*request_id={rid} request_time=[\d.]+", nginx_line)
    assert forged not in app_log


# -- static files: a changed stylesheet reaches browsers on the next load ------------------


def stylesheet_url(page: bytes) -> str:
    found = re.search(rb'<link rel="stylesheet" href="([^"]+)"', page)
    assert found, page
    return found.group(1).decode()


def test_a_changed_stylesheet_gets_a_new_url_after_a_restart(
    probe_project: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(probe_project, project)
    css = project / "demo_shop" / "static" / "style.css"
    with behind_nginx(project, tmp_path / "before") as before:
        old_url = stylesheet_url(before.get("/").body)
        old = before.get(old_url)
        assert old.status == 200
        assert old.headers["cache-control"] == "public, max-age=31536000, immutable"
        # Unchanged, the URL stays the same: browsers keep using their copy.
        assert stylesheet_url(before.get("/").body) == old_url

    css.write_text(css.read_text() + "\nh1 { color: rebeccapurple; }\n")
    with behind_nginx(project, tmp_path / "after") as after:  # the deploy
        new_url = stylesheet_url(after.get("/").body)
        fetched = after.get(new_url)
    assert new_url != old_url and new_url.startswith("/static/style.css?v=")
    assert fetched.status == 200 and b"rebeccapurple" in fetched.body


# -- a request that kills its worker --------------------------------------------------------

# The death is timed just before the SIGKILL, but the worker's sockets close
# only once the kernel has torn it down: nginx can still hand it a request on a
# kept-alive connection in between, or just after, before it sees them closed.
# Such a request starts a few milliseconds after the recorded death.
DEATH_SLACK = 0.010
# Sync workers, as proxy.conf suggests them (with threads > 1 gunicorn would
# run gthread instead).
SYNC = {"GUNICORN_WORKER_CLASS": "sync", "GUNICORN_THREADS": "1"}


@pytest.fixture(scope="module")
def granian_probe_project(copie_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rendered = render(copie_session, server="granian")
    return probe_copy(rendered, tmp_path_factory.mktemp("behind-nginx-granian") / "project")


@pytest.mark.parametrize("server", ["gunicorn", "gunicorn-sync", "granian"])
def test_a_request_that_kills_its_worker_costs_one_worker_and_fails_fast(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    granian = server == "granian"
    project = request.getfixturevalue("granian_probe_project" if granian else "probe_project")
    died_at = tmp_path / "died-at"
    clients = 4
    with behind_nginx(
        project,
        tmp_path,
        GUNICORN_ACCESS_LOG="",
        GRANIAN_LOG_ACCESS_ENABLED="false",
        PROBE_DIED_AT=str(died_at),
        **(SYNC if server == "gunicorn-sync" else {}),
    ) as stack:
        before = stack.workers(2)
        with stack.load(clients=clients) as load:
            # Every worker serves some requests: nginx holds kept-alive
            # connections to both, where its default would replay a failed request.
            load.wait_for(ok=300)
            started = time.monotonic()
            answer = stack.get("/_probe/die", timeout=10)
            took = time.monotonic() - started
            stack.workers(2)  # both alive again (one respawned)
            load.wait_for(ok=100)  # and serving
        killed = before - worker_pids(stack.pid)
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
    assert answer.status == 502 and b"Temporarily unavailable" in answer.body
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
