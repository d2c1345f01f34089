"""Static files: URLs that change when their file does, cached and compressed.

`url_for("static", filename="style.css")` gives /static/style.css?v=<hash of
its content>. Such a URL names one version of the file forever, so browsers
and CDNs may keep it for a year without asking again; after a deploy, a
changed file has a new URL and is fetched on the next page load. A URL
without `v` (a link from outside) must be checked each time.

Behind nginx these requests never reach the app (site.conf sends the same
headers); without it (a Procfile platform, Kubernetes) the app answers them
here, gzipped. A few lines of our own rather than WhiteNoise: it serves only
files compressed ahead of time (a build step every platform would need), and
the app's few small files compress in a millisecond, once per process.
"""

from __future__ import annotations

import gzip
import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, request

VERSIONED = "public, max-age=31536000, immutable"
UNVERSIONED = "no-cache"
# Text compresses to a fraction; images and fonts are compressed already, and
# below a kilobyte the bytes saved do not pay for the work (as nginx's gzip).
COMPRESSIBLE = {"text/css", "text/javascript", "text/plain", "image/svg+xml", "application/json"}
MIN_COMPRESSED_SIZE = 1024


@cache  # once per file and process: a deploy restarts the processes
def file_version(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:  # a missing file: url_for still builds its URL, which 404s
        return ""


@cache
def gzipped(path: Path) -> bytes:
    return gzip.compress(path.read_bytes(), mtime=0)


def send_static(filename: str) -> Response:
    """The static view: Flask's own (conditional requests, ranges), plus caching and gzip."""
    response = current_app.send_static_file(filename)
    response.headers["Cache-Control"] = VERSIONED if request.args.get("v") else UNVERSIONED
    if response.status_code == 200 and response.mimetype in COMPRESSIBLE:
        response.vary.add("Accept-Encoding")
        path = Path(current_app.static_folder or "static") / filename  # checked by Flask above
        if "gzip" in request.accept_encodings and path.stat().st_size >= MIN_COMPRESSED_SIZE:
            response.close()  # the file Flask opened
            response.direct_passthrough = False
            response.set_data(gzipped(path))
            response.content_encoding = "gzip"
            # Another body than the file's: a weak tag, which If-None-Match still matches.
            etag, _ = response.get_etag()
            if etag:
                response.set_etag(etag, weak=True)
    return response


def init_app(app: Flask) -> None:
    static_folder = Path(app.static_folder or "static")

    @app.url_defaults
    def add_version(endpoint: str, values: dict[str, Any]) -> None:
        if endpoint == "static" and "filename" in values and "v" not in values:
            version = file_version(static_folder / values["filename"])
            if version:
                values["v"] = version

    # The static route stays Flask's; only the function that answers it changes.
    app.view_functions["static"] = send_static
