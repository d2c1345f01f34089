"""Loading a stack: wrk when it is installed, else the Python generator (bench/pyload.py).

Both keep `connections` keep-alive connections busy for `seconds` against one
URL on 127.0.0.1 and report the same figures: successful answers per second
and latency percentiles. wrk is what the anchors in DESIGN.md were measured
with; the Python generator (one process, asyncio) saturates far sooner, so its
figures are only comparable with each other and a run says which it used.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.http import LOOPBACK

LUA_REPORT = Path(__file__).resolve().parent / "wrk_report.lua"
CONNECTIONS = 50  # the anchors' wrk -c50
WRK_THREADS = 2  # wrk's default, one per core here
# Requests slower than this count as errors and vanish from the latencies:
# above wrk's 2 s default, so that a slow tail (gevent's 2.6 s p99) shows.
TIMEOUT_S = 10


@dataclass
class LoadResult:
    generator: str  # "wrk" or "python"
    requests: int  # complete answers, any status
    duration_s: float
    errors: dict[str, int]  # connect/read/write/timeout, and status: answers not 2xx/3xx
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def ok(self) -> int:
        return self.requests - self.errors.get("status", 0)

    @property
    def rps(self) -> float:
        """Successful answers per second: a 502 from nginx is no throughput."""
        return self.ok / self.duration_s if self.duration_s else 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok, "rps": round(self.rps, 1)}


def generator() -> str:
    """ "wrk" when it is on PATH, else "python" (always possible: standard library)."""
    return "wrk" if shutil.which("wrk") else "python"


def run_load(
    port: int, path: str, seconds: float, host: str | None, use: str, connections: int = CONNECTIONS
) -> LoadResult:
    url = f"http://{LOOPBACK}:{port}{path}"
    if use == "wrk":
        return _wrk(url, seconds, host, connections)
    from bench.pyload import run as python_load

    return asyncio.run(python_load(port, path, seconds, host, connections, TIMEOUT_S))


def _wrk(url: str, seconds: float, host: str | None, connections: int) -> LoadResult:
    command = [
        "wrk",
        f"-t{WRK_THREADS}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={TIMEOUT_S}s",
        "-s",
        str(LUA_REPORT),
    ]
    if host:
        command += ["-H", f"Host: {host}"]
    result = subprocess.run(  # noqa: S603 (wrk, our own arguments)
        [*command, url], capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("BENCH-JSON ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout}{result.stderr}")
    data = json.loads(line.removeprefix("BENCH-JSON "))
    latency = {key: value / 1000 for key, value in data["latency_us"].items()}
    return LoadResult(
        "wrk",
        data["requests"],
        data["duration_us"] / 1e6,
        data["errors"],
        latency["p50"],
        latency["p90"],
        latency["p99"],
        latency["max"],
    )
