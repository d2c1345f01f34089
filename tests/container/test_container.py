"""The generated Dockerfile, built (once per variant and module) and run with podman on a
loopback port, after the toolchain's own smoke test: when that fails, the machine
(podman, the network, the CA bundle) is the problem, not the template. Figures are
printed as FIGURE lines (`pytest -rP`). (tests/quick/test_dockerfile.py lints the file.)
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.http import http_get
from harness.images import (
    Build,
    add_slow_route,
    build_project_image,
    container,
    logs,
    shell,
    slow_request_in_flight,
    wait_for_exit,
    wait_for_http,
)
from harness.podman import PodmanError, ca_bundle_volume, run_podman
from harness.provisioning import BASE_PYTHON, ensure_base_image
from harness.render import render
from harness.venvs import SECRET

APP_UID = "10001"
REASON = "FLASK_SECRET_KEY must be set: production refuses to start without it"
PYTHON_VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"

# The image variants: the Dockerfile differs with the database (migrations, instance
# folder); with_nginx must not matter. Then what each needs to start in production mode.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "sqlite": {"database": "sqlite"},
    "postgresql": {"database": "postgresql"},
    "no-nginx": {"with_nginx": False},
    "granian": {"server": "granian"},
}
RUN_ENV = {"postgresql": {"DATABASE_URL": "postgresql://app:x@127.0.0.1:1/app"}}
# The final image's /app, /venv/bin, build tools, pip or caches, and the optional features'
# packages (metrics, error reports), as root: root may look everywhere, /root/.cache too.
FINAL_IMAGE_LISTING = (
    "ls -A /app; echo ---; ls /venv/bin; echo ---;"
    " command -v gcc cc make curl uv pip pip3 || true;"
    " ls -d /root/.cache 2>/dev/null || true;"
    " python -c 'import pip' 2>/dev/null && echo import-pip || true; echo ---;"
    " cd /venv/lib/python3*/site-packages && du -sk prometheus_client sentry_sdk urllib3 certifi"
)

# The smoke test's image, shaped like the template's: the base image from a build
# argument, a pip install that needs PyPI, a non-root user, exec-form CMD, HEALTHCHECK.
SMOKE_DOCKERFILE = """\
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN python -m pip install "six==1.17.0"
RUN useradd --create-home app
WORKDIR /srv
RUN python -c "import six; print(six.__version__)" > /srv/index.html
USER app
EXPOSE 8000
HEALTHCHECK --interval=5s CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/')"
CMD ["python", "-m", "http.server", "8000", "--bind", "0.0.0.0"]
"""


def healthcheck_and_user(env: dict[str, str], image: str) -> tuple[str, str]:
    """The image's user and its HEALTHCHECK (which only --format docker keeps)."""
    inspect = run_podman(
        env, "image", "inspect", "--format", "{{.User}}|{{json .HealthCheck}}", image
    )
    user, healthcheck = inspect.stdout.strip().split("|", 1)
    return user, " ".join(json.loads(healthcheck)["Test"])


@pytest.fixture(scope="module")
def image_of(podman: dict[str, str], copie_session: Any) -> Callable[[str], Build]:
    """variant name -> its Build, rendered and built once per module, on the base
    image's Python (the stand-in for python:X-slim)."""

    @functools.cache
    def build(variant: str) -> Build:
        project = render(copie_session, python_version=BASE_PYTHON, **VARIANTS[variant])
        return build_project_image(podman, project, variant)

    return build


def test_the_toolchain_builds_with_pypi_runs_and_publishes(
    podman: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(SMOKE_DOCKERFILE)
    tag = f"localhost/copier-flask-smoke:{uuid.uuid4().hex[:12]}"
    base = f"PYTHON_IMAGE={ensure_base_image(podman)}"
    # --no-cache: the pip step must reach PyPI on every run, not come from a layer.
    build = ("build", "--no-cache", "--format", "docker", "--build-arg", base)
    run_podman(podman, *build, "-v", ca_bundle_volume(), "-t", tag, str(tmp_path), timeout=900)
    try:
        assert "urlopen" in healthcheck_and_user(podman, tag)[1]
        with container(podman, tag) as (name, port):
            index = wait_for_http(port, "/index.html")
            assert (index.status, index.body.strip()) == (200, b"1.17.0")  # pip reached PyPI
            run_podman(podman, "healthcheck", "run", name, timeout=60)
            # Like python:3.x: `python` and `pip` on PATH, no PEP 668 marker; the
            # configured ulimits; the non-root user.
            probe = shell(
                podman,
                name,
                "python --version && pip --version >/dev/null && id -un && ulimit -n"
                " && ! ls /usr/lib/python3*/EXTERNALLY-MANAGED 2>/dev/null",
            )
            assert "3.11" in probe and {"app", "20000"} <= set(probe.split()), probe
            assert "GET /index.html" in logs(podman, name)
    finally:  # the storage is a cache: keep the base layers, drop the tag
        run_podman(podman, "rmi", "--force", tag, check=False)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_image_serves_healthz_as_non_root_and_stops_without_its_secret(
    podman: dict[str, str], image_of: Callable[[str], Build], variant: str
) -> None:
    build = image_of(variant)
    user, healthcheck = healthcheck_and_user(podman, build.image)
    assert user == f"{APP_UID}:{APP_UID}" and "urllib" in healthcheck, (user, healthcheck)
    settings = RUN_ENV.get(variant, {})
    with container(podman, build.image, **settings) as (name, _):  # no FLASK_SECRET_KEY
        code = wait_for_exit(podman, name, timeout=30)
        output = logs(podman, name)
    assert code != 0, output
    lines = [line for line in output.splitlines() if REASON in line]
    assert lines and all(line.startswith("FLASK_SECRET_KEY") for line in lines), output
    assert output.count("Booting worker") <= 4, "no restart loop"

    with container(podman, build.image, FLASK_SECRET_KEY=SECRET, **settings) as (name, port):
        health = wait_for_http(port)
        assert (health.status, json.loads(health.body)) == (200, {"status": "ok"})
        uid, version = shell(podman, name, f'id -u; python -c "{PYTHON_VERSION}"').split()
        assert uid == APP_UID, "the app must not run as root"
        # The stand-in base image runs the Python the project was rendered for.
        answers = yaml.safe_load((build.context / ".copier-answers.yml").read_text())
        assert version == answers["python_version"]
        # No systemd here: health checks only run when asked to.
        run_podman(podman, "healthcheck", "run", name, timeout=60)
        if variant == "sqlite":  # migrations run as the app's user into the instance folder
            run_podman(podman, "exec", name, "flask", "db", "upgrade", timeout=60)
            ready = http_get(port, "/readyz")
            assert ready.status == 200, ready.body
        if variant == "postgresql":  # no database at that address: alive, but not ready
            assert http_get(port, "/readyz").status == 503
        listing = shell(podman, name, FINAL_IMAGE_LISTING, "--user=0")
    app, venv_bin, tools, optional_du = (part.split() for part in listing.split("---"))
    assert tools == [], f"build tools, pip or caches in the final image: {tools}"
    if variant != "default":
        return
    assert sorted(app) == ["demo_shop", "gunicorn.conf.py", "gunicorn_hooks.py", "wsgi.py"]
    assert "gunicorn" in venv_bin and not {"pip", "uv"} & set(venv_bin)
    images = (ensure_base_image(podman), build.image)
    sizes = run_podman(podman, "image", "inspect", "--format", "{{.Size}}", *images).stdout
    base, final = (int(size) / 1e6 for size in sizes.split())
    print(f"FIGURE image size: base {base:.1f} MB, final {final:.1f} MB (+{final - base:.1f} MB)")
    assert final - base < 40, "the app and its dependencies should add tens of MB at most"
    # Installing from uv.lock instead of requirements.txt with pip (158.8 MB on this
    # base) must not grow the image by more than 5%, besides the optional features'
    # packages, which the pip image did not have.
    optional = sum(int(kb) for kb in optional_du[::2]) * 1024 / 1e6
    print(f"FIGURE optional features (metrics, error reports) in the image: {optional:.1f} MB")
    assert final - optional < 158.8 * 1.05, f"{final:.1f} MB, {optional:.1f} MB of them optional"


def test_rebuilds_reuse_the_dependency_layer_or_name_the_fix_and_sigterm_finishes_the_request(
    podman: dict[str, str], image_of: Callable[[str], Build], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(image_of("default").context, project)
    # A fresh comment on every run: the layer cache can never hold this change already.
    add_slow_route(project, extra=f"\n# touched by the container tests: {uuid.uuid4().hex}\n")
    touched = build_project_image(podman, project, "touched")
    # The uv sync step comes from the cache; the changed code is copied again.
    step = r"STEP \d+/\d+: (RUN uv sync|COPY demo_shop).*\n(--> Using cache)?"
    steps = re.findall(step, touched.output)
    assert steps == [("RUN uv sync", "--> Using cache"), ("COPY demo_shop", "")], touched.output
    print(f"FIGURE rebuild after a code change: {touched.seconds:.1f} s (dependencies cached)")

    with container(podman, touched.image, FLASK_SECRET_KEY=SECRET) as (name, port):
        wait_for_http(port)
        with slow_request_in_flight(port) as answer:
            started = time.monotonic()
            # The image's STOPSIGNAL (SIGTERM), then SIGKILL after -t seconds: above
            # gunicorn's graceful_timeout (30 s).
            run_podman(podman, "stop", "--time", "40", name, timeout=60)
            stopped = time.monotonic() - started
        code = wait_for_exit(podman, name, timeout=10)
        output = logs(podman, name)
    assert answer.get("reply") == (200, b'{"slept":3.0}\n'), answer
    assert code == 0, output
    assert "Handling signal: term" in output
    assert 1 < stopped < 30, "gunicorn waits for the request, and no longer than graceful_timeout"
    print(
        f"FIGURE podman stop with a 3 s request in flight: container exited 0 after {stopped:.1f} s"
    )

    # A dependency added to pyproject.toml without `uv lock`: the build fails at the
    # install step, saying which command fixes it.
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"flask>=3.1,<4",', '"flask>=3.1,<4", "rich",')
    )
    with pytest.raises(PodmanError) as failed:
        build_project_image(podman, project, "stale-lock")
    assert "needs to be updated, but `--locked` was provided" in str(failed.value), failed.value
    assert "run `uv lock`" in str(failed.value), failed.value
