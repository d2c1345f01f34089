"""Routes that misbehave on purpose (added by the template's tests only)."""

import os
import time
import uuid
from pathlib import Path
from typing import NoReturn

from flask import Blueprint, request, session

#: Raised by /_chaos/crash: a response that contains it leaked it (harness/chaos.py's too).
CRASH_MARKER = "chaos-secret-4f1d2c"

bp = Blueprint("chaos", __name__, url_prefix="/_chaos")


@bp.get("/sleep")
def sleep() -> dict[str, object]:
    # CHAOS_MARKS: a folder where each request leaves a file as it starts, so a
    # test can wait until its requests are really in flight.
    if os.environ.get("CHAOS_MARKS"):
        Path(os.environ["CHAOS_MARKS"], uuid.uuid4().hex).touch()
    seconds = float(request.args.get("s", "0.05"))
    time.sleep(seconds)
    return {"slept": seconds, "pid": os.getpid()}


@bp.get("/crash")
def crash() -> NoReturn:
    raise RuntimeError(f"{CRASH_MARKER}: the database password is hunter2")


@bp.get("/session")
def set_session() -> dict[str, object]:
    session["seen"] = True
    return {"pid": os.getpid()}
