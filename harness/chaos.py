"""Test apps in a copy of a project (the template stays clean), and a server's workers as /proc
shows them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from harness.waiting import eventually

APPS = Path(__file__).resolve().parent / "apps"


def copy_with_apps(project: Path, destination: Path, *apps: str) -> Path:
    """A copy of `project` at `destination`, with these files of harness/apps/ beside wsgi.py."""
    shutil.copytree(project, destination)
    for app in apps:
        shutil.copy(APPS / app, destination / app)
    return destination


def chaos_copy(project: Path, destination: Path) -> Path:
    """A copy that also serves chaos_wsgi:app, the same app as probe_wsgi:app."""
    return copy_with_apps(project, destination, "probe_wsgi.py", "chaos_wsgi.py")


def probe_copy(project: Path, destination: Path) -> Path:
    """A copy that also serves probe_wsgi:app, the project's app plus the test routes."""
    return copy_with_apps(project, destination, "probe_wsgi.py")


def _ls(folder: str) -> list[str]:
    # /proc changes under the reader: what ends meanwhile reads as empty.
    with contextlib.suppress(OSError):
        return os.listdir(folder)
    return []


def _read(path: str, link: bool = False) -> str:
    with contextlib.suppress(OSError):
        return os.readlink(path) if link else Path(path).read_text(errors="replace")
    return ""


def worker_pids(master: int) -> set[int]:
    """The master's child processes, but not multiprocessing's resource tracker (granian
    starts its workers with "spawn", see run_granian.py)."""
    task = f"/proc/{master}/task"
    children = (_read(f"{task}/{t}/children") for t in _ls(task))
    pids = {int(pid) for listed in children for pid in listed.split()}
    return {p for p in pids if "resource_tracker" not in _read(f"/proc/{p}/cmdline")}


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


def connections_held(worker: int, master: int) -> int:
    """How many client connections `worker` holds: its sockets, less the listening ones it
    shares with its master. Exact only while it cannot accept more (stopped with SIGSTOP)."""

    def sockets(pid: int) -> set[str]:
        links = (_read(f"/proc/{pid}/fd/{fd}", link=True) for fd in _ls(f"/proc/{pid}/fd"))
        return {link for link in links if link.startswith("socket:")}

    return len(sockets(worker) - sockets(master))
