"""A rendered project's Procfile, as a platform (or honcho, locally) runs it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from harness.http import free_port
from harness.serving import Served, serve
from harness.tools import require_tool


def procfile_command(project: Path, process: str) -> str:
    """The command of the Procfile's `process:` line (web, release)."""
    for line in (project / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise AssertionError(f"no {process}: line in the Procfile")


@contextmanager
def serve_under_honcho(
    project: Path, work: Path, env: Mapping[str, str], **settings: str
) -> Iterator[Served]:
    """The Procfile's web process under `honcho start`, with `settings` in the
    env file honcho reads (instead of the project's .env, made for development)."""
    envfile = work / "production.env"
    work.mkdir(parents=True, exist_ok=True)
    envfile.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    port = free_port()
    command = [require_tool("honcho"), "-e", str(envfile), "start", "-p", str(port), "web"]
    with serve(project, work, env, command=command, port=port) as served:
        yield served
