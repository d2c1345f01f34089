"""Watching the generated app: Prometheus metrics over several workers, error reports.

Each test serves a copy of a rendered project with its own launcher
(gunicorn.conf.py or run_granian.py), on loopback, in production mode, with a
test-only entry point (probe_wsgi.py) that adds a route that raises and one
that tells which optional modules its worker has loaded. Error reports go to a
stand-in for Sentry's ingest endpoint: a small HTTP server on 127.0.0.1 that
keeps every envelope it is sent.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.helpers.project_env import project_environment, project_venv
from tests.helpers.render import render
from tests.helpers.servers import LOOPBACK, free_port, http_get, running

SECRET = "s" * 64
PROBE = """\
import sys

from wsgi import app


@app.get("/_probe/crash")
def crash():
    raise RuntimeError("probe: a bug worth a report")


@app.get("/_probe/loaded")
def loaded():
    optional = ("prometheus_client", "sentry_sdk")
    return {"loaded": [name for name in optional if name in sys.modules]}
"""
LAUNCH = {
    "gunicorn": ["gunicorn", "-c", "gunicorn.conf.py", "probe_wsgi:app"],
    "granian": ["python", "run_granian.py", "probe_wsgi:app"],
}
T = TypeVar("T")


def eventually(check: Callable[[], T | None], what: str, deadline: float = 15) -> T:
    """The first true result of `check`, polled until `deadline` seconds pass."""
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < end, f"not within {deadline}s: {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module", params=["gunicorn", "granian"])
def served(request: pytest.FixtureRequest, copie_session: Any, tmp_path_factory: Any) -> Any:
    """(server, project copy with the probe, venv bin/) for each server option."""
    server = request.param
    copy = tmp_path_factory.mktemp(f"watch-{server}") / "project"
    shutil.copytree(render(copie_session, server=server), copy)
    (copy / "probe_wsgi.py").write_text(PROBE)
    return server, copy, project_venv(copy)


def serve(served: Any, log: Path, **settings: str) -> tuple[Any, int]:
    """A running context for the project with 2 workers and `settings`, and its port."""
    server, project, bindir = served
    port = free_port()
    env = project_environment(
        bindir,
        FLASK_SECRET_KEY=SECRET,
        PORT=str(port),
        HOST=LOOPBACK,
        WEB_CONCURRENCY="2",
        **settings,
    )
    # Nothing may leave loopback, and no proxy may stand between the app and
    # the stand-in: drop the machine's proxy settings for the app.
    env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}
    return running(LAUNCH[server], project, env, log, port), port


# -- Metrics ------------------------------------------------------------------------

SERIES = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$", re.MULTILINE)


def scrape(port: int) -> dict[tuple[str, str], float]:
    """/metrics as {(name, labels): value}."""
    answer = http_get(port, "/metrics")
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"].startswith("text/plain; version=")
    text = answer.body.decode()
    return {(name, labels): float(value) for name, labels, value in SERIES.findall(text)}


def worker_pids(folder: Path) -> set[int]:
    """The processes that wrote counts, from prometheus_client's file names."""
    return {int(m[1]) for p in folder.glob("*.db") if (m := re.search(r"_(\d+)\.db$", p.name))}


def spread(port: int, paths: list[str]) -> list[int]:
    """GET every path, 8 at a time, each on a new connection; the statuses."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda path: http_get(port, path).status, paths))


@pytest.mark.boot
def test_one_scrape_counts_every_request_served_by_several_workers(
    served: Any, tmp_path: Path
) -> None:
    server = served[0]
    folder = tmp_path / "metrics"
    folder.mkdir()
    settings = {"FLASK_METRICS": "true", "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    # An earlier run leaves its counts in the folder: the next start must drop them.
    context, port = serve(served, tmp_path / "first.log", **settings)
    with context:
        assert set(spread(port, ["/"] * 10)) == {200}
    assert worker_pids(folder), "the first run wrote no counts"

    context, port = serve(served, tmp_path / "second.log", **settings)
    with context as running_server:
        sent: list[str] = []

        # Batches until two workers or more have answered (the kernel picks
        # which one accepts each connection).
        def two_workers_answered() -> set[int] | None:
            batch = [f"/no/such/page/{len(sent) + i}" if i % 2 else "/" for i in range(40)]
            statuses = spread(port, batch)
            sent.extend(batch)
            assert statuses == [404 if "/no/" in p else 200 for p in batch]
            pids = worker_pids(folder)
            return pids if len(pids) >= 2 else None

        pids = eventually(two_workers_answered, "requests answered by 2 workers", deadline=30)
        metrics = scrape(port)

    pages = sent.count("/")
    misses = len(sent) - pages
    index = ("http_requests_total", 'method="GET",route="/",status="200"')
    unmatched = ("http_requests_total", 'method="GET",route="(no route)",status="404"')
    timed = ("http_request_duration_seconds_count", index[1])
    print(
        f"{server}: {len(sent)} requests ({pages} to /, {misses} to made-up paths) over "
        f"worker PIDs {sorted(pids)}; one scrape counts {metrics.get(index)} for / and "
        f"{metrics.get(unmatched)} for no route"
    )
    assert running_server.pid not in pids, "counts come from the workers, not the main process"
    assert metrics[index] == pages and metrics[timed] == pages
    assert metrics[unmatched] == misses
    # One series per route, never one per path a client made up.
    assert not [labels for _, labels in metrics if "/no/such" in labels]


@pytest.mark.boot
def test_metrics_off_load_nothing_and_serve_no_metrics(served: Any, tmp_path: Path) -> None:
    context, port = serve(served, tmp_path / "server.log")
    with context:
        assert http_get(port, "/metrics").status == 404
        assert json.loads(http_get(port, "/_probe/loaded").body) == {"loaded": []}


# -- Error reports ------------------------------------------------------------------


class Ingest(ThreadingHTTPServer):
    """A stand-in for Sentry's ingest endpoint: it keeps what it is sent."""

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), IngestHandler)
        self.envelopes: list[tuple[str, bytes]] = []

    def events(self) -> list[dict[str, Any]]:
        """Every event item of every envelope (one JSON document per line)."""
        found = []
        for _, body in list(self.envelopes):
            for line in body.splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict) and "exception" in item:
                    found.append(item)
        return found


class IngestHandler(BaseHTTPRequestHandler):
    server: Ingest

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.envelopes.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def ingest() -> Iterator[Ingest]:
    server = Ingest()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.boot
def test_a_500_reaches_sentry_tagged_with_the_request_id(
    served: Any, tmp_path: Path, ingest: Ingest
) -> None:
    dsn = f"http://publickey@{LOOPBACK}:{ingest.server_address[1]}/1"
    rid = "sentry-probe-4c7d21a9"
    context, port = serve(served, tmp_path / "server.log", SENTRY_DSN=dsn)
    with context:
        crash = http_get(port, "/_probe/crash", {"X-Request-ID": rid})
        assert crash.status == 500
        events = eventually(ingest.events, "an event at the stand-in")
        assert json.loads(http_get(port, "/_probe/loaded").body) == {"loaded": ["sentry_sdk"]}
    assert {path for path, _ in ingest.envelopes} == {"/api/1/envelope/"}
    [event] = events
    assert event["tags"]["request_id"] == rid
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert "a bug worth a report" in exception["value"]


@pytest.mark.boot
def test_without_a_dsn_nothing_is_sent_or_loaded(
    served: Any, tmp_path: Path, ingest: Ingest
) -> None:
    context, port = serve(served, tmp_path / "server.log")
    with context:
        assert http_get(port, "/_probe/crash").status == 500
        assert json.loads(http_get(port, "/_probe/loaded").body) == {"loaded": []}
        time.sleep(2)  # what a report would have taken to arrive
    assert ingest.envelopes == []
