"""The generated project on the Pythons it offers beyond Debian 12's, in Debian testing's
stand-ins for python:X-slim-trixie: its CI steps, and its image from its own FROM line.
The default must be the newest Python on which all of it passes, for every locked
dependency. (tests/quick/test_pythons_static.py checks the matrix.)
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.images import Run, build_project_image, container, run_project_ci, wait_for_http
from harness.podman import run_podman
from harness.project_ci import (
    DEFAULT_PYTHON,
    OFFERED_PYTHONS,
    PYTHON_RUNS,
    UV_VERSION,
    VARIANTS,
    version,
)
from harness.provisioning import TESTING_PYTHONS, ensure_python_image
from harness.render import render, validator
from harness.venvs import SECRET

RUN_ENV = {"postgresql+granian": {"DATABASE_URL": "postgresql://app:x@127.0.0.1:1/app"}}
PYTHON_VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"


@pytest.fixture(scope="module")
def ci_of(podman: dict[str, str], copie_session: Any) -> Callable[[str, str], tuple[Path, Run]]:
    """(python, variant) -> the project and its CI steps run on that Python, once per module."""

    @functools.cache
    def run(python: str, variant: str) -> tuple[Path, Run]:
        project = render(copie_session, python_version=python, **VARIANTS[variant])
        image = ensure_python_image(podman, python)
        return project, run_project_ci(podman, image, project, UV_VERSION)

    return run


@pytest.mark.parametrize(
    ("python", "variant"), PYTHON_RUNS, ids=[f"py{p}-{v}" for p, v in PYTHON_RUNS]
)
def test_ci_passes_and_the_image_builds_from_its_from_line_and_serves(
    podman: dict[str, str],
    ci_of: Callable[[str, str], tuple[Path, Run]],
    record_property: Any,
    python: str,
    variant: str,
) -> None:
    """`uv sync --locked`, mypy, ruff and the suite with its coverage floor on `python`;
    then the image of both stages' FROM python:X-slim-trixie (the builder and the runtime)."""
    project, run = ci_of(python, variant)
    result = "passed" if run.returncode == 0 else f"failed: {run.why()}"
    row = {"python": python, "variant": variant, "what": "CI steps", "result": result}
    record_property("python_row", json.dumps(row | {"seconds": f"{run.seconds:.0f}"}))
    assert (project / "Dockerfile").read_text().count(f"FROM python:{python}-slim-trixie") == 2
    tag = f"python{python}-{variant.replace('+', '-')}-{uuid.uuid4().hex[:8]}"
    build = build_project_image(podman, project, tag)
    try:
        # The official name may have been retagged by another user of the storage.
        probe = run_podman(podman, "run", "--rm", build.image, "python", "-c", PYTHON_VERSION)
        assert probe.stdout.strip() == python
        settings = {"FLASK_SECRET_KEY": SECRET, **RUN_ENV.get(variant, {})}
        with container(podman, build.image, **settings) as (name, port):
            answer = wait_for_http(port, timeout=60)
            run_podman(podman, "healthcheck", "run", name, timeout=60)
        row |= {"what": "image", "result": f"/healthz {answer.status}"}
        record_property("python_row", json.dumps(row | {"seconds": f"{build.seconds:.0f}"}))
    finally:
        run_podman(podman, "rmi", "--force", build.tag, check=False)
    assert run.returncode == 0, run.output[-6000:]
    # uv used the image's Python, the one .python-version names.
    assert f"Using CPython {python}." in run.output, run.output[-3000:]
    assert answer.status == 200, answer.text


def test_the_default_is_the_newest_python_that_passes(
    ci_of: Callable[[str, str], tuple[Path, Run]],
) -> None:
    """Every variant passes on the default; each offered Python above it fails
    somewhere (else it should be the default)."""
    assert DEFAULT_PYTHON in TESTING_PYTHONS
    for variant in VARIANTS:
        run = ci_of(DEFAULT_PYTHON, variant)[1]
        assert run.returncode == 0, f"{variant} fails on the default Python:\n{run.output[-3000:]}"
    for newer in (v for v in OFFERED_PYTHONS if version(v) > version(DEFAULT_PYTHON)):
        passing = [v for v in VARIANTS if ci_of(newer, v)[1].returncode == 0]
        assert passing != list(VARIANTS), (
            f"every variant passes on Python {newer}: make it the default in copier.yml"
        )


@pytest.mark.parametrize("python", TESTING_PYTHONS)
def test_package_name_refuses_this_pythons_stdlib(podman: dict[str, str], python: str) -> None:
    """The validator's list of standard modules holds each newer Python's (3.15
    brought `profiling`); tests/quick/test_validators.py checks the running one's."""
    image = ensure_python_image(podman, python)
    script = "import sys; print(*(n.lower() for n in sys.stdlib_module_names if n[0] != '_'))"
    names = run_podman(podman, "run", "--rm", image, "python", "-c", script).stdout.split()
    check = validator("package_name")
    assert sorted(n for n in names if not check.render(package_name=n).strip()) == []
