"""One HTTP request over loopback, by TCP port or unix socket (or over TLS)."""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Mapping
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
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket, the way nginx reaches the app server."""

    def __init__(self, socket_path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(socket_path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def http_request(
    where: int | Path,
    method: str,
    path: str = "/",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5,
) -> Response:
    """One request over a fresh connection to 127.0.0.1:`where`, or to the
    unix socket at `where`."""
    if isinstance(where, Path):
        conn: http.client.HTTPConnection = UnixHTTPConnection(where, timeout)
    else:
        conn = http.client.HTTPConnection(LOOPBACK, where, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def http_get(
    where: int | Path,
    path: str = "/",
    headers: Mapping[str, str] | None = None,
    timeout: float = 5,
) -> Response:
    return http_request(where, "GET", path, headers=headers, timeout=timeout)


def https_get(port: int, path: str, server_name: str, cafile: Path) -> Response:
    """One GET over TLS to 127.0.0.1:`port`, with `server_name` as SNI and Host,
    the certificate checked against `cafile`."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((LOOPBACK, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            conn = http.client.HTTPConnection(server_name, timeout=5)
            conn.sock = tls  # http.client over the socket opened here
            conn.request("GET", path, headers={"Host": server_name})
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
