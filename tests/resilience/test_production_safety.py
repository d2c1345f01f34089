"""Production settings are safe settings: no debugger, no traceback for the
client (it goes to stderr), secure session cookies, no default secret, and
hostile HTTP input answered with 4xx by gunicorn alone and through nginx,
without a worker dying.

The project under test is a copy of the default render with test-only routes
(harness/apps/chaos_routes.py) that crash or set a session cookie.
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

from harness.chaos import CRASH_MARKER, chaos_copy, worker_pids
from harness.clients import raw_request
from harness.figures import record
from harness.http import http_get
from harness.processes import wait_for_text
from harness.serving import Served, serve
from harness.venvs import production_env

# What must never reach a client: the exception, its message, the code.
LEAKS = [CRASH_MARKER, "hunter2", "Traceback", "RuntimeError", "chaos_routes", 'File "']


@pytest.fixture(scope="module")
def chaos_project(default_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chaos_copy(default_project, tmp_path_factory.mktemp("safety") / "project")


@pytest.fixture(scope="module")
def production(
    chaos_project: Path, venv_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """gunicorn with the generated defaults and a secret: production as shipped,
    stdout (the access log) and stderr (the error log) in separate files."""
    env = production_env(venv_bin, WEB_CONCURRENCY="2")
    logs = tmp_path_factory.mktemp("production-logs")
    with serve(chaos_project, logs, env, app="chaos_wsgi:app", split_stderr=True) as served:
        yield served


def chaos_server(
    project: Path, venv_bin: Path, work: Path, behind_nginx: bool = False, **settings: str
) -> AbstractContextManager[Served]:
    """The chaos app under gunicorn, production settings plus `settings`."""
    env = production_env(venv_bin, **settings)
    return serve(project, work, env, app="chaos_wsgi:app", behind_nginx=behind_nginx)


# -- errors, the debugger, cookies, the secret -------------------------------------------


def test_an_exception_is_a_generic_500_and_its_traceback_goes_to_stderr(
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
    # Flask logs the exception with its traceback through wsgi.errors, which
    # gunicorn's error log (errorlog = "-") writes to stderr.
    assert "Exception on /_chaos/crash [GET]" in stderr
    assert "Traceback (most recent call last)" in stderr and 'chaos_routes.py", line' in stderr
    assert CRASH_MARKER not in stdout, "the traceback belongs on stderr, not in the access log"


@pytest.mark.parametrize("debug", ["", "1"], ids=["production", "stray-FLASK_DEBUG=1"])
def test_the_werkzeug_debugger_and_console_are_unreachable(
    production: Served,
    chaos_project: Path,
    venv_bin: Path,
    tmp_path: Path,
    debug: str,
) -> None:
    def probe(port: int) -> list[str]:
        """What a debugger would expose, checked on `port`; the problems found."""
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

    if not debug:
        problems = probe(production.port)
    else:
        # FLASK_DEBUG only configures Flask; the debugger needs `flask run` or
        # app.run(), which a server like gunicorn never calls.
        settings = {"WEB_CONCURRENCY": "1", "FLASK_DEBUG": debug}
        with chaos_server(chaos_project, venv_bin, tmp_path, **settings) as served:
            problems = probe(served.port)
    assert not problems, problems


def test_session_cookies_are_secure_httponly_and_samesite(production: Served) -> None:
    response = production.get("/_chaos/session")
    assert response.status == 200
    cookie = SimpleCookie(response.headers["set-cookie"])["session"]
    flags = (
        f"Secure={cookie['secure']}, HttpOnly={cookie['httponly']}, SameSite={cookie['samesite']}"
    )
    record(
        "21-session-cookie",
        "the session cookie, production settings",
        production.label,
        flags,
        "Secure, HttpOnly, SameSite=Lax",
    )
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Lax", flags


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


# -- hostile HTTP input --------------------------------------------------------------------

# Raw requests, each wrong in one way; {host} is the site's name.
HOSTILE = {
    "header of 10 KB": b"GET / HTTP/1.1\r\nHost: {host}\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n",
    # More than nginx's 32 kB of headers and gunicorn's limit_request_fields (a
    # hundred or so are a normal request: they reach the app).
    "9,000 headers": b"GET / HTTP/1.1\r\nHost: {host}\r\n"
    + b"".join(b"X-H%d: 1\r\n" % i for i in range(9000))
    + b"\r\n",
    "request line of 10 KB": b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: {host}\r\n\r\n",
    "two Host headers": b"GET / HTTP/1.1\r\nHost: {host}\r\nHost: evil.example\r\n\r\n",
    "Host with a control byte": b"GET / HTTP/1.1\r\nHost: ev\x01il.example\r\n\r\n",
    "Host with a space": b"GET / HTTP/1.1\r\nHost: evil example\r\n\r\n",
    "unknown Host": b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    "TLS handshake on the HTTP port": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"
    + b"\x00" * 50
    + b"\r\n\r\n",
    "invalid method": b"G@T / HTTP/1.1\r\nHost: {host}\r\n\r\n",
    "invalid version": b"GET / HTTP/1.1.1\r\nHost: {host}\r\n\r\n",
    "NUL in a header": b"GET / HTTP/1.1\r\nHost: {host}\r\nX-A: a\x00b\r\n\r\n",
    "Content-Length and chunked (smuggling)": b"POST / HTTP/1.1\r\nHost: {host}\r\n"
    b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two Content-Lengths": b"POST / HTTP/1.1\r\nHost: {host}\r\n"
    b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "invalid chunk size": b"POST / HTTP/1.1\r\nHost: {host}\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n",
    "obsolete line folding": b"GET / HTTP/1.1\r\nHost: {host}\r\nX-A: a\r\n b\r\n\r\n",
    "path traversal": b"GET /static/../../etc/passwd HTTP/1.1\r\nHost: {host}\r\n\r\n",
}
CLOSED = 0  # the connection closed without an answer (nginx's 444)


def status_of(port: int, request: bytes, host: str) -> int:
    """The status code of the answer to raw `request`, or CLOSED."""
    head = raw_request(port, request.replace(b"{host}", host.encode()))
    return int(head.split()[1]) if head else CLOSED


def send_hostile_input(served: Served, host: str) -> dict[str, int]:
    """Every HOSTILE request; their statuses. Asserts that no worker died."""
    before = served.workers(2)
    statuses = {name: status_of(served.port, request, host) for name, request in HOSTILE.items()}
    assert served.get("/healthz", {"Host": host}).status == 200
    assert worker_pids(served.pid) == before, "a worker died or was replaced"
    log = served.output()
    assert "Traceback" not in log and "exited with code" not in log, log
    return statuses


def summary(statuses: dict[str, int]) -> str:
    """How many got which answer, e.g. "400×11, 414×1, closed×1"."""
    counts = Counter(statuses.values())
    return ", ".join(f"{code or 'closed'}×{counts[code]}" for code in sorted(counts, reverse=True))


def test_hostile_input_to_gunicorn_alone_gets_4xx(
    chaos_project: Path, venv_bin: Path, tmp_path: Path, production: Served
) -> None:
    # Without nginx, Host names are for the app to check: Flask's TRUSTED_HOSTS
    # (FLASK_TRUSTED_HOSTS='["example.com"]') refuses the others with a 400.
    trusted = {"WEB_CONCURRENCY": "2", "FLASK_TRUSTED_HOSTS": '["example.com"]'}
    with chaos_server(chaos_project, venv_bin, tmp_path, **trusted) as served:
        statuses = send_hostile_input(served, "example.com")
    # The shipped defaults (no TRUSTED_HOSTS): which Host names reach the app.
    open_hosts = [
        name
        for name in ("Host with a space", "unknown Host")
        if status_of(production.port, HOSTILE[name], "example.com") == 200
    ]
    not_4xx = {name: code for name, code in statuses.items() if not 400 <= code < 500}
    record(
        "30-hostile-gunicorn",
        f"{len(HOSTILE)} malformed or hostile requests (see test)",
        f"{served.label} alone, FLASK_TRUSTED_HOSTS set",
        f"{summary(statuses)}; 0 workers died. Without TRUSTED_HOSTS "
        f"{len(open_hosts)} bad Host cases reach the app",
        "4xx for every one, no worker dies",
    )
    assert not not_4xx, not_4xx


def test_hostile_input_through_nginx_gets_4xx(
    chaos_project: Path, venv_bin: Path, tmp_path: Path
) -> None:
    with chaos_server(chaos_project, venv_bin, tmp_path, True, WEB_CONCURRENCY="2") as served:
        assert served.host
        statuses = send_hostile_input(served, served.host)
    # nginx drops requests for other host names without an answer (444).
    dropped = {name for name, code in statuses.items() if code == CLOSED}
    not_4xx = {n: c for n, c in statuses.items() if not 400 <= c < 500 and n not in dropped}
    record(
        "31-hostile-nginx",
        f"{len(HOSTILE)} malformed or hostile requests (see test)",
        served.label,
        f"{summary(statuses)} (closed: 444, unknown names); 0 workers died",
        "4xx or dropped (444) for every one, no worker dies",
    )
    assert dropped <= {"unknown Host"}, dropped
    assert not not_4xx, not_4xx
