"""Versioned static URLs: a changed file gets a new URL, so browsers fetch it.

`url_for("static", filename="style.css")` gives /static/style.css?v=<hash of
its content>. nginx lets browsers keep static files for 30 days; after a
deploy, a changed file has a new URL and is fetched on the next page load,
while unchanged ones keep theirs and stay cached.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from flask import Flask


@cache  # once per file and process: a deploy restarts the processes
def file_version(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:  # a missing file: url_for still builds its URL, which 404s
        return ""


def init_app(app: Flask) -> None:
    static_folder = Path(app.static_folder or "static")

    @app.url_defaults
    def add_version(endpoint: str, values: dict[str, Any]) -> None:
        if endpoint == "static" and "filename" in values and "v" not in values:
            version = file_version(static_folder / values["filename"])
            if version:
                values["v"] = version
