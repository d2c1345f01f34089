"""The project's own app (its wsgi.py) plus /_chaos routes that misbehave on purpose."""

import os
import time
import uuid
from pathlib import Path
from typing import NoReturn

from flask import request, session
from wsgi import app

#: Raised by /_chaos/crash: a response that contains it leaked it.
CRASH_MARKER = "chaos-secret-4f1d2c"


@app.get("/_chaos/sleep")
def sleep() -> dict[str, object]:
    # CHAOS_MARKS: a folder where each request leaves a file as it starts, so a
    # test can wait until its requests are really in flight.
    if os.environ.get("CHAOS_MARKS"):
        Path(os.environ["CHAOS_MARKS"], uuid.uuid4().hex).touch()
    seconds = float(request.args.get("s", "0.05"))
    time.sleep(seconds)
    return {"slept": seconds, "pid": os.getpid()}


@app.get("/_chaos/crash")
def crash() -> NoReturn:
    raise RuntimeError(f"{CRASH_MARKER}: the database password is hunter2")


@app.get("/_chaos/session")
def set_session() -> dict[str, object]:
    session["seen"] = True
    return {"pid": os.getpid()}
