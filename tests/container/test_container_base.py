"""The container toolchain itself works: base image, build with PyPI, run, publish.

This is the smoke test under every other container test: when it fails, the
machine (podman, network, CA bundle) is the problem, not the template.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.http import free_port
from harness.images import wait_for_http
from harness.podman import ca_bundle_volume, run_podman
from harness.provisioning import ensure_base_image

# A Dockerfile shaped like the template's: base image from a build arg, a
# pip install that needs PyPI, a non-root user, exec-form CMD, HEALTHCHECK
# (which only survives with --format docker).
DOCKERFILE = """\
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


@pytest.fixture
def image(podman: dict[str, str], tmp_path: Path) -> Iterator[str]:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    tag = f"localhost/copier-flask-smoke:{uuid.uuid4().hex[:12]}"
    run_podman(
        podman,
        "build",
        # The pip step must reach PyPI on every run, not come from a cached layer.
        "--no-cache",
        "--format",
        "docker",
        "--build-arg",
        f"PYTHON_IMAGE={ensure_base_image(podman)}",
        "-v",
        ca_bundle_volume(),
        "-t",
        tag,
        str(context),
        timeout=900,
    )
    yield tag
    # The shared storage is a cache: keep the base layers, drop our tag.
    run_podman(podman, "rmi", "--force", tag, check=False)


def test_build_run_and_publish(podman: dict[str, str], image: str) -> None:
    # --format docker kept the HEALTHCHECK (OCI format would drop it).
    inspect = run_podman(podman, "image", "inspect", "--format", "{{json .HealthCheck}}", image)
    assert "urlopen" in inspect.stdout

    port = free_port()
    name = f"copier-flask-smoke-{uuid.uuid4().hex[:12]}"
    run_podman(podman, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", image)
    try:
        index = wait_for_http(port, "/index.html")
        assert index.status == 200
        assert index.body.strip() == b"1.17.0"  # pip reached PyPI during the build

        # No systemd timers here: health checks only run when asked to.
        run_podman(podman, "healthcheck", "run", name, timeout=60)

        # The image behaves like python:3.x: `python` and `pip` on PATH, no
        # PEP 668 marker, configured ulimits, runs as the non-root user.
        probe = run_podman(
            podman,
            "exec",
            name,
            "sh",
            "-c",
            "python --version && pip --version >/dev/null && id -un && ulimit -n"
            " && ! ls /usr/lib/python3*/EXTERNALLY-MANAGED 2>/dev/null",
        )
        lines = probe.stdout.split()
        assert "3.11" in probe.stdout
        assert "app" in lines
        assert "20000" in lines
    finally:
        logs = run_podman(podman, "logs", name, check=False)
        # http.server as PID 1 ignores SIGTERM: don't wait for it.
        run_podman(podman, "rm", "--force", "--time", "0", name, check=False, timeout=120)
    assert "GET /index.html" in logs.stdout + logs.stderr
