"""The app as wsgi.py builds it, plus one route that only tests/test_server.py serves.

`/_test/sleep?seconds=N` answers after N seconds: an in-flight request for the
server tests to stop, or a stuck one to time out. It touches the file named by
SERVED_APP_STARTED first, so a test knows the request is inside the app.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flask import request

from wsgi import app


def sleep() -> str:
    started = os.environ.get("SERVED_APP_STARTED")
    if started:
        Path(started).touch()
    time.sleep(float(request.args.get("seconds", "1")))
    return "slept\n"


app.add_url_rule("/_test/sleep", view_func=sleep)
