"""Every wait in the suite: `eventually(check, timeout)` says what it waits for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    timeout: float = 20,
    *,
    what: str = "the condition",
    interval: float = 0.05,
) -> T:
    """Call `check` until it returns something truthy, and return that.

    An OSError (refused or reset while a server starts) counts as "not yet"; any
    other exception, an AssertionError from a process found dead for instance,
    ends the wait at once. After `timeout` seconds, AssertionError names `what`
    and the last result or error.
    """
    end = time.monotonic() + timeout
    while True:
        try:
            if result := check():
                return result
            last = result
        except OSError as exc:
            last = exc
        if time.monotonic() >= end:
            raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")
        time.sleep(interval)
