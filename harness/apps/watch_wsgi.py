"""The project's own app (its wsgi.py) plus the /_probe routes tests/live/test_watch.py
reads: a bug worth a report, which optional modules the worker loaded, and a form."""

import sys
from typing import NoReturn

from flask import redirect, render_template_string, request, session, url_for
from werkzeug.wrappers import Response
from wsgi import app


@app.get("/_probe/crash")
def crash() -> NoReturn:
    raise RuntimeError("probe: a bug worth a report")


@app.get("/_probe/loaded")
def loaded() -> dict[str, list[str]]:
    optional = ("prometheus_client", "sentry_sdk")
    return {"loaded": [name for name in optional if name in sys.modules]}


# A form as a project's own would be: the session's CSRF token in a hidden
# field, and what it saves kept in the session.
FORM = """<!doctype html><title>Form</title>
<p id="saved">{{ session.get("name", "") }}</p>
<form method="post">
  <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
  <input name="name" id="name"><button id="send">Send</button>
</form>"""


@app.route("/_probe/form", methods=["GET", "POST"])
def form() -> Response | str:
    if request.method == "POST":
        session["name"] = request.form["name"]
        return redirect(url_for("form"))
    return render_template_string(FORM)
