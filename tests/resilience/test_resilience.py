"""What production users fear, measured: signals, crashes, stuck requests, recycling.

A copy of the default project gets test-only routes (harness/apps/chaos_routes.py)
and runs under real gunicorn with its generated gunicorn.conf.py, alone and
behind the project's real nginx config, on loopback. A bounded load generator
(harness/load.py) keeps requests flowing while a test signals, kills or
blocks workers; every assertion is a count (failed requests, workers
replaced), except the bounds the scenario itself names (respawn within 1 s,
shutdown within graceful_timeout). Each test records its figure
(harness/figures.py) for the README's table.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.chaos import chaos_copy, connections_held, wait_for_workers, worker_pids
from harness.figures import record
from harness.load import Load, Outcome
from harness.serving import Served, serve
from harness.venvs import production_env
from harness.waiting import eventually

# The worker setups under test, as the generated gunicorn.conf.py reads them:
# gthread with its default threads, as generated; 2 workers, whatever the
# machine's CPUs. Figures name the settings gunicorn resolved (Served.label).
WORKERS = {
    "gthread": {"WEB_CONCURRENCY": "2"},
    "sync": {"WEB_CONCURRENCY": "2", "GUNICORN_WORKER_CLASS": "sync", "GUNICORN_THREADS": "1"},
}
# No access log (thousands of lines), and no recycling unless a test asks:
# worker PIDs then change only because of what the test does.
QUIET = {"GUNICORN_ACCESS_LOG": "", "GUNICORN_MAX_REQUESTS": "0"}

Serve = Callable[..., AbstractContextManager[Served]]


@pytest.fixture(scope="module")
def chaos_project(default_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chaos_copy(default_project, tmp_path_factory.mktemp("chaos") / "project")


@pytest.fixture
def gunicorn(chaos_project: Path, venv_bin: Path, tmp_path: Path) -> Serve:
    """`with gunicorn(behind_nginx=False, **settings) as served:` gunicorn alone on
    a loopback port, or behind the project's nginx config on a unix socket, as
    deployed on a host."""

    def start(behind_nginx: bool = False, **settings: str) -> AbstractContextManager[Served]:
        env = production_env(venv_bin, **QUIET | settings)
        return serve(chaos_project, tmp_path, env, app="chaos_wsgi:app", behind_nginx=behind_nginx)

    return start


# -- SIGHUP: a graceful reload --------------------------------------------------------


# Tests that run several stacks take the figure's key as parameter: it names the
# stack ("-nginx": behind nginx; "-sync": sync workers, else gthread).


def stack_of(key: str) -> tuple[bool, bool, dict[str, str]]:
    """From a figure's key: behind nginx or not, sync workers or not, and their settings."""
    sync = key.endswith("-sync")
    return key.endswith("-nginx"), sync, WORKERS["sync" if sync else "gthread"]


@pytest.mark.parametrize("key", ["01-sighup", "02-sighup-nginx"])
def test_sighup_replaces_every_worker_without_failing_a_request(gunicorn: Serve, key: str) -> None:
    behind_nginx, _, workers = stack_of(key)
    with gunicorn(behind_nginx, **workers) as served:
        old = served.workers(2)
        with served.load(clients=4) as load:
            load.wait_for(ok=100)
            sent = time.monotonic()
            os.kill(served.pid, signal.SIGHUP)
            wait_for_workers(
                served.pid,
                lambda pids: len(pids) == 2 and not pids & old,
                "replacement of both workers",
            )
            replaced_in = time.monotonic() - sent
            load.wait_for(ok=100)  # and the new workers serve
        served.wait_for_log("Handling signal: hup")
    record(
        key,
        "SIGHUP to the master, 4 clients looping",
        served.label,
        f"{len(load.failed)} failed of {len(load.outcomes)}; "
        f"2/2 workers replaced in {replaced_in:.1f} s",
        "0 failed, every worker replaced",
    )
    assert not load.failed, load.summary()


# -- kill -9 of a worker ------------------------------------------------------------

KILLS = 3
# Behind nginx, what the README claims and so what the test allows: failed
# requests per kill. The generated nginx sends no request again
# (proxy_next_upstream off: a request that killed its worker would kill the
# next one too, tests/live/test_app_behind_nginx.py), so what was in flight on
# the victim fails: at most one request per looping client.
NGINX_LOSSES_PER_KILL = 4


@dataclass(frozen=True)
class Kill:
    stopped: float  # time.time(), Load's clock, when the victim was frozen (SIGSTOP)
    victim: int
    held: int  # client connections the victim held then: all it can take with it
    respawn: float  # seconds until the master had forked a replacement


def kill_workers_under_load(served: Served) -> tuple[Load, list[Kill]]:
    """SIGKILL one worker KILLS times while 4 clients loop; return the load and the kills.

    Each victim is first frozen with SIGSTOP, so that it accepts nothing more
    while its connections are counted; then it is killed.
    """
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
    return load, kills


def failures_by_kill(load: Load, kills: list[Kill]) -> tuple[list[int], list[Outcome]]:
    """Each failed request tied to the kill it overlapped (in flight between
    SIGSTOP and the replacement's start: behind nginx, a request sent on a kept
    connection to the victim just after SIGKILL fails too, as nginx sends
    nothing again): the count per kill, and the failures that overlapped none."""
    per_kill = [0] * len(kills)
    unexplained = []
    for outcome in load.failed:
        overlapped = [
            i
            for i, kill in enumerate(kills)
            if outcome.started <= kill.stopped + kill.respawn and outcome.ended >= kill.stopped
        ]
        if overlapped:
            per_kill[overlapped[0]] += 1
        else:
            unexplained.append(outcome)
    return per_kill, unexplained


@pytest.mark.parametrize("key", ["03-kill9-sync", "03-kill9-gthread", "04-kill9-nginx"])
def test_kill_9_of_a_worker_costs_only_its_requests_in_flight(gunicorn: Serve, key: str) -> None:
    behind_nginx, sync, workers = stack_of(key)
    with gunicorn(behind_nginx, **workers) as served:
        load, kills = kill_workers_under_load(served)
    # A killed worker takes the connections it holds with it: one at most for
    # sync, those its threads serve (and any it accepted greedily) for gthread.
    # Connections still in the listen queue belong to the socket: they are served.
    # Behind nginx, a request lost with its worker gets nginx's 502 page: nginx
    # does not send it again (proxy_next_upstream off).
    per_kill, unexplained = failures_by_kill(load, kills)
    limit = NGINX_LOSSES_PER_KILL if behind_nginx else None
    lost = ", ".join(f"{n} of {kill.held}" for n, kill in zip(per_kill, kills, strict=True))
    record(
        key,
        f"kill -9 of one worker, {KILLS} times, 4 clients looping",
        served.label,
        f"{len(load.failed)} failed of {len(load.outcomes)} ({load.failure_kinds()}); "
        f"per kill, failed of the connections the victim held: {lost}; "
        f"respawn in {max(kill.respawn for kill in kills) * 1000:.0f} ms at most",
        f"per kill: failed ≤ {f'{limit} and ≤ ' if limit else ''}connections the victim held; "
        "none failed otherwise; respawn < 1 s",
    )
    assert not unexplained, [o.error or o.status for o in unexplained]
    for n, kill in zip(per_kill, kills, strict=True):
        assert n <= min(limit or kill.held, kill.held), f"{n} failed ({lost}): {load.summary()}"
    if sync:
        assert max(kill.held for kill in kills) <= 1, "a sync worker holds one connection"
    assert max(kill.respawn for kill in kills) < 1.0, kills


# -- SIGTERM: a graceful shutdown ------------------------------------------------------


def test_sigterm_lets_every_request_in_flight_finish(gunicorn: Serve, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    in_flight = 8  # fewer than the 2 workers' threads: each request is in a thread
    with gunicorn(**WORKERS["gthread"], CHAOS_MARKS=str(marks)) as served:
        load = served.load("/_chaos/sleep?s=3", clients=in_flight, per_client=1, timeout=20)
        with load:
            eventually(
                lambda: len(list(marks.iterdir())) >= in_flight,
                15,
                what=f"{in_flight} requests started",
            )
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


@pytest.mark.parametrize("key", ["06-sigterm-queue-gthread", "06-sigterm-queue-sync"])
def test_sigterm_and_the_listen_queue(gunicorn: Serve, key: str) -> None:
    _, sync, workers = stack_of(key)
    settings = workers | ({"WEB_CONCURRENCY": "5"} if sync else {})
    clients = 8
    with gunicorn(**settings) as served:
        count = int(settings["WEB_CONCURRENCY"])
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
        key,
        f"SIGTERM while {clients} clients loop on a 50 ms route",
        served.label,
        f"{len(sent_before) - len(lost)} of {len(sent_before)} requests in flight finished, "
        f"{len(lost)} reset",
        "gthread: all finish; sync: the ones no worker had accepted are reset",
    )
    # Not vacuous: the clients loop with 2 ms pauses between 50 ms requests,
    # so at SIGTERM most of them have a request in flight.
    assert len(sent_before) >= clients // 2, f"{len(sent_before)} in flight: {load.summary()}"
    if not sync:
        # gthread workers accept every waiting connection at once (up to
        # worker_connections), so none waits in the kernel's queue when the
        # listening socket closes: every request sent before SIGTERM finishes.
        assert not lost, f"{[o.error for o in lost]} of {len(sent_before)}: {load.summary()}"
    else:
        # A sync worker accepts one connection at a time: at most one request
        # per worker is inside gunicorn, the rest wait in the listen queue and
        # are reset when it closes.
        assert len(sent_before) - len(lost) >= min(count, len(sent_before)) - 1


# -- a stuck request -----------------------------------------------------------------

TIMEOUT = 2  # GUNICORN_TIMEOUT for these tests (the generated default is longer)


@pytest.mark.parametrize("key", ["07-stuck-gthread", "07-stuck-sync", "08-stuck-nginx"])
def test_a_stuck_request_gets_its_worker_replaced_and_a_bare_500(gunicorn: Serve, key: str) -> None:
    behind_nginx, sync, workers = stack_of(key)
    settings = workers | {"GUNICORN_TIMEOUT": str(TIMEOUT)}
    with gunicorn(behind_nginx, **settings) as served:
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
                served.pid,
                lambda pids: len(pids) == 2 and len(pids - before) == 1,
                "replacement of the stuck worker",
            )
            load.wait_for(ok=20)
        if behind_nginx:
            # nginx sends a GET whose connection closed without an answer to the
            # next worker, which then gets stuck too: time enough for that.
            time.sleep(TIMEOUT + 1.5)
        log = served.output()
    # gunicorn_hooks.py's line for gthread, the master's own timeout (SIGABRT) for sync.
    restarts = log.count("WORKER TIMEOUT (pid:" if sync else f"past the {TIMEOUT} s timeout")
    shown = answer if isinstance(answer, str) else f"HTTP {answer.status}"
    record(
        key,
        f"a request that blocks past timeout ({TIMEOUT} s), 2 clients looping",
        served.label,
        f"{restarts} worker replaced; stuck client got {shown} after {waited:.1f} s; "
        f"{len(load.failed)} other requests failed of {len(load.outcomes)}",
        f"1 worker replaced{' (no retry)' if behind_nginx else ''}, a bare 500, "
        "0 other failures, the stack in the log",
    )
    assert not load.failed, load.summary()
    assert waited < TIMEOUT + 5
    # The client gets gunicorn's bare 500 page, the log gets where it was stuck.
    assert not isinstance(answer, str), f"no answer: {answer}"
    assert answer.status == 500 and b"Traceback" not in answer.body, answer
    assert 'chaos_routes.py", line' in log and "time.sleep(seconds)" in log, log
    # One worker only: the 500 stops nginx from sending the request to the next.
    assert restarts == 1, log


# -- max_requests: recycling workers to cap memory growth ------------------------------


def test_max_requests_recycles_workers_without_failing_a_request(gunicorn: Serve) -> None:
    # Far below the generated defaults, so that workers recycle often.
    limits = {"GUNICORN_MAX_REQUESTS": "50", "GUNICORN_MAX_REQUESTS_JITTER": "25"}
    recycles = 8
    with gunicorn(**WORKERS["gthread"], **limits) as served:
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
