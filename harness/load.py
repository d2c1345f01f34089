"""A small, bounded load generator: `clients` threads send GET requests to 127.0.0.1, a fresh
connection each, until `stop()`, `seconds` or `per_client` requests, whichever comes first.
Every request is recorded, so tests assert on counts, never on speed.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import KW_ONLY, dataclass

from harness.http import http_get
from harness.waiting import eventually


@dataclass(frozen=True)
class Outcome:
    # time.time(), not monotonic: comparable with instants other processes record.
    started: float
    ended: float
    status: int | None  # None: no HTTP response (refused, reset, timed out)
    error: str  # "" or the exception's class name

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(eq=False)
class Load:
    """Use as a context manager; read the outcomes after `stop()` (or exit)."""

    port: int
    path: str = "/healthz"
    _: KW_ONLY
    clients: int = 4
    seconds: float = 20.0
    per_client: int = 20_000
    timeout: float = 10.0
    pause: float = 0.002
    host: str | None = None  # behind nginx the Host header picks the site

    def __post_init__(self) -> None:
        self.headers = {"Connection": "close", **({"Host": self.host} if self.host else {})}
        self.outcomes: list[Outcome] = []  # appended by the clients (list.append is atomic)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, name=f"load-{i}", daemon=True)
            for i in range(self.clients)
        ]

    def __enter__(self) -> Load:
        self._deadline = time.monotonic() + self.seconds
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Let each client finish the request it is sending, then return."""
        self._stop.set()
        end = time.monotonic() + self.timeout + 5
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        assert not stuck, f"load clients still running after stop: {stuck}"

    def _client(self) -> None:
        for _ in range(self.per_client):
            if self._stop.is_set() or time.monotonic() > self._deadline:
                return
            started, error = time.time(), ""
            status: int | None = None
            try:
                status = http_get(self.port, self.path, self.headers, self.timeout).status
            except (OSError, http.client.HTTPException) as exc:
                error = type(exc).__name__
            self.outcomes.append(Outcome(started, time.time(), status, error))
            self._stop.wait(self.pause)

    @property
    def ok(self) -> int:
        return sum(o.ok for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def wait_for(self, ok: int, timeout: float = 15) -> None:
        """Block until `ok` more requests have succeeded."""
        target = self.ok + ok

        def reached() -> bool:
            assert any(t.is_alive() for t in self._threads), "every load client has finished"
            return self.ok >= target

        eventually(reached, timeout, what=f"{target} answers (at {self.ok})", interval=0.02)

    def failure_kinds(self) -> str:
        """What the failed requests got, e.g. "ConnectionResetError: 2, 502: 1"."""
        kinds = Counter(o.error or str(o.status) for o in self.failed)
        return ", ".join(f"{kind}: {n}" for kind, n in kinds.most_common()) or "none"

    def summary(self) -> str:
        return f"{self.ok} ok, {len(self.failed)} failed ({self.failure_kinds()})"
