"""Test apps in a copy of a project, and gunicorn's processes as /proc shows them.

The template stays clean: `copy_with_apps` copies a rendered project and adds
apps from harness/apps/ to the copy only. `chaos_copy` adds the /_chaos routes
(sleep, crash, set a session cookie) with `chaos_wsgi.py`, the project's own
app with that blueprint; the project's server then serves `chaos_wsgi:app`
with its unchanged configuration.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from harness.waiting import eventually

APPS = Path(__file__).resolve().parent / "apps"
#: Raised by /_chaos/crash (harness/apps/chaos_routes.py); a response that
#: contains it leaked the exception.
CRASH_MARKER = "chaos-secret-4f1d2c"


def copy_with_apps(project: Path, destination: Path, *apps: str) -> Path:
    """A copy of `project` at `destination`, with these files of harness/apps/ beside wsgi.py."""
    shutil.copytree(project, destination)
    for app in apps:
        shutil.copy(APPS / app, destination / app)
    return destination


def chaos_copy(project: Path, destination: Path) -> Path:
    """A copy of `project` at `destination` that also serves the /_chaos routes."""
    return copy_with_apps(project, destination, "chaos_routes.py", "chaos_wsgi.py")


def probe_copy(project: Path, destination: Path) -> Path:
    """A copy of `project` at `destination` that also serves probe_wsgi:app's /_probe routes."""
    return copy_with_apps(project, destination, "probe_wsgi.py")


def worker_pids(master: int) -> set[int]:
    """The PIDs of the master's workers (its child processes), from /proc.

    Not multiprocessing's resource tracker: granian, starting its workers with
    "spawn" (see run_granian.py), has that helper process besides them.
    """
    pids = {
        int(pid)
        for task in _entries(f"/proc/{master}/task")
        for pid in _read(task / "children").split()
    }
    return {pid for pid in pids if "resource_tracker" not in _read(Path(f"/proc/{pid}/cmdline"))}


# /proc changes under the reader: a process or thread that ends meanwhile
# reads as empty.


def _entries(folder: str) -> list[Path]:
    try:
        return list(Path(folder).iterdir())
    except OSError:
        return []


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _link(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def wait_for_workers(
    master: int, until: Callable[[set[int]], bool], what: str, timeout: float = 15
) -> set[int]:
    """The master's workers once `until(pids)` holds (polled every 10 ms)."""
    return eventually(
        lambda: (pids := worker_pids(master)) and until(pids) and pids,
        timeout,
        what=f"{what} (workers of {master}: {sorted(worker_pids(master))})",
        interval=0.01,
    )


def socket_inodes(pid: int) -> set[str]:
    """The sockets process `pid` has open ("socket:[inode]" links in /proc/PID/fd)."""
    links = (_link(fd) for fd in _entries(f"/proc/{pid}/fd"))
    return {link for link in links if link.startswith("socket:")}


def connections_held(worker: int, master: int) -> int:
    """How many client connections `worker` holds: its sockets, less the
    listening ones it shares with its master. Exact only while the worker
    cannot accept more (stopped with SIGSTOP)."""
    return len(socket_inodes(worker) - socket_inodes(master))
