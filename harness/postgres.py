"""A private, throwaway PostgreSQL server for the tests (Debian's package).

It listens on a unix socket in its own folder only (no TCP at all), is owned
by the `postgres` user because initdb refuses to run as root, and is started
and stopped with pg_ctl, never through the packaged cluster or its service.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.tools import skip_or_fail


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/VERSION/bin that has initdb."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3])
    return versions[-1].parent if versions else None


@dataclass
class PostgresServer:
    bindir: Path
    root: Path  # owned by postgres: data/, the socket, the log

    def url(self) -> str:
        """A libpq URL over the unix socket (what DATABASE_URL holds)."""
        return f"postgresql://postgres@/app?host={self.root}"

    def _as_postgres(self, program: str, *args: str) -> str:
        """`program` from bindir, run as the postgres user; its output."""
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bindir / program), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def start(self) -> None:
        # listen_addresses='' : unix socket only; fsync off: test data needs no durability.
        options = f"-k {self.root} -c listen_addresses='' -c fsync=off"
        self._as_postgres(
            "pg_ctl", "-D", f"{self.root}/data", "-l", f"{self.root}/server.log", "-o", options,
            "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self) -> None:
        # fast: roll back open transactions and disconnect clients, like a crash
        # from the app's point of view, but leaves the data consistent.
        self._as_postgres(
            "pg_ctl", "-D", f"{self.root}/data", "-m", "fast", "-w", "-t", "30", "stop"
        )

    def psql(self, sql: str, database: str = "app") -> str:
        return self._as_postgres(
            "psql", "-h", str(self.root), "-U", "postgres", "-d", database, "-At",
            "-v", "ON_ERROR_STOP=1", "-c", sql,
        )  # fmt: skip


def start_postgres() -> PostgresServer:
    """Init and start a server in a new folder; skip (fail under CI) without PostgreSQL."""
    bindir = postgres_bin()
    if bindir is None or shutil.which("runuser") is None:
        skip_or_fail("PostgreSQL is not installed (apt-get install postgresql)")
    assert bindir is not None
    # Not under pytest's tmp_path: that is private to root, and the server runs
    # as postgres.
    root = Path(tempfile.mkdtemp(prefix="copier-flask-pg-"))
    shutil.chown(root, "postgres", "postgres")
    os.chmod(root, 0o700)
    server = PostgresServer(bindir, root)
    server._as_postgres(
        "initdb", "-D", f"{root}/data", "-A", "trust", "-U", "postgres", "--no-sync",
        "--encoding=UTF8",
    )  # fmt: skip
    server.start()
    server.psql("CREATE DATABASE app", database="postgres")
    return server


def remove_postgres(server: PostgresServer) -> None:
    with contextlib.suppress(RuntimeError):  # already stopped by the test
        server.stop()
    shutil.rmtree(server.root, ignore_errors=True)
