"""The generated project on the Pythons it offers beyond Debian 12's: its CI and its image.

The other container tests run on Debian 12's Python (3.11). Here a root of
Debian's testing suite (python3.14 and python3.15, built once and cached, see
tests/helpers/containers.py) stands in for python:X-slim-trixie: the project's
own CI steps run in it, and the Dockerfile builds from its own FROM line and
serves /healthz. The default answer must be the newest Python on which all of
this passes, for every locked dependency: `test_the_default_is_the_newest_python_that_passes`.

The rows are printed as one table at the end of the run (tests/conftest.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.containers import (
    TESTING_PYTHONS,
    ensure_python_image,
    podman_env,
    run_podman,
    wait_for_http,
)
from tests.helpers.images import (
    Run,
    build_project_image_as_written,
    container,
    require_podman,
    run_project_ci,
)
from tests.helpers.render import render
from tests.helpers.servers import free_port
from tests.test_validators import validator

REPO = Path(__file__).resolve().parent.parent
COPIER = yaml.safe_load((REPO / "copier.yml").read_text())
DEFAULT_PYTHON: str = COPIER["python_version"]["default"]
OFFERED_PYTHONS: list[str] = COPIER["python_version"]["choices"]
UV_VERSION: str = COPIER["uv_version"]["default"]

# Two variants between them hold every package of every lock (checked by
# test_the_variants_hold_every_locked_package): the default, and the one with
# the most compiled wheels (psycopg's binary, granian's Rust core).
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "postgresql+granian": {"database": "postgresql", "server": "granian"},
}
# (python, variant): what runs, literally.
RUNS = [
    ("3.14", "default"),
    ("3.14", "postgresql+granian"),
    ("3.15", "default"),
    ("3.15", "postgresql+granian"),
]
RUN_ENV: dict[str, dict[str, str]] = {
    "postgresql+granian": {"DATABASE_URL": "postgresql://app:x@127.0.0.1:1/app"},
}
SECRET = "s" * 64
PACKAGE = re.compile(r'^\[\[package\]\]\nname = "([^"]+)"', flags=re.MULTILINE)
PYTHON_VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"


def answers(python: str, variant: str) -> dict[str, str]:
    return {"python_version": python, **VARIANTS[variant]}


def lock_packages(answers: dict[str, str]) -> set[str]:
    lock = REPO / "locks" / f"{answers.get('database', 'none')}-{answers.get('server', 'gunicorn')}"
    return set(PACKAGE.findall((lock / "uv.lock").read_text()))


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require_podman()
    return podman_env(tmp_path_factory.mktemp("podman"))


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


def version(python: str) -> tuple[int, ...]:
    return tuple(int(part) for part in python.split("."))


@pytest.mark.quick
def test_the_default_and_every_newer_python_have_rows() -> None:
    newest = [v for v in OFFERED_PYTHONS if version(v) >= version(DEFAULT_PYTHON)]
    assert set(newest) <= set(TESTING_PYTHONS) == {python for python, _ in RUNS}
    assert {(p, v) for p in TESTING_PYTHONS for v in VARIANTS} == set(RUNS)


@pytest.mark.quick
def test_the_variants_hold_every_locked_package() -> None:
    every = set().union(*(lock_packages(_lock_answers(lock)) for lock in _locks()))
    held = set().union(*(lock_packages(a) for a in VARIANTS.values()))
    assert every - held == set()


def _locks() -> list[Path]:
    return sorted(p for p in (REPO / "locks").iterdir() if (p / "uv.lock").is_file())


def _lock_answers(lock: Path) -> dict[str, str]:
    database, server = lock.name.split("-")
    return {"database": database, "server": server}


@pytest.mark.container
@pytest.mark.parametrize(("python", "variant"), RUNS, ids=[f"py{p}-{v}" for p, v in RUNS])
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


@pytest.mark.container
@pytest.mark.parametrize(("python", "variant"), RUNS, ids=[f"py{p}-{v}" for p, v in RUNS])
def test_image_builds_from_its_from_line_and_serves(
    podman: dict[str, str],
    copie_session: Any,
    record_property: Any,
    python: str,
    variant: str,
) -> None:
    project = render(copie_session, **answers(python, variant))
    assert f"ARG PYTHON_IMAGE=python:{python}-slim-trixie" in (project / "Dockerfile").read_text()
    build = build_project_image_as_written(podman, project, python)
    try:
        # The official name may have been retagged by another user of the storage.
        probe = run_podman(podman, "run", "--rm", build.image, "python", "-c", PYTHON_VERSION)
        assert probe.stdout.strip() == python

        port = free_port()
        settings = {"FLASK_SECRET_KEY": SECRET, **RUN_ENV.get(variant, {})}
        options = [f"--env={key}={value}" for key, value in settings.items()]
        with container(podman, build.image, "-p", f"127.0.0.1:{port}:8000", *options) as name:
            status, body = wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
            run_podman(podman, "healthcheck", "run", name, timeout=60)
        row = {"python": python, "variant": variant, "what": "image"}
        row |= {"result": f"/healthz {status}", "seconds": f"{build.seconds:.0f}"}
        record_property("python_row", json.dumps(row))
        assert status == 200, body
    finally:
        run_podman(podman, "rmi", "--force", build.tag, check=False)


@pytest.mark.container
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


@pytest.mark.container
@pytest.mark.parametrize("python", TESTING_PYTHONS)
def test_package_name_refuses_this_pythons_stdlib(podman: dict[str, str], python: str) -> None:
    """The validator's list of standard modules holds each newer Python's (3.15
    brought `profiling`); tests/test_validators.py checks the running one's."""
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
