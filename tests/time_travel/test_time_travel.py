"""Time travel: the generated project against the newest and the oldest versions it allows.

A project lives on after it is rendered: Dependabot moves its lock up, and a
resolver may pick the lowest versions its pyproject.toml allows. For each
variant below, the project's lock is remade in both directions and its CI
steps run on the default Python (the Debian-testing stand-in of
tests/test_pythons.py): `uv sync --locked`, mypy, ruff, pytest with coverage.

The result depends on what PyPI publishes today, so it never blocks a landing:
these tests carry their own marker, which the default run leaves out
(pyproject.toml's addopts). Run them, and read the table printed at the end:

    python3 dev.py test -m time_travel -n 2
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.containers import ensure_python_image, podman_env
from tests.helpers.images import require_podman, run_project_ci
from tests.helpers.render import render

pytestmark = pytest.mark.time_travel

REPO = Path(__file__).resolve().parent.parent
COPIER = yaml.safe_load((REPO / "copier.yml").read_text())
DEFAULT_PYTHON: str = COPIER["python_version"]["default"]
UV_VERSION: str = COPIER["uv_version"]["default"]

VARIANTS: dict[str, dict[str, str]] = {
    "defaults": {},
    "sqlite": {"database": "sqlite"},
    "postgresql": {"database": "postgresql"},
    "granian": {"server": "granian"},
}
# How the lock is remade: the newest versions allowed, then the lowest
# versions the direct dependencies' bounds allow (their dependencies newest).
# The resolution is a setting for every uv command after it, or `uv sync
# --locked` would find the lock out of date with its own (highest) resolution.
RESOLUTIONS: dict[str, str] = {
    "upgrade": "uv lock --upgrade",
    "lowest-direct": "export UV_RESOLUTION=lowest-direct && uv lock",
}
# What `uv lock` says for each package it moved.
MOVED = re.compile(r"^(?:Updated|Added|Removed) ", flags=re.MULTILINE)


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require_podman()
    return podman_env(tmp_path_factory.mktemp("podman"))


@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_ci_steps_pass_on_a_remade_lock(
    podman: dict[str, str],
    copie_session: Any,
    record_property: Any,
    variant: str,
    resolution: str,
) -> None:
    project = render(copie_session, python_version=DEFAULT_PYTHON, **VARIANTS[variant])
    image = ensure_python_image(podman, DEFAULT_PYTHON)
    run = run_project_ci(podman, image, project, UV_VERSION, RESOLUTIONS[resolution])
    result = "passed" if run.returncode == 0 else f"failed: {run.why()}"
    row = {"variant": variant, "resolution": resolution, "result": result}
    row |= {"packages moved": str(len(MOVED.findall(run.output))), "seconds": f"{run.seconds:.0f}"}
    record_property("time_travel_row", json.dumps(row))
    assert run.returncode == 0, run.output[-6000:]
