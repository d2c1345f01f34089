"""Is the machine quiet? Three witnesses, read from /proc (Linux).

- The load average, before and after each pass: cheap, but it counts the
  benchmark's own servers too, so it is recorded, not judged.
- A calibration loop (the CPU route's own loop, best of 5) timed before and
  after each pass: when another job takes the cores, it runs slower.
- Foreign CPU during each measurement: all the CPU time the machine spent
  (/proc/stat) minus what the stack's processes, wrk and this process spent.
  That is other people's work, measured while it competes with ours.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1
CALIBRATION_LOOPS = 90_000  # bench/app/bench_routes.py CPU_LOOPS: ~5 ms when quiet
# A measurement is noisy when others used more than this share of all cores.
FOREIGN_LIMIT = 0.10
# A pass is noisy when its calibration ran this much slower than the run's best.
CALIBRATION_LIMIT = 1.20


def calibrate(repeats: int = 5) -> float:
    """Milliseconds for the CPU route's loop, best of `repeats`."""
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        total = 0
        for i in range(CALIBRATION_LOOPS):
            total += i * i
        best = min(best, time.perf_counter() - began)
    return best * 1000


def load_average() -> float:
    return os.getloadavg()[0]


def _machine_ticks() -> tuple[int, int]:
    """(busy, all) CPU ticks since boot, over every core.

    Interrupt time is left out of `busy`: on loopback it is mostly the
    benchmark's own packets, which no process is charged for. Steal (time the
    hypervisor gave to other machines) counts as busy: it is noise too.
    """
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + steal
    return busy, busy + idle + iowait + irq + softirq


def _children(pid: int, table: dict[int, int]) -> list[int]:
    """`pid` and all its descendants, given a pid -> parent table."""
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in table.items() if parent in frontier]
        found += frontier
    return found


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields from the third on (the name may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # exited meanwhile
        return None
    return text[text.rindex(")") + 2 :].split()


def process_tree(roots: list[int]) -> list[int]:
    """The `roots` and every process below them."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            table[int(entry.name)] = int(fields[1])
    return [pid for root in roots for pid in _children(root, table)]


def _tree_ticks(roots: list[int]) -> int:
    """CPU ticks of the trees, counting children that already exited and were
    reaped (cutime/cstime): a worker gunicorn recycled mid-run still counts."""
    total = 0
    for pid in process_tree(roots):
        if fields := _stat(pid):
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total


def _own_ticks() -> float:
    """This process and its waited-for children (wrk), in ticks."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return (me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime) * TICKS


@dataclass
class CpuWindow:
    """Foreign CPU between start() and share(), for the processes in `roots`."""

    roots: list[int]
    _start: tuple[int, int, float, float] = (0, 0, 0.0, 0.0)

    def start(self) -> CpuWindow:
        busy, every = _machine_ticks()
        self._start = (busy, every, _tree_ticks(self.roots), _own_ticks())
        return self

    def share(self) -> float:
        """Others' share of all cores since start(), 0..1."""
        busy, every = _machine_ticks()
        ours = _tree_ticks(self.roots) - self._start[2] + _own_ticks() - self._start[3]
        elapsed = every - self._start[1]
        return max(0.0, (busy - self._start[0] - ours) / elapsed) if elapsed else 0.0


def wait_until_quiet(seconds: float, window: float = 1.0) -> float:
    """Sample foreign CPU in `window`-second steps until one is under the limit or
    `seconds` pass; return the last share seen (nothing of ours runs meanwhile)."""
    end = time.monotonic() + seconds
    while True:
        probe = CpuWindow([]).start()
        time.sleep(window)
        share = probe.share()
        if share <= FOREIGN_LIMIT or time.monotonic() >= end:
            return share
