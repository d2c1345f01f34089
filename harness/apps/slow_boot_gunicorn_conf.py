"""The project's gunicorn.conf.py (from the current folder), with each worker
slow to boot: it widens the moment before gunicorn installs the worker's
signal handlers (`gunicorn -c .../slow_boot_gunicorn_conf.py wsgi:app`)."""

import runpy
import time
from typing import Any

generated = runpy.run_path("gunicorn.conf.py")
globals().update(generated)


def post_fork(server: Any, worker: Any) -> None:
    time.sleep(2)
    generated["post_fork"](server, worker)
