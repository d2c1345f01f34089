"""Time travel: the generated project against the newest and the oldest versions it allows.

A project lives on after it is rendered: Dependabot moves its lock up, and a
resolver may pick the lowest versions its pyproject.toml allows. For each
variant below, the project's lock is remade in both directions and its CI
steps run on the default Python (the Debian-testing stand-in of
tests/container/test_pythons.py): `uv sync --locked`, mypy, ruff, pytest with
coverage. (The `lowest` job of the generated workflow, on the floors alone, is
tests/container/test_self_guard.py's.)

The result depends on what PyPI publishes today, so it never blocks a landing:
this folder is a tier of its own, which the default run leaves out
(pyproject.toml's addopts). Run them, and read the table printed at the end:

    python3 dev.py test -m time_travel -n 2
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from harness.images import run_project_ci
from harness.project_ci import DEFAULT_PYTHON, UV_VERSION
from harness.provisioning import ensure_python_image
from harness.render import render

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
