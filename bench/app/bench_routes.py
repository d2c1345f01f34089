"""The three routes the benchmark loads, added to a copy of the rendered project.

Each stands for one kind of request a real app serves, so that a server
setting is judged on all three instead of on a "hello world" alone:
- json: the framework's own cost per request (routing, a dict to JSON);
- cpu:  ~5 ms of pure-Python work that holds the GIL (templating, parsing);
- io:   50 ms spent waiting (a database or an API call), the GIL released.
"""

from __future__ import annotations

import time

from flask import Blueprint

bp = Blueprint("bench", __name__, url_prefix="/bench")

# About 5 ms of the loop below on this kind of machine (2 cores) when it is
# quiet; bench/machine.py times the same loop to tell whether it is quiet.
CPU_LOOPS = 90_000
IO_WAIT_S = 0.050


@bp.get("/json")
def json_route() -> dict[str, str]:
    return {"hello": "world"}


@bp.get("/cpu")
def cpu_route() -> dict[str, int]:
    total = 0
    for i in range(CPU_LOOPS):
        total += i * i
    return {"total": total}


@bp.get("/io")
def io_route() -> dict[str, str]:
    # time.sleep releases the GIL like a socket read does; under gevent it is
    # patched into a cooperative wait, as a database driver's read would be.
    time.sleep(IO_WAIT_S)
    return {"waited": "50ms"}
