"""What one request that kills its worker costs behind the project's real nginx config.

(Request ids end to end, versioned static URLs across a deploy and which layer
sends which security header: test_nginx.py.) A copy of the project gets a test-only
entry point, harness/apps/probe_wsgi.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.chaos import probe_copy, worker_pids
from harness.figures import record
from harness.serving import serve
from harness.venvs import production_env, project_venv

# The death is timed just before the SIGKILL, but the worker's sockets close
# only once the kernel has torn it down: nginx can still hand it a request on a
# kept-alive connection in between, or just after, before it sees them closed.
# Such a request starts a few milliseconds after the recorded death.
DEATH_SLACK = 0.010
CLIENTS = 4
# Quiet and steady (no worker recycling, so PIDs change only when the test acts),
# no access logs; "gunicorn-sync": sync workers, as proxy.conf suggests them (with
# threads > 1 gunicorn would run gthread instead).
SETTINGS = {"WEB_CONCURRENCY": "2", "GUNICORN_MAX_REQUESTS": "0", "GUNICORN_ACCESS_LOG": ""}
SERVERS = {
    "gunicorn": ("default_project", {}),
    "gunicorn-sync": (
        "default_project",
        {"GUNICORN_WORKER_CLASS": "sync", "GUNICORN_THREADS": "1"},
    ),
    "granian": ("granian_project", {"GRANIAN_LOG_ACCESS_ENABLED": "false"}),
}


@pytest.mark.parametrize("server", list(SERVERS))
def test_a_request_that_kills_its_worker_costs_one_worker_and_fails_fast(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    rendered, settings = SERVERS[server]
    project = probe_copy(request.getfixturevalue(rendered), tmp_path / "project")
    died_at = tmp_path / "died-at"
    env = production_env(project_venv(project), PROBE_DIED_AT=str(died_at), **SETTINGS | settings)
    with serve(project, tmp_path, env, app="probe_wsgi:app", behind_nginx=True) as stack:
        before = stack.workers(2)
        with stack.load(clients=CLIENTS) as load:
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
    assert len(load.failed) <= CLIENTS, load.summary()
    if server == "gunicorn-sync":
        # A sync worker holds one request at a time and no kept-alive
        # connection: the crash loses its own request and nothing else
        # (proxy.conf recommends it where that matters).
        assert load.failed == [], load.summary()
