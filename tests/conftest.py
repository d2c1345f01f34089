"""Fixtures shared by the template's tests.

Expensive things are made once per session: the default render and the
virtualenv with its dependencies. Each pytest-xdist worker has its own session,
so the venv itself is shared through a cache on disk (see helpers/project_env).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import figures
from tests.helpers.project_env import project_environment, project_venv
from tests.helpers.render import render
from tests.helpers.tables import markdown_table, recorded_rows

REPO = Path(__file__).resolve().parent.parent


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
    """`run_env(**settings)`: an environment for running a rendered project
    with the shared venv (see helpers/project_env.project_environment)."""
    return functools.partial(project_environment, venv_bin)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Each run records its own figures: delete the last run's first (once,
    in the controlling process, not in every pytest-xdist worker)."""
    if not hasattr(session.config, "workerinput"):
        figures.clear()


# Rows that tests record under these names, printed as one table each.
TABLES = {
    "fleet_row": "fleet update 1.0.0 -> 2.0.0",
    "python_row": "the generated project on each Python (tests/test_pythons.py)",
    "time_travel_row": "time travel (tests/test_time_travel.py)",
}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The tables of the tests that ran (the fleet update, the Pythons, time travel)."""
    stats = terminalreporter.stats
    reports = [r for outcome in ("passed", "failed") for r in stats.get(outcome, [])]
    for name, title in TABLES.items():
        rows = recorded_rows(reports, name)
        if rows:
            terminalreporter.section(title)
            terminalreporter.write_line(markdown_table(rows))
