"""The "as printed" tier: every command a generated project tells its user to type,
run literally, for each row of a literal variant table.

Per variant: the project is copied with Copier (its task writes the development
.env), then the commands of Copier's message after the copy run, then every ```sh
block of the generated README, top to bottom, in one terminal session (exports and
`cd` carry over), in a clean environment (harness/readme.py): PATH has
uv (as the README says to install it), python3, git and the system's folders
without `python`; HOME is empty. Placeholders come from one table (PLACEHOLDERS,
plus this run's paths). Server lines start in the background on a free loopback
port, are probed (/healthz, /, GET and POST /items with a database: in production,
without API_TOKEN, the README says writes are refused) and stopped by their PID.
Lines this machine cannot run (docker, kubectl, apt, a systemd host, a tagged
template) are counted as skipped, with the reason, never as passed.

Each variant records a row; the session prints them as one table (tests/conftest.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import REPO
from harness.postgres import PostgresServer, postgres_bin, remove_postgres, start_postgres
from harness.readme import (
    PLACEHOLDERS,
    SECTIONS_RUN_ELSEWHERE,
    Session,
    copy_as_user,
    message_commands,
    readme_blocks,
    run_block,
    user_bin,
    user_environment,
)
from harness.render import RUNNING_PYTHON

# The rows, literally: the defaults, each database, the other server, both presets.
# Every row runs on this machine's Python: uv's own Python downloads come from
# GitHub, which is unreachable here.
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("defaults", {}),
    ("sqlite", {"database": "sqlite"}),
    ("postgresql", {"database": "postgresql"}),
    ("granian", {"server": "granian"}),
    ("course preset", yaml.safe_load((REPO / "presets" / "course.yml").read_text())),
    ("production preset", yaml.safe_load((REPO / "presets" / "production.yml").read_text())),
]
# The README's example database URL, and the PostgreSQL server that stands in for it.
EXAMPLE_DATABASE_URL = "postgresql://app@localhost/app"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer | None]:
    if postgres_bin() is None:
        yield None
        return
    server = start_postgres()
    yield server
    remove_postgres(server)


@pytest.mark.parametrize(("variant", "answers"), VARIANTS, ids=[v for v, _ in VARIANTS])
def test_every_command_runs_as_printed(
    variant: str,
    answers: dict[str, Any],
    postgres: PostgresServer | None,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    started = time.monotonic()
    data = {**answers, "python_version": RUNNING_PYTHON}
    database = data.get("database", "none")
    if database == "postgresql" and postgres is None:
        pytest.skip("PostgreSQL is not installed (.ci/install-system-tools.sh installs it)")
    # A user follows either Copier's message or the README: each gets a copy of its own.
    message = copy_as_user(tmp_path / "message" / "my-app", **data).split("is ready in", 1)[1]
    project = tmp_path / "my-app"
    copy_as_user(project, **data)
    placeholders = dict(PLACEHOLDERS)
    if postgres is not None:
        placeholders[EXAMPLE_DATABASE_URL] = postgres.url()
    logs = tmp_path / "logs"
    logs.mkdir()
    env = user_environment(tmp_path / "home", user_bin(tmp_path / "bin", ["uv"]))
    with_database = database != "none"

    first = Session(cwd=tmp_path / "message", env=env, logs=logs)
    run_block(first, "message after copy", message_commands(message), placeholders, with_database)
    # The README in a terminal of its own: nothing the message exported.
    session = Session(cwd=project, env=env, logs=logs)
    blocks = 1
    for block in readme_blocks((project / "README.md").read_text()):
        if block.section in SECTIONS_RUN_ELSEWHERE:
            reason = SECTIONS_RUN_ELSEWHERE[block.section]
            session.skipped += [f"{block.section}: {line} ({reason})" for line in block.lines()]
            continue
        session.cwd = project  # each section's commands run in the project
        run_block(session, f"README {block.section!r}", block.lines(), placeholders, with_database)
        blocks += 1

    row = {
        "variant": variant,
        "blocks": str(blocks),
        "lines run": str(first.lines_run + session.lines_run),
        "lines skipped": str(len(first.skipped) + len(session.skipped)),
        "failures": str(len(first.failures) + len(session.failures)),
        "seconds": f"{time.monotonic() - started:.0f}",
    }
    record_property("as_printed_row", json.dumps(row))
    (logs / "skipped.txt").write_text("\n".join(first.skipped + session.skipped))
    failures = first.failures + session.failures
    assert not failures, f"[{variant}] " + f"\n[{variant}] ".join(failures)
