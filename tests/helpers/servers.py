"""Starting real servers on loopback, talking HTTP to them, and stopping them.

Every server runs in its own session with its output in a log file; it is
stopped by SIGTERM to its own PID, and killed (with its whole process group)
only if it does not exit in time. Nothing here waits without a deadline.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def http_request(
    port: int,
    method: str,
    path: str = "/",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5,
) -> Response:
    """One request over a fresh connection to 127.0.0.1:`port`."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def http_get(
    port: int, path: str = "/", headers: Mapping[str, str] | None = None, timeout: float = 5
) -> Response:
    """One GET over a fresh connection to 127.0.0.1:`port`."""
    return http_request(port, "GET", path, headers=headers, timeout=timeout)


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket, the way nginx reaches gunicorn."""

    def __init__(self, socket_path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(socket_path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def unix_http_get(socket_path: Path, path: str = "/", timeout: float = 5) -> Response:
    """One GET over the unix socket at `socket_path`."""
    conn = UnixHTTPConnection(socket_path, timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start(command: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path) -> Server:
    """Start `command` in its own session, stdout and stderr into `log`."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(process, log)


def wait_http(server: Server, port: int, path: str = "/healthz", deadline: float = 20) -> Response:
    """Poll until `path` answers, the server dies, or the deadline passes."""
    end = time.monotonic() + deadline
    last_error: Exception | None = None
    while time.monotonic() < end:
        if server.process.poll() is not None:
            raise AssertionError(
                f"server exited with {server.process.returncode}:\n{server.output()}"
            )
        try:
            return http_get(port, path, timeout=2)
        except OSError as exc:  # refused or reset while starting
            last_error = exc
            time.sleep(0.1)
    raise AssertionError(f"no answer on {path} in {deadline}s ({last_error}):\n{server.output()}")


def stop(server: Server, timeout: float = 20) -> int:
    """SIGTERM to the server's own PID; SIGKILL its group if it overstays."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.process.wait(5)
            raise AssertionError(f"did not stop within {timeout}s:\n{server.output()}") from None
    return server.process.returncode


@contextmanager
def running(
    command: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    port: int,
    ready_path: str = "/healthz",
) -> Iterator[Server]:
    """A server that answers on `port`, stopped (and checked to stop) on exit."""
    server = start(command, cwd, env, log)
    try:
        wait_http(server, port, ready_path)
        yield server
    finally:
        stop(server)
