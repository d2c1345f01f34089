"""Raw, slow and plain clients over loopback: hostile bytes, and what a slowloris flood does to
everyone else. Every one stops by itself.
"""

from __future__ import annotations

import contextlib
import math
import select
import socket
import time
from dataclasses import dataclass, field

from harness.http import LOOPBACK
from harness.load import Load


def raw_request(port: int, data: bytes, *, whole: bool = False) -> bytes:
    """Send raw `data` to 127.0.0.1:`port`; the answer's head as soon as it arrives, or with
    `whole` everything until the server closes. b"" when it closes without an answer."""
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        while (whole or b"\r\n\r\n" not in received) and (chunk := sock.recv(65536)):
            received += chunk
    return received if whole else received.split(b"\r\n\r\n", 1)[0]


@dataclass
class SlowClients:
    # Seconds each first-generation connection lived before the server closed it.
    cut_after: list[float] = field(default_factory=list)


def _slow_connection(port: int, host: str) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=2)
    # A request line and a Host header, then never the blank line that ends it.
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n".encode())
    sock.setblocking(False)
    return sock


def hold_slow_clients(port: int, host: str, count: int, seconds: float) -> SlowClients:
    """Keep `count` slowloris connections open for `seconds`, one header line per connection
    every 2 s; replace those the server closes."""
    stats = SlowClients()
    started: dict[socket.socket, float | None] = {
        _slow_connection(port, host): time.monotonic() for _ in range(count)
    }
    end = time.monotonic() + seconds
    next_line = time.monotonic() + 2
    try:
        while (now := time.monotonic()) < end:
            readable, _, _ = select.select(list(started), [], [], min(0.25, end - now))
            for sock in readable:  # the server answered or closed: either way, cut off
                with contextlib.suppress(OSError):
                    sock.recv(4096)
                if (born := started.pop(sock)) is not None:
                    stats.cut_after.append(time.monotonic() - born)
                sock.close()
                with contextlib.suppress(OSError):
                    started[_slow_connection(port, host)] = None  # a replacement
            if time.monotonic() >= next_line:
                next_line += 2
                for sock in list(started):
                    with contextlib.suppress(OSError):
                        sock.send(b"X-Slow: 1\r\n")
    finally:
        for sock in started:
            sock.close()
    return stats


@dataclass
class Samples:
    latencies: list[float]  # seconds, of the answered ones
    failed: int

    @property
    def total(self) -> int:
        return len(self.latencies) + self.failed

    def percentile(self, p: float) -> float:
        """The p-th percentile latency (nearest rank), inf when none answered."""
        ordered = sorted(self.latencies) or [math.inf]
        return ordered[max(1, math.ceil(len(ordered) * p / 100)) - 1]

    def summary(self) -> str:
        p50, p99 = self.percentile(50) * 1000, self.percentile(99) * 1000
        return f"{len(self.latencies)}/{self.total} answered, p50 {p50:.1f} ms, p99 {p99:.1f} ms"


def sample_requests(
    port: int, host: str, seconds: float, timeout: float = 2.0, pause: float = 0.05
) -> Samples:
    """GET /healthz over fresh connections for `seconds` (at most 1000 requests) from one
    client; a request counts as answered only with a 200 within `timeout`."""
    with Load(
        port, host=host, clients=1, seconds=seconds, per_client=1000, timeout=timeout, pause=pause
    ) as load:
        time.sleep(seconds)
    return Samples([o.ended - o.started for o in load.outcomes if o.ok], len(load.failed))
