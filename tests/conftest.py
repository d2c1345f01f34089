"""Fixtures made once per session (each pytest-xdist worker has its own: the venv is shared
through a cache on disk, harness/venvs.py), and each test's tier: the folder it sits in."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import figures
from harness.images import require_podman
from harness.podman import podman_env
from harness.render import render
from harness.tables import markdown_table, recorded_rows
from harness.venvs import project_venv
from harness.venvs import run_env as project_run_env

TESTS = Path(__file__).resolve().parent
# Each folder of tests/ is a marker (pyproject.toml describes them).
TIERS = ("quick", "live", "container", "update", "resilience", "as_printed", "time_travel")


@pytest.fixture(scope="session")
def default_project(copie_session: Any) -> Path:
    """The defaults (for this interpreter's Python), rendered once per session."""
    return render(copie_session)


@pytest.fixture(scope="session")
def venv_bin(default_project: Path) -> Path:
    """bin/ of the shared virtualenv with the rendered projects' dependencies."""
    return project_venv(default_project)


@pytest.fixture(scope="session")
def run_env(venv_bin: Path) -> Callable[..., dict[str, str]]:
    """`run_env(**settings)`: harness/venvs.run_env with the shared venv."""
    return functools.partial(project_run_env, venv_bin)


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for a private podman configuration (skips without podman)."""
    require_podman()
    return podman_env(tmp_path_factory.mktemp("podman"))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep together what should not run side by side (`--dist loadgroup`, as dev.py runs the
    suite): the resilience tests, whose timing another's load would disturb, on one worker;
    each container module on one worker, so that its module fixtures build their images once."""
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in a tier folder, one of {TIERS}")
        item.add_marker(tier)
        if tier == "resilience":
            item.add_marker(pytest.mark.xdist_group("resilience"))
        elif tier == "container":
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Each run records its own figures: the last run's go first (once, not in every worker)."""
    if not hasattr(session.config, "workerinput"):
        figures.clear()


# Rows that tests record under these names, printed as one table each.
TABLES = {
    "fleet_row": "fleet update 1.0.0 -> 2.0.0",  # tests/update/test_fleet.py
    "as_printed_row": "every command as printed",  # tests/as_printed/
    "python_row": "the generated project on each Python",  # tests/container/test_pythons.py
    "time_travel_row": "time travel",  # tests/time_travel/
}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The tables that tests recorded rows for, when they ran."""
    reports = [r for o in ("passed", "failed") for r in terminalreporter.stats.get(o, [])]
    for name, title in TABLES.items():
        rows = recorded_rows(reports, name)
        if rows:
            terminalreporter.section(title)
            terminalreporter.write_line(markdown_table(rows))
