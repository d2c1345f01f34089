"""Misbehaving routes for resilience tests, and a look at gunicorn's processes.

The template stays clean: `chaos_copy` copies a rendered project and adds two
files to the copy only, a blueprint of routes that sleep, crash or set a
session cookie, and `chaos_wsgi.py`, which builds the project's own app with
`create_app()` and registers that blueprint on it. gunicorn then serves
`chaos_wsgi:app` with the project's unchanged gunicorn.conf.py.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

#: Raised by /_chaos/crash; a response that contains it leaked the exception.
CRASH_MARKER = "chaos-secret-4f1d2c"

ROUTES = f'''"""Routes that misbehave on purpose (added by the template's tests only)."""

import os
import time
import uuid
from pathlib import Path

from flask import Blueprint, request, session

bp = Blueprint("chaos", __name__, url_prefix="/_chaos")


@bp.get("/sleep")
def sleep():
    # CHAOS_MARKS: a folder where each request leaves a file as it starts, so a
    # test can wait until its requests are really in flight.
    if os.environ.get("CHAOS_MARKS"):
        Path(os.environ["CHAOS_MARKS"], uuid.uuid4().hex).touch()
    seconds = float(request.args.get("s", "0.05"))
    time.sleep(seconds)
    return {{"slept": seconds, "pid": os.getpid()}}


@bp.get("/crash")
def crash():
    raise RuntimeError("{CRASH_MARKER}: the database password is hunter2")


@bp.get("/session")
def set_session():
    session["seen"] = True
    return {{"pid": os.getpid()}}
'''

WSGI = """from chaos_routes import bp
from {package} import create_app

app = create_app()
app.register_blueprint(bp)
"""


def chaos_copy(project: Path, destination: Path, package: str = "demo_shop") -> Path:
    """A copy of `project` at `destination` that also serves the /_chaos routes."""
    shutil.copytree(project, destination)
    (destination / "chaos_routes.py").write_text(ROUTES)
    (destination / "chaos_wsgi.py").write_text(WSGI.format(package=package))
    return destination


def worker_pids(master: int) -> set[int]:
    """The PIDs of the master's workers (its child processes), from /proc.

    Not multiprocessing's resource tracker: granian, starting its workers with
    "spawn" (see run_granian.py), has that helper process besides them.
    """
    pids: set[int] = set()
    try:
        tasks = list(Path(f"/proc/{master}/task").iterdir())
    except OSError:  # the master is gone
        return pids
    for task in tasks:
        try:
            pids.update(int(pid) for pid in (task / "children").read_text().split())
        except OSError:  # a thread that ended meanwhile
            continue
    return {pid for pid in pids if b"resource_tracker" not in _cmdline(pid)}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # it ended meanwhile
        return b""


def wait_for_workers(
    master: int, until: Callable[[set[int]], bool], what: str, deadline: float = 15
) -> set[int]:
    """Poll the master's workers every 10 ms until `until(pids)` holds; return them.

    Raises AssertionError naming `what` and the PIDs last seen after `deadline` s.
    """
    end = time.monotonic() + deadline
    while True:
        pids = worker_pids(master)
        if until(pids):
            return pids
        if time.monotonic() > end:
            raise AssertionError(f"no {what} within {deadline}s; workers: {sorted(pids)}")
        time.sleep(0.01)


def socket_inodes(pid: int) -> set[str]:
    """The sockets process `pid` has open ("socket:[inode]" links in /proc/PID/fd)."""
    found = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # the process is gone
        return found
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def connections_held(worker: int, master: int) -> int:
    """How many client connections `worker` holds: its sockets, less the
    listening ones it shares with its master. Exact only while the worker
    cannot accept more (stopped with SIGSTOP)."""
    return len(socket_inodes(worker) - socket_inodes(master))
