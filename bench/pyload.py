"""The fallback load generator, for machines without wrk: asyncio, standard library.

`connections` keep-alive HTTP/1.1 connections each send GET `path` and read
the answer (status line, headers, a Content-Length body: every stack here
sends one), again and again until `seconds` have passed. A failed connection
is counted and opened anew. Bounded by the deadline; nothing outlives run().
"""

from __future__ import annotations

import asyncio
import math
import time

from bench.loadgen import LoadResult
from harness.http import LOOPBACK


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []  # seconds, complete answers
        self.errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}


async def _one_connection(
    port: int, request: bytes, deadline: float, timeout: float, tally: Tally
) -> None:
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(LOOPBACK, port), timeout
            )
        except (OSError, asyncio.TimeoutError):
            tally.errors["connect"] += 1
            await asyncio.sleep(0.01)
            continue
        try:
            while time.monotonic() < deadline:
                began = time.monotonic()
                writer.write(request)
                status, keep = await asyncio.wait_for(_read_answer(reader), timeout)
                tally.latencies.append(time.monotonic() - began)
                if not 200 <= status < 400:
                    tally.errors["status"] += 1
                if not keep:
                    break
        except asyncio.TimeoutError:
            tally.errors["timeout"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            tally.errors["read"] += 1
        finally:
            writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return its status and whether the connection stays open."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection") != "close"


def _percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted seconds, in milliseconds."""
    if not ordered:
        return 0.0
    return ordered[max(1, math.ceil(len(ordered) * p / 100)) - 1] * 1000


async def run(
    port: int, path: str, seconds: float, host: str | None, connections: int, timeout: float
) -> LoadResult:
    request = f"GET {path} HTTP/1.1\r\nHost: {host or LOOPBACK}\r\n\r\n".encode()
    tally = Tally()
    began = time.monotonic()
    deadline = began + seconds
    await asyncio.gather(
        *(_one_connection(port, request, deadline, timeout, tally) for _ in range(connections))
    )
    duration = time.monotonic() - began
    ordered = sorted(tally.latencies)
    return LoadResult(
        "python",
        len(ordered),
        duration,
        tally.errors,
        _percentile(ordered, 50),
        _percentile(ordered, 90),
        _percentile(ordered, 99),
        ordered[-1] * 1000 if ordered else 0.0,
    )
