"""A stack's memory: PSS summed over its processes (master, workers, nginx).

PSS (proportional set size) charges each shared page to the processes that
share it in equal parts, so the sum over a stack is what it really costs: a
forked worker's pages shared with its master are not counted twice, which
RSS would do. Linux only (/proc/PID/smaps_rollup, kernel 4.14+).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.machine import process_tree


def pss_kb(pid: int) -> int:
    """The Pss of one process in kB; 0 if it is gone or unreadable."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def stack_pss_mib(roots: list[int]) -> float:
    """PSS of the `roots` and all their descendants, in MiB (the kernel's kB are KiB).

    MiB rather than MB: the stricter reading of the 80 MB target (5% smaller)."""
    return sum(pss_kb(pid) for pid in process_tree(roots)) / 1024


def settled_pss_mib(roots: list[int], step: float = 0.5, deadline: float = 15) -> float:
    """PSS once the stack has settled: the same processes and within 1% of the
    previous sample. A server answers its health check as soon as one worker
    is up, while the others may still be importing the app."""
    end = time.monotonic() + deadline
    before = (process_tree(roots), stack_pss_mib(roots))
    while time.monotonic() < end:
        time.sleep(step)
        now = (process_tree(roots), stack_pss_mib(roots))
        if now[0] == before[0] and abs(now[1] - before[1]) <= 0.01 * before[1]:
            return now[1]
        before = now
    return before[1]
