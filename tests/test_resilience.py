"""What production users fear, measured: signals, crashes, stuck requests, recycling.

A copy of the default project gets test-only routes (tests/helpers/chaos.py)
and runs under real gunicorn with its generated gunicorn.conf.py, alone and
behind the project's real nginx config, on loopback. A bounded load generator
(tests/helpers/load.py) keeps requests flowing while a test signals, kills or
blocks workers; every assertion is a count (failed requests, workers
replaced), except the bounds the scenario itself names (respawn within 1 s,
shutdown within graceful_timeout). Each test records its figure
(tests/helpers/figures.py) for the README's table.
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

from tests.helpers.chaos import chaos_copy, connections_held, wait_for_workers, worker_pids
from tests.helpers.figures import record
from tests.helpers.load import Load, Outcome
from tests.helpers.servers import http_get
from tests.helpers.stack import Stack, gunicorn_stack, nginx_stack, project_env

pytestmark = pytest.mark.resilience

APP = ["gunicorn", "-c", "gunicorn.conf.py", "chaos_wsgi:app"]
# The worker setups under test, as the generated gunicorn.conf.py reads them:
# gthread with its default threads, as generated; 2 workers, whatever the
# machine's CPUs. Figures name the settings gunicorn resolved (Stack.label).
WORKERS = {
    "gthread": {"WEB_CONCURRENCY": "2"},
    "sync": {"WEB_CONCURRENCY": "2", "GUNICORN_WORKER_CLASS": "sync", "GUNICORN_THREADS": "1"},
}
# No access log (thousands of lines), and no recycling unless a test asks:
# worker PIDs then change only because of what the test does.
QUIET = {"GUNICORN_ACCESS_LOG": "", "GUNICORN_MAX_REQUESTS": "0"}

Serve = Callable[..., AbstractContextManager[Stack]]


@pytest.fixture(scope="module")
def chaos_project(default_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chaos_copy(default_project, tmp_path_factory.mktemp("chaos") / "project")


@pytest.fixture
def gunicorn(chaos_project: Path, venv_bin: Path, tmp_path: Path) -> Serve:
    """`with gunicorn(**settings) as stack:` gunicorn alone on a loopback port."""

    def serve(**settings: str) -> AbstractContextManager[Stack]:
        env = project_env(venv_bin, **QUIET | settings)
        return gunicorn_stack(APP, chaos_project, env, tmp_path)

    return serve


@pytest.fixture
def behind_nginx(chaos_project: Path, venv_bin: Path, tmp_path: Path) -> Serve:
    """`with behind_nginx(**settings) as stack:` the project's nginx config in
    front of gunicorn on a unix socket, as deployed on a host."""

    def serve(**settings: str) -> AbstractContextManager[Stack]:
        env = project_env(venv_bin, **QUIET | settings)
        return nginx_stack(APP, chaos_project, env, tmp_path / "stack")

    return serve


# -- SIGHUP: a graceful reload --------------------------------------------------------


def sighup_under_load(stack: Stack) -> tuple[Load, float]:
    """SIGHUP the master while 4 clients loop; wait until no old worker is left."""
    old = stack.workers(2)
    with stack.load(clients=4) as load:
        load.wait_for(ok=100)
        sent = time.monotonic()
        os.kill(stack.master, signal.SIGHUP)
        wait_for_workers(
            stack.master,
            lambda pids: len(pids) == 2 and not pids & old,
            "replacement of both workers",
        )
        replaced_in = time.monotonic() - sent
        load.wait_for(ok=100)  # and the new workers serve
    return load, replaced_in


def test_sighup_replaces_every_worker_without_failing_a_request(gunicorn: Serve) -> None:
    with gunicorn(**WORKERS["gthread"]) as stack:
        load, replaced_in = sighup_under_load(stack)
        assert "Handling signal: hup" in stack.gunicorn.output()
    record(
        "01-sighup",
        "SIGHUP to the master, 4 clients looping",
        stack.label,
        f"{len(load.failed)} failed of {len(load.outcomes)}; "
        f"2/2 workers replaced in {replaced_in:.1f} s",
        "0 failed, every worker replaced",
    )
    assert not load.failed, load.summary()


@pytest.mark.nginx
def test_sighup_behind_nginx_fails_no_request(behind_nginx: Serve) -> None:
    with behind_nginx(**WORKERS["gthread"]) as stack:
        load, replaced_in = sighup_under_load(stack)
    record(
        "02-sighup-nginx",
        "SIGHUP to the master, 4 clients looping",
        stack.label,
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
# next one too, tests/test_app_behind_nginx.py), so what was in flight on the
# victim fails: at most one request per looping client.
NGINX_LOSSES_PER_KILL = 4


@dataclass(frozen=True)
class Kill:
    stopped: float  # time.time(), Load's clock, when the victim was frozen (SIGSTOP)
    killed: float  # and when SIGKILL was sent, a moment later
    victim: int
    held: int  # client connections the victim held then: all it can take with it
    respawn: float  # seconds until the master had forked a replacement


def kill_workers_under_load(stack: Stack) -> tuple[Load, list[Kill]]:
    """SIGKILL one worker KILLS times while 4 clients loop; return the load and the kills.

    Each victim is first frozen with SIGSTOP, so that it accepts nothing more
    while its connections are counted; then it is killed.
    """
    kills = []
    workers = stack.workers(2)
    with stack.load(clients=4) as load:
        load.wait_for(ok=50)
        for _ in range(KILLS):
            victim = min(workers)
            os.kill(victim, signal.SIGSTOP)
            stopped = time.time()
            held = connections_held(victim, stack.master)
            os.kill(victim, signal.SIGKILL)
            killed = time.time()
            workers = wait_for_workers(
                stack.master,
                lambda pids, victim=victim: len(pids) == 2 and victim not in pids,
                f"respawn after killing {victim}",
                deadline=10,
            )
            kills.append(Kill(stopped, killed, victim, held, time.time() - stopped))
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


def kill_figure(load: Load, kills: list[Kill], per_kill: list[int]) -> str:
    lost = ", ".join(f"{n} of {kill.held}" for n, kill in zip(per_kill, kills, strict=True))
    return (
        f"{len(load.failed)} failed of {len(load.outcomes)} ({load.failure_kinds()}); "
        f"per kill, failed of the connections the victim held: {lost}; "
        f"respawn in {max(kill.respawn for kill in kills) * 1000:.0f} ms at most"
    )


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_kill_9_of_a_worker_costs_only_its_requests_in_flight(
    gunicorn: Serve, worker_class: str
) -> None:
    with gunicorn(**WORKERS[worker_class]) as stack:
        load, kills = kill_workers_under_load(stack)
    # A killed worker takes the connections it holds with it: one at most for
    # sync, those its threads serve (and any it accepted greedily) for gthread.
    # Connections still in the listen queue belong to the socket: they are served.
    per_kill, unexplained = failures_by_kill(load, kills)
    record(
        f"03-kill9-{worker_class}",
        f"kill -9 of one worker, {KILLS} times, 4 clients looping",
        stack.label,
        kill_figure(load, kills, per_kill),
        "per kill: failed ≤ connections the victim held; none failed otherwise; respawn < 1 s",
    )
    assert not unexplained, [o.error or o.status for o in unexplained]
    for n, kill in zip(per_kill, kills, strict=True):
        assert n <= kill.held, f"{n} failed, but the victim held {kill.held}: {load.summary()}"
    if worker_class == "sync":
        assert max(kill.held for kill in kills) <= 1, "a sync worker holds one connection"
    assert max(kill.respawn for kill in kills) < 1.0, kills


@pytest.mark.nginx
def test_kill_9_of_a_worker_behind_nginx(behind_nginx: Serve) -> None:
    with behind_nginx(**WORKERS["gthread"]) as stack:
        load, kills = kill_workers_under_load(stack)
    per_kill, unexplained = failures_by_kill(load, kills)
    record(
        "04-kill9-nginx",
        f"kill -9 of one worker, {KILLS} times, 4 clients looping",
        stack.label,
        kill_figure(load, kills, per_kill),
        f"per kill: failed ≤ {NGINX_LOSSES_PER_KILL} and ≤ connections the victim held; "
        "none failed otherwise; respawn < 1 s",
    )
    # A request lost with its worker gets nginx's 502 page: nginx does not
    # send it again (proxy_next_upstream off).
    assert not unexplained, [o.error or o.status for o in unexplained]
    for n, kill in zip(per_kill, kills, strict=True):
        assert n <= min(NGINX_LOSSES_PER_KILL, kill.held), load.summary()
    assert max(kill.respawn for kill in kills) < 1.0, kills


# -- SIGTERM: a graceful shutdown ------------------------------------------------------


def test_sigterm_lets_every_request_in_flight_finish(gunicorn: Serve, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    in_flight = 8  # fewer than the 2 workers' threads: each request is in a thread
    with gunicorn(**WORKERS["gthread"], CHAOS_MARKS=str(marks)) as stack:
        load = stack.load("/_chaos/sleep?s=3", clients=in_flight, per_client=1, timeout=20)
        with load:
            end = time.monotonic() + 15
            while len(list(marks.iterdir())) < in_flight:  # each request has started
                assert time.monotonic() < end, f"{len(list(marks.iterdir()))} requests started"
                time.sleep(0.02)
            sent = time.monotonic()
            stack.gunicorn.process.send_signal(signal.SIGTERM)
        returncode = stack.gunicorn.process.wait(timeout=35)
        stopped_in = time.monotonic() - sent
    record(
        "05-sigterm-in-flight",
        f"SIGTERM with {in_flight} requests of 3 s in flight",
        stack.label,
        f"{load.ok}/{in_flight} completed; master exited {stopped_in:.1f} s after SIGTERM",
        "100% completed, exit 0 within graceful_timeout (30 s)",
    )
    assert load.ok == in_flight, load.summary()
    assert returncode == 0
    assert stopped_in < 30


@pytest.mark.parametrize(
    ("worker_class", "settings"),
    [("gthread", WORKERS["gthread"]), ("sync", WORKERS["sync"] | {"WEB_CONCURRENCY": "5"})],
    ids=["gthread", "sync"],
)
def test_sigterm_and_the_listen_queue(
    gunicorn: Serve,
    worker_class: str,
    settings: dict[str, str],
) -> None:
    clients = 8
    with gunicorn(**settings) as stack:
        workers = int(settings["WEB_CONCURRENCY"])
        stack.workers(workers)
        with stack.load("/_chaos/sleep?s=0.05", clients=clients, timeout=10) as load:
            load.wait_for(ok=40)
            sent = time.time()  # the clock of Load's outcomes
            stack.gunicorn.process.send_signal(signal.SIGTERM)
            load.stop()  # each client finishes the request it has started
        returncode = stack.gunicorn.process.wait(timeout=35)
    assert returncode == 0, stack.gunicorn.output()[-3000:]
    sent_before = [o for o in load.outcomes if o.started < sent and o.ended > sent]
    lost = [o for o in sent_before if not o.ok]
    record(
        f"06-sigterm-queue-{worker_class}",
        f"SIGTERM while {clients} clients loop on a 50 ms route",
        stack.label,
        f"{len(sent_before) - len(lost)} of {len(sent_before)} requests in flight finished, "
        f"{len(lost)} reset",
        "gthread: all finish; sync: the ones no worker had accepted are reset",
    )
    # Not vacuous: the clients loop with 2 ms pauses between 50 ms requests,
    # so at SIGTERM most of them have a request in flight.
    assert len(sent_before) >= clients // 2, f"{len(sent_before)} in flight: {load.summary()}"
    if worker_class == "gthread":
        # gthread workers accept every waiting connection at once (up to
        # worker_connections), so none waits in the kernel's queue when the
        # listening socket closes: every request sent before SIGTERM finishes.
        assert not lost, f"{[o.error for o in lost]} of {len(sent_before)}: {load.summary()}"
    else:
        # A sync worker accepts one connection at a time: at most `workers`
        # requests are inside gunicorn, the rest wait in the listen queue and
        # are reset when it closes.
        assert len(sent_before) - len(lost) >= min(workers, len(sent_before)) - 1


# -- a stuck request -----------------------------------------------------------------

TIMEOUT = 2  # GUNICORN_TIMEOUT for these tests (30 s by default)


def stuck_request(stack: Stack, headers: dict[str, str] | None = None) -> tuple[Load, Any, float]:
    """One request that sleeps far past the timeout, while 2 clients loop."""
    before = stack.workers(2)
    with stack.load(clients=2) as load:
        load.wait_for(ok=20)
        sent = time.monotonic()
        try:
            answer: Any = http_get(stack.port, "/_chaos/sleep?s=60", headers, timeout=20)
        except OSError as exc:  # the worker went away without answering
            answer = type(exc).__name__
        waited = time.monotonic() - sent
        wait_for_workers(
            stack.master,
            lambda pids: len(pids) == 2 and len(pids - before) == 1,
            "replacement of the stuck worker",
        )
        load.wait_for(ok=20)
    return load, answer, waited


@pytest.mark.parametrize("worker_class", ["gthread", "sync"])
def test_a_stuck_request_gets_its_worker_replaced(gunicorn: Serve, worker_class: str) -> None:
    with gunicorn(**WORKERS[worker_class], GUNICORN_TIMEOUT=str(TIMEOUT)) as stack:
        load, answer, waited = stuck_request(stack)
        log = stack.gunicorn.output()
    record(
        f"07-stuck-{worker_class}",
        f"a request that blocks past timeout ({TIMEOUT} s), 2 clients looping",
        stack.label,
        f"worker replaced; stuck client got {shown(answer)} after {waited:.1f} s; "
        f"{len(load.failed)} other requests failed of {len(load.outcomes)}",
        "worker replaced, 0 other failures, a bare 500, the stack in the log",
    )
    assert not load.failed, load.summary()
    assert waited < TIMEOUT + 5
    # The client gets gunicorn's bare 500 page, the log gets where it was stuck.
    assert not isinstance(answer, str), f"no answer: {answer}"
    assert answer.status == 500 and b"Traceback" not in answer.body, answer
    assert 'chaos_routes.py", line' in log and "time.sleep(seconds)" in log, log
    if worker_class == "sync":  # the master's own timeout (SIGABRT)
        assert "WORKER TIMEOUT (pid:" in log
    else:  # the hooks of gunicorn_hooks.py
        assert log.count(f"past the {TIMEOUT} s timeout: restarting worker") == 1, log


@pytest.mark.nginx
def test_a_stuck_request_behind_nginx_is_answered_not_retried(
    behind_nginx: Serve,
) -> None:
    with behind_nginx(**WORKERS["gthread"], GUNICORN_TIMEOUT=str(TIMEOUT)) as stack:
        load, answer, waited = stuck_request(stack, {"Host": stack.host or ""})
        time.sleep(TIMEOUT + 1.5)  # time enough for a retried request to get stuck too
        restarts = stack.gunicorn.output().count("timeout: restarting worker")
    record(
        "08-stuck-nginx",
        f"a request that blocks past timeout ({TIMEOUT} s), 2 clients looping",
        stack.label,
        f"{restarts} worker replaced; stuck client got {shown(answer)} after {waited:.1f} s; "
        f"{len(load.failed)} other requests failed of {len(load.outcomes)}",
        "1 worker replaced (no retry), a bare 500, 0 other failures",
    )
    assert not load.failed, load.summary()
    assert not isinstance(answer, str), f"no answer: {answer}"
    assert answer.status == 500 and b"Traceback" not in answer.body, answer
    # nginx retries a GET whose connection closed without an answer on the
    # next worker, which then gets stuck too: the 500 stops that.
    assert restarts == 1


def shown(answer: Any) -> str:
    return answer if isinstance(answer, str) else f"HTTP {answer.status}"


# -- max_requests: recycling workers to cap memory growth ------------------------------


def test_max_requests_recycles_workers_without_failing_a_request(gunicorn: Serve) -> None:
    # The generated defaults are 1000 + up to 100; smaller numbers recycle often.
    limits = {"GUNICORN_MAX_REQUESTS": "50", "GUNICORN_MAX_REQUESTS_JITTER": "25"}
    recycles = 8
    with gunicorn(**WORKERS["gthread"], **limits) as stack:
        seen = set(stack.workers(2))
        with stack.load(clients=4) as load:
            end = time.monotonic() + 20
            while len(seen) < 2 + recycles and time.monotonic() < end:
                seen |= worker_pids(stack.master)
                time.sleep(0.01)
    # Read once gunicorn has stopped: every line is in the log by then.
    restarts = stack.gunicorn.output().count("Autorestarting worker after current request")
    record(
        "09-max-requests",
        "max_requests 50 + jitter 25, 4 clients looping",
        stack.label,
        f"{len(seen) - 2} workers recycled, {len(load.failed)} failed of {len(load.outcomes)}",
        f"≥ {recycles} recycled, 0 failed",
    )
    assert len(seen) - 2 >= recycles, f"{len(seen) - 2} recycles in 20 s ({load.summary()})"
    assert restarts >= recycles, "each one restarted for max_requests"
    assert not load.failed, load.summary()
