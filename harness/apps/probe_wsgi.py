"""The project's own app (its wsgi.py) plus /_probe routes for the template's tests, and /_chaos
routes that misbehave on purpose (the resilience tests)."""

import os
import signal
import time
import uuid
from pathlib import Path
from typing import NoReturn

from flask import current_app, request, session, url_for
from wsgi import app

#: Raised by /_probe/crash; a response that contains it leaked the exception.
CRASH_MARKER = "probe-secret-7c1e"


@app.get("/_probe")
def probe() -> dict[str, object]:
    """What the app believes about the request (after ProxyFix)."""
    return {
        "scheme": request.scheme,
        "remote_addr": request.remote_addr,
        "host": request.host,
        "external_url": url_for("probe", _external=True),
    }


@app.post("/_probe/upload")
def upload() -> dict[str, object]:
    return {"received": len(request.get_data())}


# A test client has no session or form to take a CSRF token from.
app.extensions["csrf"].exempt(upload)


@app.get("/_probe/log")
def log_a_line() -> dict[str, object]:
    current_app.logger.info("order placed")
    return {"logged": True}


@app.get("/_probe/crash")
def crash() -> NoReturn:
    raise RuntimeError(f"{CRASH_MARKER}: the password is hunter2")


@app.get("/_probe/die")
def die() -> NoReturn:
    # The instant of death, so the test can tell which requests were in flight.
    with open(os.environ["PROBE_DIED_AT"], "w") as died_at:
        died_at.write(repr(time.time()))
    # What a segfault or the kernel's OOM killer does to a worker.
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable: SIGKILL cannot be caught")


@app.get("/_probe/inline-style")
def inline_style() -> str:
    """A page the Content-Security-Policy must block a part of."""
    return "<!doctype html><style>body { color: red; }</style><p>inline</p>"


@app.get("/_chaos/sleep")
def sleep() -> dict[str, object]:
    # CHAOS_MARKS: a folder where each request leaves a file as it starts, so a
    # test can wait until its requests are really in flight.
    if os.environ.get("CHAOS_MARKS"):
        Path(os.environ["CHAOS_MARKS"], uuid.uuid4().hex).touch()
    seconds = float(request.args.get("s", "0.05"))
    time.sleep(seconds)
    return {"slept": seconds, "pid": os.getpid()}


@app.get("/_chaos/session")
def set_session() -> dict[str, object]:
    session["seen"] = True
    return {"pid": os.getpid()}
