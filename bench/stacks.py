"""The serving stacks the benchmark compares: what each one is, not how it starts.

Every gunicorn stack runs the project's generated gunicorn.conf.py; the
alternatives differ from the generated defaults only in the environment
variables that config reads (WEB_CONCURRENCY, GUNICORN_THREADS, ...) and, for
two, in the generated nginx upstream's `keepalive`, so each row is a setting a
user could change (or one the template chose, undone). bench/launch.py starts them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ROUTES = ("json", "cpu", "io")
# The generated defaults before this benchmark chose today's (CHANGELOG), as the
# environment the generated gunicorn.conf.py reads (plus upstream keepalive 8).
EARLIER_DEFAULTS = {
    "GUNICORN_THREADS": "4",
    "GUNICORN_ACCESS_LOG": "-",
    "GUNICORN_MAX_REQUESTS": "1000",
    "GUNICORN_MAX_REQUESTS_JITTER": "100",
}


@dataclass(frozen=True)
class Stack:
    name: str
    label: str  # one line for the table and the plot
    server: str  # "gunicorn", "flask", "granian", or "none" (nginx alone)
    behind_nginx: bool = False
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the generated config
    # nginx's idle connections kept open to gunicorn (the generated upstream's
    # `keepalive`); None leaves the generated site config as it is.
    upstream_keepalive: int | None = None
    routes: tuple[str, ...] = ROUTES
    default: bool = True  # part of a run without --stacks
    # granian only: start workers with multiprocessing's "spawn", as the
    # generated run_granian.py does, instead of forking them (granian's default
    # before Python 3.14).
    spawn: bool = False
    # The template version rendered for this stack: HEAD is the working tree
    # (local edits included); a tag renders that release, to compare before/after.
    template: str = "HEAD"


def _nginx_threads(threads: int, default: bool = True) -> Stack:
    return Stack(
        f"nginx-2x{threads}",
        f"nginx → gthread 2 x {threads}",
        "gunicorn",
        behind_nginx=True,
        env={"GUNICORN_THREADS": str(threads)},
        default=default,
    )


STACKS: tuple[Stack, ...] = (
    Stack("flask-run", "flask run (dev server)", "flask"),
    # What a project gets: nginx with the generated site config in front of
    # gunicorn with the generated gunicorn.conf.py on a unix socket, as the
    # systemd unit starts it. No setting changed.
    Stack("default", "default: nginx → gthread 2 x 32", "gunicorn", behind_nginx=True),
    # The same default stack as released in 0.1.0, before the app gained its
    # logging setup, request ids, error pages, security headers and CSRF (#12):
    # what those cost, side by side in the same run.
    Stack(
        "default-0.1.0",
        "default at template 0.1.0 (before logs/errors/security)",
        "gunicorn",
        behind_nginx=True,
        routes=("json", "io"),
        template="0.1.0",
    ),
    Stack("gunicorn", "gunicorn alone, generated config", "gunicorn"),
    # Fewer threads per worker: the I/O route needs ~50 requests in flight.
    _nginx_threads(4),
    _nginx_threads(16),
    # Each default the benchmark chose, undone one at a time.
    Stack(
        "nginx-log",
        "nginx → gunicorn with its own access log too",
        "gunicorn",
        behind_nginx=True,
        env={"GUNICORN_ACCESS_LOG": "-"},
    ),
    Stack(
        "nginx-recycle-1000",
        "nginx → gunicorn, max_requests 1000",
        "gunicorn",
        behind_nginx=True,
        env={"GUNICORN_MAX_REQUESTS": "1000", "GUNICORN_MAX_REQUESTS_JITTER": "100"},
    ),
    Stack(
        "nginx-ka8",
        "nginx (upstream keepalive 8) → gunicorn",
        "gunicorn",
        behind_nginx=True,
        upstream_keepalive=8,
    ),
    # All of them undone: the defaults before the benchmark.
    Stack(
        "earlier-defaults",
        "earlier defaults: nginx ka 8 → gthread 2 x 4, log, max_req 1000",
        "gunicorn",
        behind_nginx=True,
        env=EARLIER_DEFAULTS,
        upstream_keepalive=8,
    ),
    Stack(
        "gthread-5x4",
        "gunicorn gthread 5 x 4",
        "gunicorn",
        env={"WEB_CONCURRENCY": "5", "GUNICORN_THREADS": "4"},
    ),
    # The classic (2 x cores) + 1 sync workers.
    Stack(
        "sync-5",
        "gunicorn sync 5",
        "gunicorn",
        env={"GUNICORN_WORKER_CLASS": "sync", "WEB_CONCURRENCY": "5", "GUNICORN_THREADS": "1"},
    ),
    Stack(
        "gevent-2",
        "gunicorn gevent 2",
        "gunicorn",
        env={"GUNICORN_WORKER_CLASS": "gevent", "WEB_CONCURRENCY": "2"},
    ),
    Stack("granian-2", "granian WSGI, 2 workers", "granian"),
    Stack(
        "granian-2-spawn", "granian WSGI, 2 spawned workers (run_granian.py)", "granian", spawn=True
    ),
    # nginx answering a fixed JSON body itself: the ceiling of anything behind it.
    Stack("nginx-raw", "nginx alone, static JSON (upper bound)", "none", routes=("json",)),
    # Not in the default run (name them with --stacks): settings whose effect
    # the default run's rows already bound, kept to re-check them.
    Stack(
        "nginx-keepalive0",
        "nginx → gunicorn, gunicorn keepalive 0",
        "gunicorn",
        behind_nginx=True,
        env={"GUNICORN_KEEPALIVE": "0"},
        default=False,
    ),
    _nginx_threads(8, default=False),
    # The default stack with Prometheus metrics on: what counting and timing
    # every request costs (compare with `default` in the same run).
    Stack(
        "nginx-metrics",
        "default with metrics on (FLASK_METRICS=true)",
        "gunicorn",
        behind_nginx=True,
        env={"FLASK_METRICS": "true"},
        routes=("json",),
        default=False,
    ),
)

BY_NAME = {stack.name: stack for stack in STACKS}


def select(names: str | None) -> list[Stack]:
    """The stacks named in a comma-separated list ("all": every one), in catalogue order."""
    if not names:
        return [stack for stack in STACKS if stack.default]
    if names == "all":
        return list(STACKS)
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown stack(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    return [stack for stack in STACKS if stack.name in wanted]
