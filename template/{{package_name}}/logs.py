"""Logging for the app and its server: one format, and the request id on every line.

LOG_LEVEL (debug, info, warning, error, critical; default info) and LOG_FORMAT
(text or json; default text) come from the environment. The server reads this
file before it loads the app (gunicorn.conf.py, run_granian.py), so its own
lines, its access lines and the app's lines all look the same. That is also
why this module imports nothing from its package: gunicorn.conf.py loads it
by its path, and the app's code stays out of the server's main process.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, has_request_context, request

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("text", "json")
# The exit code for "will not start, fix the settings" (config.py's and the
# servers' too): gunicorn and systemd then stop instead of retrying.
BAD_SETTING_EXIT = 4

# gunicorn's layout, with the request id ("-" outside a request) after the level.
TEXT_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] [%(request_id)s] %(message)s"
TEXT_DATE_FORMAT = "[%Y-%m-%d %H:%M:%S %z]"

# A request id from outside is used only if it looks like one: nginx's
# $request_id is 32 hex digits; uuids and most tracing ids also fit.
REQUEST_ID_HEADER = "X-Request-ID"
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def settings(environ: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """LOG_LEVEL and LOG_FORMAT from the environment; ValueError says what is wrong."""
    level = environ.get("LOG_LEVEL", "").strip().lower() or "info"
    format_ = environ.get("LOG_FORMAT", "").strip().lower() or "text"
    if level not in LEVELS:
        raise ValueError(f"LOG_LEVEL={level!r} is not a log level: use one of {', '.join(LEVELS)}.")
    if format_ not in FORMATS:
        raise ValueError(f"LOG_FORMAT={format_!r} is not a log format: use text or json.")
    return level, format_


def settings_or_exit() -> tuple[str, str]:
    """`settings()`, or stop the process with a one-line reason (no traceback)."""
    try:
        return settings()
    except ValueError as problem:
        print(problem, file=sys.stderr)
        raise SystemExit(BAD_SETTING_EXIT) from None


def config_dict(level: str, format_: str, access_log: bool = True) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the app and its server, in one format.

    As gunicorn does by default: access lines go to stdout, everything else
    (the server's messages, the app's lines, tracebacks) to stderr.
    """
    formatter: dict[str, Any] = {"()": JsonFormatter}
    if format_ == "text":
        formatter = {"format": TEXT_FORMAT, "datefmt": TEXT_DATE_FORMAT}
    handlers = {
        stream: {
            "class": "logging.StreamHandler",
            "stream": f"ext://sys.{stream}",
            "formatter": "default",
            "filters": ["request_id"],
        }
        for stream in ("stdout", "stderr")
    }
    # The servers' loggers pass their messages on to the root's handler.
    # Without an access log, the access loggers keep quiet (above INFO).
    server = {"level": level.upper(), "handlers": [], "propagate": True}
    access = {
        "level": "INFO" if access_log else "WARNING",
        "handlers": ["stdout"],
        "propagate": False,
    }
    return {
        "version": 1,
        # Loggers made before this runs (Flask's, a library's) keep working.
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"request_id": {"()": RequestIdFilter}},
        "handlers": handlers,
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": dict(server),
            "gunicorn.access": dict(access),
            "_granian": dict(server),
            # The access line the app writes itself (AccessLog, under granian).
            "app.access": dict(access),
            # Alembic's INFO lines (plugins set up at import, the context of
            # each readiness check) say nothing about the app; `flask db`
            # commands still print theirs (migrations/alembic.ini).
            "alembic": {"level": "WARNING" if level in ("debug", "info") else level.upper()},
        },
    }


# The attributes every LogRecord has; any other came from `extra=`.
RECORD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


# Hand-written rather than a dependency (python-json-logger): a few lines of
# json.dumps, and the server's main process loads this file alone, by path.
class JsonFormatter(logging.Formatter):
    """One JSON object per line, for container and Kubernetes log collectors.

    `extra=` fields become fields of their own (`log.info("paid", extra={"order": 42})`),
    and so do a traceback (`exception`) and `stack_info=True` (`stack`).
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            entry.update(gunicorn_access_fields(record.args))
        for name, value in vars(record).items():
            if name not in RECORD_ATTRIBUTES and name not in entry:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an `extra` value JSON cannot hold (a date, a Decimal) as text.
        return json.dumps(entry, ensure_ascii=False, default=str)


def gunicorn_access_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an access line, from gunicorn's atoms (its access_log_format names)."""
    query = atoms.get("q") or ""
    sent = atoms.get("B")
    return {
        "method": atoms.get("m"),
        "path": str(atoms.get("U")) + (f"?{query}" if query and query != "-" else ""),
        "status": int(atoms.get("s") or 0),
        "bytes": sent if isinstance(sent, int) else 0,
        "duration_ms": round(int(atoms.get("D") or 0) / 1000, 1),
    }


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record: the current request's, or "-"."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = request_id()
        elif isinstance(record.args, dict):  # gunicorn's access line, after the request
            # The response's X-Request-ID, which gunicorn's access line sees.
            sent = str(record.args.get("{x-request-id}o", ""))
            record.request_id = sent if VALID_REQUEST_ID.fullmatch(sent) else "-"
        elif not hasattr(record, "request_id"):  # AccessLog passes the id itself
            record.request_id = "-"
        return True


def request_id() -> str:
    """The current request's id: the proxy's X-Request-ID (nginx replaces the
    client's with its own), or one made up here when there is none."""
    # Kept in the request's WSGI environ, which lives exactly as long as the
    # request; read from it directly, as this runs for every request.
    environ = request.environ
    found: str | None = environ.get("app.request_id")
    if found is None:
        sent = environ.get("HTTP_X_REQUEST_ID", "")
        found = sent if VALID_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        environ["app.request_id"] = found
    return found


# Hand-written rather than a dependency (paste's TransLogger): it must log the
# id and the duration, in gunicorn's layout, and that is these few lines.
class AccessLog:
    """WSGI middleware that writes each request's access line from the app.

    For servers whose own access line cannot show the id the app made up
    (granian's names request headers only). The line has gunicorn's layout:
    client "request line" status bytes duration. The duration is the app's
    time, up to its response; gunicorn's own line also counts sending it.
    """

    def __init__(self, wsgi_app: WSGIApplication) -> None:
        self.wsgi_app = wsgi_app
        self.logger = logging.getLogger("app.access")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self.logger.isEnabledFor(logging.INFO):  # access lines are off
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        answered: list[str] = ["-", "-"]  # status, Content-Length

        def noting_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            answered[:] = [status.split(" ", 1)[0], dict(headers).get("Content-Length", "-")]
            return start_response(status, headers, exc_info)

        body = self.wsgi_app(environ, noting_start_response)
        query = environ.get("QUERY_STRING")
        method = environ.get("REQUEST_METHOD", "-")
        path = environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
        status, length = answered
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        self.logger.info(
            '%s "%s %s %s" %s %s %.0fms',
            environ.get("REMOTE_ADDR", "-"),
            method,
            path,
            environ.get("SERVER_PROTOCOL", "-"),
            status,
            length,
            duration_ms,
            # Fields of their own in JSON lines, as gunicorn's (gunicorn_access_fields).
            extra={
                "request_id": environ.get("app.request_id", "-"),
                "method": method,
                "path": path,
                "status": int(status) if status.isdigit() else 0,
                "bytes": int(length) if length.isdigit() else 0,
                "duration_ms": duration_ms,
            },
        )
        return body


def init_app(app: Flask) -> None:
    """Log when no server did, and return every request's id."""
    # gunicorn and granian read the settings and configure logging before they
    # load the app; under `flask run`, waitress or a script nobody has, so do
    # it here (their own access lines, if any, are theirs: none from the app).
    if not logging.root.handlers:
        logging.config.dictConfig(config_dict(*settings_or_exit(), access_log=False))

    @app.after_request
    def send_request_id(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = request_id()
        return response
