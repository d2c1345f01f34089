"""The generated project on the Pythons it offers beyond Debian 12's: its CI and its image.

The other container tests run on Debian 12's Python (3.11). Here a root of
Debian's testing suite (python3.14 and python3.15, built once and cached, see
harness/provisioning.py) stands in for python:X-slim-trixie: the project's
own CI steps run in it, and the Dockerfile builds from its own FROM line and
serves /healthz. The default answer must be the newest Python on which all of
this passes, for every locked dependency: `test_the_default_is_the_newest_python_that_passes`.
The static checks of the matrix are tests/quick/test_pythons_static.py's.

The rows are printed as one table at the end of the run (tests/conftest.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from harness.http import free_port
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

RUN_IDS = [f"py{python}-{variant}" for python, variant in PYTHON_RUNS]
RUN_ENV: dict[str, dict[str, str]] = {
    "postgresql+granian": {"DATABASE_URL": "postgresql://app:x@127.0.0.1:1/app"},
}
PYTHON_VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"


def answers(python: str, variant: str) -> dict[str, str]:
    return {"python_version": python, **VARIANTS[variant]}


@pytest.fixture(scope="module")
def ci_of(podman: dict[str, str], copie_session: Any) -> Callable[[str, str], Run]:
    """(python, variant) -> the project's CI steps run on that Python, once per module."""
    runs: dict[tuple[str, str], Run] = {}

    def get(python: str, variant: str) -> Run:
        if (python, variant) not in runs:
            project = render(copie_session, **answers(python, variant))
            image = ensure_python_image(podman, python)
            runs[python, variant] = run_project_ci(podman, image, project, UV_VERSION)
        return runs[python, variant]

    return get


@pytest.mark.parametrize(("python", "variant"), PYTHON_RUNS, ids=RUN_IDS)
def test_project_ci_passes(
    ci_of: Callable[[str, str], Run], record_property: Any, python: str, variant: str
) -> None:
    """`uv sync --locked`, mypy, ruff and the suite with its coverage floor, on `python`."""
    run = ci_of(python, variant)
    result = "passed" if run.returncode == 0 else f"failed: {run.why()}"
    row = {"python": python, "variant": variant, "what": "CI steps", "result": result}
    record_property("python_row", json.dumps(row | {"seconds": f"{run.seconds:.0f}"}))
    assert run.returncode == 0, run.output[-6000:]
    # uv used the image's Python, the one .python-version names.
    assert f"Using CPython {python}." in run.output, run.output[-3000:]


@pytest.mark.parametrize(("python", "variant"), PYTHON_RUNS, ids=RUN_IDS)
def test_image_builds_from_its_from_line_and_serves(
    podman: dict[str, str],
    copie_session: Any,
    record_property: Any,
    python: str,
    variant: str,
) -> None:
    project = render(copie_session, **answers(python, variant))
    # Both stages name the official image of that Python (the builder and the runtime).
    assert (project / "Dockerfile").read_text().count(f"FROM python:{python}-slim-trixie") == 2
    tag = f"python{python}-{variant.replace('+', '-')}-{uuid.uuid4().hex[:8]}"
    build = build_project_image(podman, project, tag)
    try:
        # The official name may have been retagged by another user of the storage.
        probe = run_podman(podman, "run", "--rm", build.image, "python", "-c", PYTHON_VERSION)
        assert probe.stdout.strip() == python

        settings = {"FLASK_SECRET_KEY": SECRET, **RUN_ENV.get(variant, {})}
        options = [f"--env={key}={value}" for key, value in settings.items()]
        port = free_port()
        with container(podman, build.image, "-p", f"127.0.0.1:{port}:8000", *options) as name:
            answer = wait_for_http(port, timeout=60)
            run_podman(podman, "healthcheck", "run", name, timeout=60)
        row = {"python": python, "variant": variant, "what": "image"}
        row |= {"result": f"/healthz {answer.status}", "seconds": f"{build.seconds:.0f}"}
        record_property("python_row", json.dumps(row))
        assert answer.status == 200, answer.text
    finally:
        run_podman(podman, "rmi", "--force", build.tag, check=False)


def test_the_default_is_the_newest_python_that_passes(
    ci_of: Callable[[str, str], Run],
) -> None:
    """Every variant passes on the default; each offered Python above it fails
    somewhere (else it should be the default)."""
    assert DEFAULT_PYTHON in TESTING_PYTHONS
    for variant in VARIANTS:
        run = ci_of(DEFAULT_PYTHON, variant)
        assert run.returncode == 0, f"{variant} fails on the default Python:\n{run.output[-3000:]}"
    for newer in (v for v in OFFERED_PYTHONS if version(v) > version(DEFAULT_PYTHON)):
        passing = [v for v in VARIANTS if ci_of(newer, v).returncode == 0]
        assert passing != list(VARIANTS), (
            f"every variant passes on Python {newer}: make it the default in copier.yml"
        )


@pytest.mark.parametrize("python", TESTING_PYTHONS)
def test_package_name_refuses_this_pythons_stdlib(podman: dict[str, str], python: str) -> None:
    """The validator's list of standard modules holds each newer Python's (3.15
    brought `profiling`); tests/quick/test_validators.py checks the running one's."""
    names = run_podman(
        podman,
        "run",
        "--rm",
        ensure_python_image(podman, python),
        "python",
        "-c",
        "import sys; print(*(n.lower() for n in sys.stdlib_module_names if n[0] != '_'))",
    ).stdout.split()
    check = validator("package_name")
    assert sorted(n for n in names if not check.render(package_name=n).strip()) == []
