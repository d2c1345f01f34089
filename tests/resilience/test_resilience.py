"""Resilience under bounded load (harness/load.py), on a copy of the default project with the
test routes (harness/apps/probe_wsgi.py) under real gunicorn, alone and behind its nginx:
signals, kill -9, stuck requests and recycling; and safe production settings: no debugger, no
traceback for the client (it goes to stderr), secure session cookies, no default secret, and
hostile HTTP input answered with 4xx without a worker dying. Assertions are counts, except the
bounds a scenario names; each test records its figures.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest

from harness.chaos import connections_held, probe_copy, wait_for_workers, worker_pids
from harness.clients import raw_request
from harness.figures import record
from harness.load import Outcome
from harness.processes import wait_for_text
from harness.serving import Served, serve
from harness.venvs import production_env
from harness.waiting import eventually

# 2 workers whatever the machine's CPUs; figures name what gunicorn resolved (Served.label).
GTHREAD = {"WEB_CONCURRENCY": "2"}
SYNC = {"WEB_CONCURRENCY": "2", "GUNICORN_WORKER_CLASS": "sync", "GUNICORN_THREADS": "1"}
# Each stack: behind the project's nginx config on a unix socket (as deployed on a host) or
# alone on a loopback port, and its workers.
STACKS = {"gthread": (False, GTHREAD), "sync": (False, SYNC), "nginx": (True, GTHREAD)}
# No access log, and no recycling unless asked: worker PIDs change only by what the test does.
QUIET = {"GUNICORN_ACCESS_LOG": "", "GUNICORN_MAX_REQUESTS": "0"}

Chaos = Callable[..., AbstractContextManager[Served]]


@pytest.fixture(scope="module")
def chaos(default_project: Path, venv_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Chaos:
    """`chaos(stack, **settings)` serves the copy with production settings plus `settings`."""
    project = probe_copy(default_project, tmp_path_factory.mktemp("chaos") / "project")

    def start(
        stack: str = "gthread", split_stderr: bool = False, **settings: str
    ) -> AbstractContextManager[Served]:
        nginx, workers = STACKS[stack]
        env = production_env(venv_bin, **workers | settings)
        logs, app = tmp_path_factory.mktemp("logs"), "probe_wsgi:app"
        return serve(project, logs, env, app=app, behind_nginx=nginx, split_stderr=split_stderr)

    return start


def sighup(served: Served) -> None:
    old = served.workers(2)
    with served.load(clients=4) as load:
        load.wait_for(ok=100)
        sent = time.monotonic()
        os.kill(served.pid, signal.SIGHUP)
        wait_for_workers(
            served.pid, lambda p: len(p) == 2 and not p & old, "replacement of both workers"
        )
        replaced_in = time.monotonic() - sent
        load.wait_for(ok=100)  # and the new workers serve
    served.wait_for_log("Handling signal: hup")
    record(
        "02-sighup-nginx" if served.nginx else "01-sighup",
        "SIGHUP to the master, 4 clients looping",
        served.label,
        f"{len(load.failed)} failed of {len(load.outcomes)}; "
        f"2/2 workers replaced in {replaced_in:.1f} s",
        "0 failed, every worker replaced",
    )
    assert not load.failed, load.summary()


KILLS = 3
# Behind nginx, failed requests per kill, as the README claims: the generated nginx sends no
# request again (proxy_next_upstream off, tests/live/test_nginx.py), so what was in
# flight on the victim fails: at most one request per looping client.
NGINX_LOSSES_PER_KILL = 4


@dataclass(frozen=True)
class Kill:
    stopped: float  # time.time(), Load's clock, when the victim was frozen (SIGSTOP)
    victim: int
    held: int  # client connections the victim held then: all it can take with it
    respawn: float  # seconds until the master had forked a replacement

    def overlaps(self, o: Outcome) -> bool:
        return o.started <= self.stopped + self.respawn and o.ended >= self.stopped


def kill_9(served: Served, sync: bool) -> None:
    """SIGKILL one worker KILLS times while 4 clients loop. Each victim is first frozen with
    SIGSTOP, so that it accepts nothing more while its connections are counted."""
    kills = []
    workers = served.workers(2)
    with served.load(clients=4) as load:
        load.wait_for(ok=50)
        for _ in range(KILLS):
            victim = min(workers)
            os.kill(victim, signal.SIGSTOP)
            stopped = time.time()
            held = connections_held(victim, served.pid)
            os.kill(victim, signal.SIGKILL)
            workers = wait_for_workers(
                served.pid,
                lambda pids, victim=victim: len(pids) == 2 and victim not in pids,
                f"respawn after killing {victim}",
                timeout=10,
            )
            kills.append(Kill(stopped, victim, held, time.time() - stopped))
            load.wait_for(ok=50)  # the survivors and the new worker serve
    # A failure belongs to the kill it overlapped (in flight between SIGSTOP and the respawn:
    # behind nginx, a request on a kept connection to the victim just after SIGKILL fails too).
    failed = load.failed
    hits = [next((i for i, k in enumerate(kills) if k.overlaps(o)), None) for o in failed]
    per_kill = [hits.count(i) for i in range(KILLS)]
    unexplained = [o for o, hit in zip(failed, hits, strict=True) if hit is None]
    # A killed worker takes the connections it holds: one at most for sync, those its threads
    # serve (and any it accepted greedily) for gthread; the listen queue's are served.
    limit = NGINX_LOSSES_PER_KILL if served.nginx else None
    lost = ", ".join(f"{n} of {kill.held}" for n, kill in zip(per_kill, kills, strict=True))
    respawn = max(kill.respawn for kill in kills)
    record(
        "04-kill9-nginx" if served.nginx else f"03-kill9-{'sync' if sync else 'gthread'}",
        f"kill -9 of one worker, {KILLS} times, 4 clients looping",
        served.label,
        f"{len(load.failed)} failed of {len(load.outcomes)} ({load.failure_kinds()}); "
        f"per kill, failed of the connections the victim held: {lost}; "
        f"respawn in {respawn * 1000:.0f} ms at most",
        f"per kill: failed ≤ {f'{limit} and ≤ ' if limit else ''}connections the victim held; "
        "none failed otherwise; respawn < 1 s",
    )
    assert not unexplained, [o.error or o.status for o in unexplained]
    for n, kill in zip(per_kill, kills, strict=True):
        assert n <= min(limit or kill.held, kill.held), f"{n} failed ({lost}): {load.summary()}"
    if sync:
        assert max(kill.held for kill in kills) <= 1, "a sync worker holds one connection"
    assert respawn < 1.0, kills


def sigterm_in_flight(served: Served, marks: Path) -> None:
    in_flight = 8  # fewer than the 2 workers' threads: each request is in a thread
    with served.load("/_chaos/sleep?s=3", clients=in_flight, per_client=1, timeout=20) as load:
        eventually(lambda: len(list(marks.iterdir())) >= in_flight, 15, what=f"{in_flight} started")
        sent = time.monotonic()
        os.kill(served.pid, signal.SIGTERM)
    returncode = served.process.wait(timeout=35)
    stopped_in = time.monotonic() - sent
    record(
        "05-sigterm-in-flight",
        f"SIGTERM with {in_flight} requests of 3 s in flight",
        served.label,
        f"{load.ok}/{in_flight} completed; master exited {stopped_in:.1f} s after SIGTERM",
        "100% completed, exit 0 within graceful_timeout (30 s)",
    )
    assert load.ok == in_flight, load.summary()
    assert returncode == 0
    assert stopped_in < 30


@pytest.mark.parametrize("stack", ["gthread", "nginx", "sync"])
def test_sighup_kill_9_and_sigterm_lose_no_request_but_the_victims(
    chaos: Chaos, tmp_path: Path, stack: str
) -> None:
    marks = tmp_path / "marks"  # each /_chaos/sleep request leaves a file as it starts
    marks.mkdir()
    with chaos(stack, **QUIET, CHAOS_MARKS=str(marks)) as served:
        if stack != "sync":
            sighup(served)
        kill_9(served, sync=stack == "sync")
        if stack == "gthread":
            sigterm_in_flight(served, marks)


@pytest.mark.parametrize("stack", ["gthread", "sync"])
def test_sigterm_and_the_listen_queue(chaos: Chaos, stack: str) -> None:
    count, clients = (5 if stack == "sync" else 2), 8
    with chaos(stack, **QUIET, WEB_CONCURRENCY=str(count)) as served:
        served.workers(count)
        with served.load("/_chaos/sleep?s=0.05", clients=clients, timeout=10) as load:
            load.wait_for(ok=40)
            sent = time.time()  # the clock of Load's outcomes
            os.kill(served.pid, signal.SIGTERM)
            load.stop()  # each client finishes the request it has started
        returncode = served.process.wait(timeout=35)
    assert returncode == 0, served.output()[-3000:]
    sent_before = [o for o in load.outcomes if o.started < sent and o.ended > sent]
    lost = [o for o in sent_before if not o.ok]
    record(
        f"06-sigterm-queue-{stack}",
        f"SIGTERM while {clients} clients loop on a 50 ms route",
        served.label,
        f"{len(sent_before) - len(lost)} of {len(sent_before)} requests in flight finished, "
        f"{len(lost)} reset",
        "gthread: all finish; sync: the ones no worker had accepted are reset",
    )
    # Not vacuous: clients pause 2 ms between 50 ms requests, so most have one in flight.
    assert len(sent_before) >= clients // 2, f"{len(sent_before)} in flight: {load.summary()}"
    if stack == "gthread":
        # gthread workers accept every waiting connection at once (up to worker_connections):
        # none waits in the kernel's queue when the listening socket closes.
        assert not lost, f"{[o.error for o in lost]} of {len(sent_before)}: {load.summary()}"
    else:
        # A sync worker accepts one connection at a time: the rest wait in the listen queue
        # and are reset when it closes.
        assert len(sent_before) - len(lost) >= min(count, len(sent_before)) - 1


TIMEOUT = 2  # GUNICORN_TIMEOUT for these tests (the generated default is longer)


@pytest.mark.parametrize("stack", ["gthread", "sync", "nginx"])
def test_a_stuck_request_gets_its_worker_replaced_and_a_bare_500(chaos: Chaos, stack: str) -> None:
    with chaos(stack, **QUIET, GUNICORN_TIMEOUT=str(TIMEOUT)) as served:
        before = served.workers(2)
        with served.load(clients=2) as load:
            load.wait_for(ok=20)
            sent = time.monotonic()
            answer: Any
            try:
                answer = served.get("/_chaos/sleep?s=60", timeout=20)
            except OSError as exc:  # the worker went away without answering
                answer = type(exc).__name__
            waited = time.monotonic() - sent
            wait_for_workers(
                served.pid, lambda p: len(p) == 2 and len(p - before) == 1, "stuck one replaced"
            )
            load.wait_for(ok=20)
        if served.nginx:
            # nginx sends a GET whose connection closed unanswered to the next worker, which
            # then gets stuck too: time enough for that.
            time.sleep(TIMEOUT + 1.5)
        log = served.output()
    # gunicorn_hooks.py's line for gthread, the master's own timeout (SIGABRT) for sync.
    line = "WORKER TIMEOUT (pid:" if stack == "sync" else f"past the {TIMEOUT} s timeout"
    restarts = log.count(line)
    shown = answer if isinstance(answer, str) else f"HTTP {answer.status}"
    record(
        "08-stuck-nginx" if served.nginx else f"07-stuck-{stack}",
        f"a request that blocks past timeout ({TIMEOUT} s), 2 clients looping",
        served.label,
        f"{restarts} worker replaced; stuck client got {shown} after {waited:.1f} s; "
        f"{len(load.failed)} other requests failed of {len(load.outcomes)}",
        f"1 worker replaced{' (no retry)' if served.nginx else ''}, a bare 500, "
        "0 other failures, the stack in the log",
    )
    assert not load.failed, load.summary()
    assert waited < TIMEOUT + 5
    # The client gets gunicorn's bare 500 page, the log gets where it was stuck.
    assert not isinstance(answer, str), f"no answer: {answer}"
    assert answer.status == 500 and b"Traceback" not in answer.body, answer
    assert 'probe_wsgi.py", line' in log and "time.sleep(seconds)" in log, log
    # One worker only: the 500 stops nginx from sending the request to the next.
    assert restarts == 1, log


def test_max_requests_recycles_workers_without_failing_a_request(chaos: Chaos) -> None:
    recycles = 8  # limits far below the generated defaults, so that workers recycle often
    limits = {"GUNICORN_MAX_REQUESTS": "50", "GUNICORN_MAX_REQUESTS_JITTER": "25"}
    with chaos("gthread", **QUIET | limits) as served:
        seen = set(served.workers(2))

        def recycled() -> bool:
            seen.update(worker_pids(served.pid))
            return len(seen) - 2 >= recycles

        with served.load(clients=4) as load:
            eventually(recycled, 20, what=f"{recycles} workers recycled", interval=0.01)
    # Read once gunicorn has stopped: every line is in the log by then.
    restarts = served.output().count("Autorestarting worker after current request")
    record(
        "09-max-requests",
        "max_requests 50 + jitter 25, 4 clients looping",
        served.label,
        f"{len(seen) - 2} workers recycled, {len(load.failed)} failed of {len(load.outcomes)}",
        f"≥ {recycles} recycled, 0 failed",
    )
    assert restarts >= recycles, "each one restarted for max_requests"
    assert not load.failed, load.summary()


CRASH_MARKER = "probe-secret-7c1e"  # harness/apps/probe_wsgi.py's
# What must never reach a client: the exception, its message, the code.
LEAKS = [CRASH_MARKER, "hunter2", "Traceback", "RuntimeError", "probe_wsgi", 'File "']


@pytest.fixture(scope="module")
def production(chaos: Chaos) -> Iterator[Served]:
    """Production as shipped (the generated defaults and a secret), stdout (the access log) and
    stderr (the error log) in separate files."""
    with chaos(split_stderr=True) as served:
        yield served


def test_production_hides_errors_and_the_debugger_and_secures_the_session_cookie(
    chaos: Chaos, production: Served
) -> None:
    response = production.get("/_probe/crash")
    assert response.status == 500
    assert b"Internal Server Error" in response.body
    leaked = [leak for leak in LEAKS if leak.encode() in response.body]
    assert production.process.stderr is not None
    stderr = wait_for_text(production.process.stderr, CRASH_MARKER)
    stdout = wait_for_text(production.process.log, re.escape('"GET /_probe/crash HTTP/1.1" 500'))
    record(
        "20-error-500",
        "an exception in a view, production settings",
        production.label,
        f"HTTP 500, generic page ({len(response.body)} bytes), {len(leaked)} leaks; "
        "traceback on stderr, access line on stdout",
        "no traceback or message to the client; traceback on stderr",
    )
    assert not leaked, response.body
    # Flask logs the exception through wsgi.errors, which gunicorn's errorlog "-" sends to stderr.
    assert "Exception on /_probe/crash [GET]" in stderr
    assert "Traceback (most recent call last)" in stderr and 'probe_wsgi.py", line' in stderr
    assert CRASH_MARKER not in stdout, "the traceback belongs on stderr, not in the access log"

    response = production.get("/_chaos/session")
    assert response.status == 200
    cookie = SimpleCookie(response.headers["set-cookie"])["session"]
    flags = f"Secure={cookie['secure']}, HttpOnly={cookie['httponly']}, "
    flags += f"SameSite={cookie['samesite']}"
    record(
        "21-session-cookie",
        "the session cookie, production settings",
        production.label,
        flags,
        "Secure, HttpOnly, SameSite=Lax",
    )
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Lax", flags

    # No debugger, not even with a stray FLASK_DEBUG: it only configures Flask; the debugger
    # needs `flask run` or app.run(), which a server like gunicorn never calls.
    with chaos(WEB_CONCURRENCY="1", FLASK_DEBUG="1") as debug:
        for name, served in {"shipped": production, "FLASK_DEBUG=1": debug}.items():
            assert served.get("/console").status == 404, name
            # The debugger serves its own files on any URL with these arguments.
            asset = served.get("/?__debugger__=yes&cmd=resource&f=debugger.js")
            assert b"Werkzeug" not in asset.body, f"{name}: the debugger's script is served"
            assert "javascript" not in asset.headers.get("content-type", ""), name
            crash = served.get("/_probe/crash")
            assert crash.status == 500, name
            assert b"__debugger__" not in crash.body and b"Traceback" not in crash.body, name


@pytest.mark.parametrize(
    "settings",
    [{}, {"FLASK_SECRET_KEY": ""}, {"FLASK_DEBUG": "0"}, {"FLASK_DEBUG": "false"}],
    ids=["unset", "empty", "debug-0", "debug-false"],
)
def test_production_has_no_default_secret_key(
    default_project: Path, run_env: Callable[..., dict[str, str]], settings: dict[str, str]
) -> None:
    check = (
        "from demo_shop import config, create_app\n"
        "assert 'SECRET_KEY' not in config.DEFAULTS, 'a default secret'\n"
        "app = create_app()\n"
        "print('STARTED with', repr(app.config['SECRET_KEY']))\n"
    )
    result = subprocess.run(
        ["python", "-c", check],
        cwd=default_project,
        env=run_env(**settings),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "STARTED" not in result.stdout, result.stdout
    assert result.returncode == 4, result.stderr  # the app's "failed to load" code
    assert result.stderr.startswith("FLASK_SECRET_KEY"), result.stderr


# Raw requests, each wrong in one way; {host} is the site's name.
GET = b"GET / HTTP/1.1\r\nHost: {host}\r\n"
POST = b"POST / HTTP/1.1\r\nHost: {host}\r\n"
HOSTILE = {
    "header of 10 KB": GET + b"X-Big: " + b"a" * 10_000 + b"\r\n\r\n",
    # More than nginx's 32 kB of headers and gunicorn's limit_request_fields (a hundred or so
    # are a normal request: they reach the app).
    "9,000 headers": GET + b"".join(b"X-H%d: 1\r\n" % i for i in range(9000)) + b"\r\n",
    "request line of 10 KB": b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: {host}\r\n\r\n",
    "two Host headers": GET + b"Host: evil.example\r\n\r\n",
    "Host with a control byte": b"GET / HTTP/1.1\r\nHost: ev\x01il.example\r\n\r\n",
    "Host with a space": b"GET / HTTP/1.1\r\nHost: evil example\r\n\r\n",
    "unknown Host": b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    "TLS on the HTTP port": bytes.fromhex("16030100a5010000a10303") + bytes(50) + b"\r\n\r\n",
    "invalid method": b"G@T / HTTP/1.1\r\nHost: {host}\r\n\r\n",
    "invalid version": b"GET / HTTP/1.1.1\r\nHost: {host}\r\n\r\n",
    "NUL in a header": GET + b"X-A: a\x00b\r\n\r\n",
    "Content-Length and chunked (smuggling)": POST
    + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two Content-Lengths": POST + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "invalid chunk size": POST + b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n",
    "obsolete line folding": GET + b"X-A: a\r\n b\r\n\r\n",
    "path traversal": b"GET /static/../../etc/passwd HTTP/1.1\r\nHost: {host}\r\n\r\n",
}
CLOSED = 0  # the connection closed without an answer (nginx's 444)


def status_of(port: int, request: bytes, host: str) -> int:
    head = raw_request(port, request.replace(b"{host}", host.encode()))
    return int(head.split()[1]) if head else CLOSED


@pytest.mark.parametrize("behind_nginx", [False, True], ids=["gunicorn-alone", "nginx"])
def test_hostile_input_gets_4xx_and_kills_no_worker(
    chaos: Chaos, production: Served, behind_nginx: bool
) -> None:
    # Without nginx, Host names are for the app to check: Flask's TRUSTED_HOSTS refuses the
    # others with a 400. nginx drops requests for other host names without an answer (444).
    trusted = {} if behind_nginx else {"FLASK_TRUSTED_HOSTS": '["example.com"]'}
    with chaos("nginx" if behind_nginx else "gthread", **trusted) as served:
        host = served.host or "example.com"
        before = served.workers(2)
        statuses = {name: status_of(served.port, raw, host) for name, raw in HOSTILE.items()}
        assert served.get("/healthz", {"Host": host}).status == 200
        assert worker_pids(served.pid) == before, "a worker died or was replaced"
        log = served.output()
        assert "Traceback" not in log and "exited with code" not in log, log
    dropped = {name for name, code in statuses.items() if code == CLOSED}
    not_4xx = {n: c for n, c in statuses.items() if not 400 <= c < 500 and n not in dropped}
    counts = Counter(statuses.values())
    summary = ", ".join(f"{c or 'closed'}×{counts[c]}" for c in sorted(counts, reverse=True))
    label, figure = served.label, " (closed: 444, unknown names); 0 workers died"
    if not behind_nginx:
        # The shipped defaults (no TRUSTED_HOSTS): which Host names reach the app.
        open_hosts = sum(
            status_of(production.port, HOSTILE[name], "example.com") == 200
            for name in ("Host with a space", "unknown Host")
        )
        label = f"{served.label} alone, FLASK_TRUSTED_HOSTS set"
        figure = f"; 0 workers died. Without TRUSTED_HOSTS {open_hosts} bad Host cases "
        figure += "reach the app"
    record(
        "31-hostile-nginx" if behind_nginx else "30-hostile-gunicorn",
        f"{len(HOSTILE)} malformed or hostile requests (see test)",
        label,
        summary + figure,
        f"4xx{' or dropped (444)' if behind_nginx else ''} for every one, no worker dies",
    )
    assert dropped <= ({"unknown Host"} if behind_nginx else set()), dropped
    assert not not_4xx, not_4xx
