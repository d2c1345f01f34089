"""The generated Dockerfile, built and run for real with podman.

Each image variant is built once per module (warm builds come from the layer
cache in seconds) and run on a loopback port. Figures (sizes, rebuild time,
stop time) are printed as FIGURE lines: see them with `pytest -rP` or `-s`.
(tests/quick/test_dockerfile.py reads and lints the file itself.)
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.http import free_port, http_get
from harness.images import (
    Build,
    add_slow_route,
    build_project_image,
    container,
    image_megabytes,
    logs,
    wait_for_exit,
    wait_for_http,
)
from harness.podman import PodmanError, run_podman
from harness.provisioning import BASE_PYTHON, ensure_base_image
from harness.render import render
from harness.venvs import SECRET

APP_UID = "10001"
REASON = "FLASK_SECRET_KEY must be set: production refuses to start without it"

# The image variants the container tests build: the Dockerfile differs with
# the database (migrations, instance folder); with_nginx must not matter.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "sqlite": {"database": "sqlite"},
    "postgresql": {"database": "postgresql"},
    "no-nginx": {"with_nginx": False},
    "granian": {"server": "granian"},
}
# What each variant needs in its environment to start in production mode.
RUN_ENV: dict[str, dict[str, str]] = {
    "postgresql": {"DATABASE_URL": "postgresql://app:x@127.0.0.1:1/app"},
}


PYTHON_VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"


def figure(text: str) -> None:
    print(f"FIGURE {text}")


@pytest.fixture(scope="module")
def image_of(podman: dict[str, str], copie_session: Any) -> Callable[[str], Build]:
    """variant name -> its Build, each rendered and built once per module (and
    only once podman is known to work)."""
    builds: dict[str, Build] = {}

    def get(variant: str) -> Build:
        if variant not in builds:
            # The base image's Python stands in for python:X-slim (no registry).
            project = render(copie_session, python_version=BASE_PYTHON, **VARIANTS[variant])
            builds[variant] = build_project_image(podman, project, variant)
        return builds[variant]

    return get


@pytest.fixture(scope="module")
def touched_build(
    podman: dict[str, str],
    image_of: Callable[[str], Build],
    tmp_path_factory: pytest.TempPathFactory,
) -> Build:
    """The default project after a change to its code only, rebuilt right
    after the default image."""
    project = tmp_path_factory.mktemp("touched") / "project"
    shutil.copytree(image_of("default").context, project)
    # A fresh comment on every run, so the layer cache can never hold this
    # change already (it would from an earlier run).
    add_slow_route(project, extra=f"\n# touched by the container tests: {uuid.uuid4().hex}\n")
    return build_project_image(podman, project, "touched")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_image_serves_healthz_as_non_root(
    podman: dict[str, str], image_of: Callable[[str], Build], variant: str
) -> None:
    build = image_of(variant)
    image = build.image
    # --format docker kept the HEALTHCHECK, and the user is numeric.
    inspect = run_podman(
        podman, "image", "inspect", "--format", "{{.User}}|{{json .HealthCheck}}", image
    ).stdout
    user, healthcheck = inspect.strip().split("|", 1)
    assert user == f"{APP_UID}:{APP_UID}"
    assert "urllib" in " ".join(json.loads(healthcheck)["Test"])

    port = free_port()
    env_args = [
        f"--env={k}={v}"
        for k, v in {"FLASK_SECRET_KEY": SECRET, **RUN_ENV.get(variant, {})}.items()
    ]
    with container(podman, image, "-p", f"127.0.0.1:{port}:8000", *env_args) as name:
        health = wait_for_http(port)
        assert (health.status, json.loads(health.body)) == (200, {"status": "ok"})
        uid = run_podman(podman, "exec", name, "id", "-u").stdout.strip()
        assert uid == APP_UID, "the app must not run as root"
        # The stand-in base image runs the Python the project was rendered for.
        version = run_podman(podman, "exec", name, "python", "-c", PYTHON_VERSION).stdout
        answers = yaml.safe_load((build.context / ".copier-answers.yml").read_text())
        assert version.strip() == answers["python_version"]
        # No systemd here: health checks only run when asked to.
        check = run_podman(podman, "healthcheck", "run", name, check=False, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr

        if variant == "sqlite":
            # Migrations run as the app's user into the instance folder.
            run_podman(podman, "exec", name, "flask", "db", "upgrade", timeout=60)
            ready = http_get(port, "/readyz")
            assert ready.status == 200, ready.body
        if variant == "postgresql":
            # No database at that address: alive, but not ready.
            assert http_get(port, "/readyz").status == 503


def test_final_image_holds_only_what_runs(
    podman: dict[str, str], image_of: Callable[[str], Build]
) -> None:
    build = image_of("default")
    with container(podman, build.image, f"--env=FLASK_SECRET_KEY={SECRET}") as name:
        listing = run_podman(
            podman,
            "exec",
            "--user=0",  # root may look everywhere, /root/.cache included
            name,
            "sh",
            "-c",
            "ls -A /app; echo ---; ls /venv/bin; echo ---;"
            " command -v gcc cc make curl uv pip pip3 || true;"
            " ls -d /root/.cache 2>/dev/null || true;"
            " python -c 'import pip' 2>/dev/null && echo import-pip || true",
            timeout=60,
        ).stdout.split("---")
        # The optional features the image carries (metrics, error reports).
        optional_kb = run_podman(
            podman,
            "exec",
            name,
            "sh",
            "-c",
            "cd /venv/lib/python3*/site-packages"
            " && du -sk prometheus_client sentry_sdk urllib3 certifi",
            timeout=60,
        ).stdout.split()[::2]
    app, venv_bin, tools = (part.split() for part in listing)
    assert sorted(app) == ["demo_shop", "gunicorn.conf.py", "gunicorn_hooks.py", "wsgi.py"]
    assert "gunicorn" in venv_bin and not {"pip", "uv"} & set(venv_bin)
    assert tools == [], f"build tools, pip or caches in the final image: {tools}"

    base = image_megabytes(podman, ensure_base_image(podman))
    final = image_megabytes(podman, build.image)
    figure(f"image size: base {base:.1f} MB, final {final:.1f} MB (+{final - base:.1f} MB)")
    assert final - base < 40, "the app and its dependencies should add tens of MB at most"
    # Installing from uv.lock instead of requirements.txt with pip (158.8 MB
    # on this base) must not grow the image by more than 5%, besides the
    # optional features' packages, which the pip image did not have.
    optional = sum(int(kb) for kb in optional_kb) * 1024 / 1e6
    figure(f"optional features (metrics, error reports) in the image: {optional:.1f} MB")
    assert final - optional < 158.8 * 1.05, f"{final:.1f} MB, {optional:.1f} MB of them optional"


@pytest.mark.parametrize("variant", ["default", "granian"])
def test_app_that_cannot_start_stops_the_container_with_its_reason(
    podman: dict[str, str], image_of: Callable[[str], Build], variant: str
) -> None:
    with container(podman, image_of(variant).image) as name:  # no FLASK_SECRET_KEY
        code = wait_for_exit(podman, name, timeout=30)
        output = logs(podman, name)
    assert code != 0, output
    lines = [line for line in output.splitlines() if REASON in line]
    assert lines and all(line.startswith("FLASK_SECRET_KEY") for line in lines), output
    assert output.count("Booting worker") <= 4, "no restart loop"


def test_code_change_reuses_the_dependency_layer(touched_build: Build) -> None:
    steps = touched_build.steps()
    sync = [cached for step, cached in steps if step.startswith("RUN uv sync")]
    code = [cached for step, cached in steps if step.startswith("COPY demo_shop")]
    assert sync == [True], "the uv sync step must come from the cache\n" + touched_build.output
    assert code == [False], "the changed code must be copied again\n" + touched_build.output
    figure(f"rebuild after a code change: {touched_build.seconds:.1f} s (dependencies cached)")


def test_sigterm_lets_the_request_in_flight_finish(
    podman: dict[str, str], touched_build: Build
) -> None:
    port = free_port()
    answer: dict[str, Any] = {}

    def slow_request() -> None:
        try:
            reply = http_get(port, "/slow?seconds=3", timeout=20)
            answer["reply"] = (reply.status, reply.body)
        except Exception as exc:  # reported by the assertion below
            answer["reply"] = exc

    with container(
        podman,
        touched_build.image,
        "-p",
        f"127.0.0.1:{port}:8000",
        f"--env=FLASK_SECRET_KEY={SECRET}",
    ) as name:
        wait_for_http(port)
        client = threading.Thread(target=slow_request)
        client.start()
        time.sleep(1)  # the request is in the worker now
        started = time.monotonic()
        # podman stop sends the image's STOPSIGNAL (SIGTERM) and waits up to
        # -t seconds before SIGKILL: above gunicorn's graceful_timeout (30 s).
        run_podman(podman, "stop", "--time", "40", name, timeout=60)
        stopped = time.monotonic() - started
        client.join(timeout=20)
        code = wait_for_exit(podman, name, timeout=10)
        output = logs(podman, name)

    assert answer.get("reply") == (200, b'{"slept":3.0}\n'), answer
    assert code == 0, output
    assert "Handling signal: term" in output
    assert 1 < stopped < 30, "gunicorn waits for the request, and no longer than graceful_timeout"
    figure(f"podman stop with a 3 s request in flight: container exited 0 after {stopped:.1f} s")


def test_stale_lock_stops_the_build_and_names_the_fix(
    podman: dict[str, str], image_of: Callable[[str], Build], tmp_path: Path
) -> None:
    """A dependency added to pyproject.toml without `uv lock`: the build fails
    at the install step, saying which command fixes it, and installs nothing."""
    project = tmp_path / "project"
    shutil.copytree(image_of("default").context, project)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"flask>=3.1,<4",', '"flask>=3.1,<4", "rich",')
    )
    with pytest.raises(PodmanError) as failed:
        build_project_image(podman, project, "stale-lock")
    output = str(failed.value)
    assert "needs to be updated, but `--locked` was provided" in output, output
    assert "run `uv lock`" in output, output
