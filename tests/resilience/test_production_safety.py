"""Production settings are safe settings: no debugger, no traceback for the client (it goes to
stderr), secure session cookies, no default secret, and hostile HTTP input answered with 4xx by
gunicorn alone and through nginx, without a worker dying (on a copy with the /_chaos routes).
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from harness.chaos import CRASH_MARKER, worker_pids
from harness.clients import raw_request
from harness.figures import record
from harness.http import http_get
from harness.processes import wait_for_text
from harness.serving import Served

# What must never reach a client: the exception, its message, the code.
LEAKS = [CRASH_MARKER, "hunter2", "Traceback", "RuntimeError", "chaos_routes", 'File "']


Chaos = Callable[..., AbstractContextManager[Served]]


@pytest.fixture(scope="module")
def production(chaos: Chaos) -> Iterator[Served]:
    """Production as shipped (the generated defaults and a secret), stdout (the access log) and
    stderr (the error log) in separate files."""
    with chaos(split_stderr=True) as served:
        yield served


def debugger_problems(port: int) -> list[str]:
    """What a Werkzeug debugger would expose on `port`: the problems found."""
    problems = []
    console = http_get(port, "/console")
    if console.status != 404:
        problems.append(f"/console answered {console.status}")
    # The debugger serves its own files on any URL with these arguments.
    asset = http_get(port, "/?__debugger__=yes&cmd=resource&f=debugger.js")
    if b"Werkzeug" in asset.body or "javascript" in asset.headers.get("content-type", ""):
        problems.append("the debugger's script is served")
    crash = http_get(port, "/_chaos/crash")
    if crash.status != 500 or any(m in crash.body for m in (b"__debugger__", b"Traceback")):
        problems.append(f"a crash shows the debugger or a traceback ({crash.status})")
    return problems


def test_production_hides_errors_and_the_debugger_and_secures_the_session_cookie(
    production: Served,
) -> None:
    response = production.get("/_chaos/crash")
    assert response.status == 500
    assert b"Internal Server Error" in response.body
    leaked = [leak for leak in LEAKS if leak.encode() in response.body]
    assert production.process.stderr is not None
    stderr = wait_for_text(production.process.stderr, CRASH_MARKER)
    stdout = wait_for_text(production.process.log, re.escape('"GET /_chaos/crash HTTP/1.1" 500'))
    record(
        "20-error-500",
        "an exception in a view, production settings",
        production.label,
        f"HTTP 500, generic page ({len(response.body)} bytes), {len(leaked)} leaks; "
        "traceback on stderr, access line on stdout",
        "no traceback or message to the client; traceback on stderr",
    )
    assert not leaked, response.body
    # Flask logs the exception through wsgi.errors, which gunicorn's errorlog "-" sends to stderr.
    assert "Exception on /_chaos/crash [GET]" in stderr
    assert "Traceback (most recent call last)" in stderr and 'chaos_routes.py", line' in stderr
    assert CRASH_MARKER not in stdout, "the traceback belongs on stderr, not in the access log"

    assert not (problems := debugger_problems(production.port)), problems

    response = production.get("/_chaos/session")
    assert response.status == 200
    cookie = SimpleCookie(response.headers["set-cookie"])["session"]
    flags = f"Secure={cookie['secure']}, HttpOnly={cookie['httponly']}, "
    flags += f"SameSite={cookie['samesite']}"
    record(
        "21-session-cookie",
        "the session cookie, production settings",
        production.label,
        flags,
        "Secure, HttpOnly, SameSite=Lax",
    )
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Lax", flags


def test_a_stray_flask_debug_reaches_no_debugger(chaos: Chaos) -> None:
    # FLASK_DEBUG only configures Flask; the debugger needs `flask run` or app.run(), which a
    # server like gunicorn never calls.
    with chaos(WEB_CONCURRENCY="1", FLASK_DEBUG="1") as served:
        assert not (problems := debugger_problems(served.port)), problems


@pytest.mark.parametrize(
    "settings",
    [{}, {"FLASK_SECRET_KEY": ""}, {"FLASK_DEBUG": "0"}, {"FLASK_DEBUG": "false"}],
    ids=["unset", "empty", "debug-0", "debug-false"],
)
def test_production_has_no_default_secret_key(
    default_project: Path, run_env: Callable[..., dict[str, str]], settings: dict[str, str]
) -> None:
    check = (
        "from demo_shop import config, create_app\n"
        "assert 'SECRET_KEY' not in config.DEFAULTS, 'a default secret'\n"
        "app = create_app()\n"
        "print('STARTED with', repr(app.config['SECRET_KEY']))\n"
    )
    result = subprocess.run(
        ["python", "-c", check],
        cwd=default_project,
        env=run_env(**settings),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "STARTED" not in result.stdout, result.stdout
    assert result.returncode == 4, result.stderr  # the app's "failed to load" code
    assert result.stderr.startswith("FLASK_SECRET_KEY"), result.stderr


# Raw requests, each wrong in one way; {host} is the site's name.
GET = b"GET / HTTP/1.1\r\nHost: {host}\r\n"
POST = b"POST / HTTP/1.1\r\nHost: {host}\r\n"
HOSTILE = {
    "header of 10 KB": GET + b"X-Big: " + b"a" * 10_000 + b"\r\n\r\n",
    # More than nginx's 32 kB of headers and gunicorn's limit_request_fields (a hundred or so
    # are a normal request: they reach the app).
    "9,000 headers": GET + b"".join(b"X-H%d: 1\r\n" % i for i in range(9000)) + b"\r\n",
    "request line of 10 KB": b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: {host}\r\n\r\n",
    "two Host headers": GET + b"Host: evil.example\r\n\r\n",
    "Host with a control byte": b"GET / HTTP/1.1\r\nHost: ev\x01il.example\r\n\r\n",
    "Host with a space": b"GET / HTTP/1.1\r\nHost: evil example\r\n\r\n",
    "unknown Host": b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    "TLS handshake on the HTTP port": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"
    + bytes(50)
    + b"\r\n\r\n",
    "invalid method": b"G@T / HTTP/1.1\r\nHost: {host}\r\n\r\n",
    "invalid version": b"GET / HTTP/1.1.1\r\nHost: {host}\r\n\r\n",
    "NUL in a header": GET + b"X-A: a\x00b\r\n\r\n",
    "Content-Length and chunked (smuggling)": POST
    + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two Content-Lengths": POST + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "invalid chunk size": POST + b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n",
    "obsolete line folding": GET + b"X-A: a\r\n b\r\n\r\n",
    "path traversal": b"GET /static/../../etc/passwd HTTP/1.1\r\nHost: {host}\r\n\r\n",
}
CLOSED = 0  # the connection closed without an answer (nginx's 444)


def status_of(port: int, request: bytes, host: str) -> int:
    head = raw_request(port, request.replace(b"{host}", host.encode()))
    return int(head.split()[1]) if head else CLOSED


@pytest.mark.parametrize("behind_nginx", [False, True], ids=["gunicorn-alone", "nginx"])
def test_hostile_input_gets_4xx_and_kills_no_worker(
    chaos: Chaos, production: Served, behind_nginx: bool
) -> None:
    # Without nginx, Host names are for the app to check: Flask's TRUSTED_HOSTS refuses the
    # others with a 400. nginx drops requests for other host names without an answer (444).
    trusted = {} if behind_nginx else {"FLASK_TRUSTED_HOSTS": '["example.com"]'}
    with chaos("nginx" if behind_nginx else "gthread", **trusted) as served:
        host = served.host or "example.com"
        before = served.workers(2)
        statuses = {name: status_of(served.port, raw, host) for name, raw in HOSTILE.items()}
        assert served.get("/healthz", {"Host": host}).status == 200
        assert worker_pids(served.pid) == before, "a worker died or was replaced"
        log = served.output()
        assert "Traceback" not in log and "exited with code" not in log, log
    dropped = {name for name, code in statuses.items() if code == CLOSED}
    not_4xx = {n: c for n, c in statuses.items() if not 400 <= c < 500 and n not in dropped}
    counts = Counter(statuses.values())
    summary = ", ".join(f"{c or 'closed'}×{counts[c]}" for c in sorted(counts, reverse=True))
    label, figure = served.label, " (closed: 444, unknown names); 0 workers died"
    if not behind_nginx:
        # The shipped defaults (no TRUSTED_HOSTS): which Host names reach the app.
        open_hosts = [
            name
            for name in ("Host with a space", "unknown Host")
            if status_of(production.port, HOSTILE[name], "example.com") == 200
        ]
        label = f"{served.label} alone, FLASK_TRUSTED_HOSTS set"
        figure = f"; 0 workers died. Without TRUSTED_HOSTS {len(open_hosts)} bad Host cases "
        figure += "reach the app"
    record(
        "31-hostile-nginx" if behind_nginx else "30-hostile-gunicorn",
        f"{len(HOSTILE)} malformed or hostile requests (see test)",
        label,
        summary + figure,
        f"4xx{' or dropped (444)' if behind_nginx else ''} for every one, no worker dies",
    )
    assert dropped <= ({"unknown Host"} if behind_nginx else set()), dropped
    assert not not_4xx, not_4xx
