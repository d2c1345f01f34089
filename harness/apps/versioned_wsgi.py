"""The project's app plus /_probe/version: the VERSION of probe_version.py (a
file the test writes and rewrites) as the worker loaded it."""

from probe_version import VERSION  # type: ignore[import-not-found]
from wsgi import app


@app.get("/_probe/version")
def version() -> str:
    return str(VERSION)
