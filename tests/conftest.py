"""Fixtures shared by the template's tests.

Expensive things are made once per session: the default render and the
virtualenv with its dependencies. Each pytest-xdist worker has its own session,
so the venv itself is shared through a cache on disk (see helpers/project_env).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.project_env import project_venv
from tests.helpers.render import render

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def default_project(copie_session: Any) -> Path:
    """The defaults (for this interpreter's Python), rendered once per session."""
    return render(copie_session)


@pytest.fixture(scope="session")
def venv_bin(default_project: Path) -> Path:
    """bin/ of the shared virtualenv with the rendered projects' dependencies."""
    return project_venv(default_project)


@pytest.fixture
def run_env(venv_bin: Path) -> Callable[..., dict[str, str]]:
    """An environment for running a rendered project: the shared venv first on
    PATH, no FLASK_* or gunicorn settings inherited from the caller."""

    def make(**extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("FLASK_", "GUNICORN_", "WEB_CONCURRENCY", "VIRTUAL_ENV"))
            and k not in {"PORT", "HOST"}
        }
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(extra)
        return env

    return make
