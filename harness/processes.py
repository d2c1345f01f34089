"""Starting a process with its output in a log file, reading that log, stopping it.

Every process runs in its own session; it is stopped by SIGTERM to its own PID,
and killed (with its whole process group) only if it does not exit in time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.waiting import eventually


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path  # stdout, and stderr unless it has a file of its own
    stderr: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def assert_alive(self) -> None:
        if self.popen.poll() is not None:
            raise AssertionError(f"exited with {self.popen.returncode}:\n{self.output()}")

    def wait_for_log(
        self, pattern: str, count: int = 1, timeout: float = 20, *, regex: bool = False
    ) -> str:
        """The log, once `pattern` is in it `count` times; fails early if the process exits."""

        def seen() -> str | None:
            text = self.output()
            found = len(re.findall(pattern, text)) if regex else text.count(pattern)
            if found >= count:
                return text
            self.assert_alive()
            return None

        return eventually(seen, timeout, what=f"{count} x {pattern!r} in {self.log.name}")

    def wait(self, timeout: float = 20) -> int:
        return self.popen.wait(timeout)


def start(
    command: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    *,
    stderr: Path | None = None,
) -> Process:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out, open(stderr or os.devnull, "wb") as err:
        popen = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err if stderr else subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(popen, log, stderr)


# How long a server may take to stop on SIGTERM: the generated servers' own
# deadline (gunicorn's graceful_timeout, GRANIAN_WORKERS_KILL_TIMEOUT: 30 s)
# and some slack. granian can need all of it: a worker still starting when
# SIGTERM arrives is only killed at that deadline.
STOP_DEADLINE = 40


def stop(process: Process, timeout: float = STOP_DEADLINE) -> int:
    """SIGTERM to the process's own PID; SIGKILL its group if it overstays (and fail)."""
    if process.popen.poll() is None:
        process.popen.send_signal(signal.SIGTERM)
        try:
            process.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.popen.wait(5)
            raise AssertionError(f"did not stop within {timeout}s:\n{process.output()}") from None
    return process.popen.returncode


def wait_for_text(path: Path, pattern: str) -> str:
    """The text of `path` once the regex `pattern` matches in it (another process's log)."""

    def matched() -> str | None:
        text = path.read_text(errors="replace") if path.exists() else ""
        return text if re.search(pattern, text) else None

    return eventually(matched, 5, what=f"{pattern!r} in {path.name}")
