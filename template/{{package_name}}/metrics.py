"""Prometheus metrics at /metrics: requests counted and timed by route, method and status.

On with FLASK_METRICS=true (the README's "Metrics"); off, this module is never
imported. Under several worker processes each one counts on its own, so the
server's launcher (gunicorn.conf.py, run_granian.py) gives them a folder,
PROMETHEUS_MULTIPROC_DIR, where each writes its counts to files; a scrape,
answered by whichever worker gets it, adds up every file.
https://prometheus.github.io/client_python/multiprocess/
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, abort, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

LABELS = ("method", "route", "status")
REQUESTS = Counter("http_requests", "Requests answered.", LABELS)
DURATION = Histogram("http_request_duration_seconds", "Time to answer a request.", LABELS)


# Any other method a client makes up is counted as "other": one series each
# would let clients grow the metrics without bound.
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def route() -> str:
    """The URL rule that matched ("/items/<int:item_id>"), never the raw path: one
    series per route, however many paths clients make up."""
    return request.url_rule.rule if request.url_rule else "(no route)"


def start_timer() -> None:
    g.metrics_started = time.perf_counter()


# labels() checks its values on every call, which costs more than counting:
# each series is looked up once and kept (a bounded set: routes x methods x
# statuses). Two threads may both look one up; they get the same series.
_series: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}


def count(response: Response) -> Response:
    method = request.method if request.method in METHODS else "other"
    labels = (method, route(), str(response.status_code))
    series = _series.get(labels)
    if series is None:
        series = _series[labels] = (REQUESTS.labels(*labels), DURATION.labels(*labels))
    series[0].inc()
    started = g.get("metrics_started")
    if started is not None:
        series[1].observe(time.perf_counter() - started)
    return response


def scrape() -> Response:
    """The metrics of every worker, for the scraper that connects to the app itself.

    Reverse proxies and platform routers (nginx, an Ingress, a PaaS) add
    X-Forwarded-For, so a request that came through one gets a 404: the
    public never sees these figures, even where no proxy rule says so.
    """
    if "HTTP_X_FORWARDED_FOR" in request.environ:
        abort(404)
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    # First among the before_request functions, so that a request another one
    # refuses (a bad CSRF token) is timed too.
    app.before_request_funcs.setdefault(None, []).insert(0, start_timer)
    app.after_request(count)
    app.add_url_rule("/metrics", "metrics", scrape)
