"""The generated Dockerfile, built (once per variant and module) and run with podman on a
loopback port, after the toolchain's own smoke test: when that fails, the machine
(podman, the network, the CA bundle) is the problem, not the template; then its
compose.yaml under podman-compose and its Kubernetes Deployment under `podman kube
play`. Figures are printed as FIGURE lines (`pytest -rP`). (tests/quick/ lints the
Dockerfile and checks the compose file and the manifests.)
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values

from harness.http import free_port, http_get
from harness.images import (
    Build,
    add_slow_route,
    build_project_image,
    container,
    container_state,
    logs,
    podman_compose,
    shell,
    slow_request_in_flight,
    wait_for_exit,
    wait_for_http,
)
from harness.podman import PodmanError, ca_bundle_volume, run_podman
from harness.provisioning import BASE_PYTHON, ensure_base_image, ensure_nginx_image
from harness.readme import copy_as_user, readme_blocks, run_lines, user_bin, user_environment
from harness.render import k8s_manifests, render
from harness.venvs import SECRET
from harness.waiting import eventually

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
        with container(podman, tag) as (name, port):
            index = wait_for_http(port, "/index.html")
            assert (index.status, index.body.strip()) == (200, b"1.17.0")  # pip reached PyPI
            # --format docker kept the HEALTHCHECK (none to run otherwise)
            run_podman(podman, "healthcheck", "run", name, timeout=60)
            # Like python:3.x: `python` and `pip` on PATH, no PEP 668 marker; the
            # configured ulimits; the non-root user.
            script = "python --version && pip --version >/dev/null && id -un && ulimit -n"
            probe = shell(podman, name, f"{script} && ! ls /usr/lib/python3*/EXTERNALLY-MANAGED")
            assert "3.11" in probe and {"app", "20000"} <= set(probe.split()), probe
            assert "GET /index.html" in logs(podman, name)
    finally:  # the storage is a cache: keep the base layers, drop the tag
        run_podman(podman, "rmi", "--force", tag, check=False)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_image_serves_healthz_as_non_root_and_stops_without_its_secret(
    podman: dict[str, str], image_of: Callable[[str], Build], variant: str
) -> None:
    build = image_of(variant)
    # The HEALTHCHECK only --format docker keeps.
    fields = ("image", "inspect", "--format", "{{.User}} {{json .HealthCheck.Test}}")
    user, healthcheck = run_podman(podman, *fields, build.image).stdout.split(" ", 1)
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


def test_compose_stack_serves_through_nginx(
    podman: dict[str, str], image_of: Callable[[str], Build], tmp_path: Path
) -> None:
    project = image_of("default").context
    # No registry: the image built and a stand-in for nginx:*-alpine, through an override
    # file (like a user's compose.override.yaml); compose.yaml is unchanged.
    images = {"web": image_of("default").image, "nginx": ensure_nginx_image(podman)}
    services = {service: {"image": image} for service, image in images.items()}
    (tmp_path / "compose.test.yaml").write_text(yaml.safe_dump({"services": services}))
    port, name = free_port(), f"cftest{uuid.uuid4().hex[:8]}"
    env = {**podman, "HTTP_PORT": f"127.0.0.1:{port}"}
    files = ["-p", name, "-f", "compose.yaml", "-f", str(tmp_path / "compose.test.yaml")]
    try:
        up = podman_compose(env, project, *files, "up", "-d", "--no-build")
        assert up.returncode == 0, up.stdout + up.stderr
        reply = eventually(
            lambda: (r := http_get(port, "/healthz", {"Host": "example.com"})).status == 200 and r,
            60,
            what="/healthz through nginx",
            interval=0.3,
        )
        assert reply.body == b'{"status":"ok"}\n'
        assert reply.headers["server"] == "nginx", "the answer came through nginx"
        # The app's own security headers (security.py) pass through nginx.
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
        # Static files come from nginx (the mounted folder), a versioned URL for a year.
        css = http_get(port, "/static/style.css?v=0123456789ab", headers={"Host": "example.com"})
        assert css.status == 200 and "max-age=31536000" in css.headers.get("cache-control", "")
        assert css.headers["x-frame-options"] == "DENY"
        # A newcomer's first look, http://localhost:PORT/ (a browser sends the port in
        # Host), shows the page through nginx; other names are dropped.
        page = http_get(port, "/", headers={"Host": f"localhost:{port}"})
        assert page.status == 200 and b"<h1>Demo Shop</h1>" in page.body
        assert page.headers["server"] == "nginx"
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            http_get(port, "/", headers={"Host": "unknown.test"})
        # Both health checks pass (run by hand: no systemd timers here); a graceful
        # stop, both exit 0 (gunicorn on SIGTERM, nginx on SIGQUIT).
        for service in images:
            run_podman(env, "healthcheck", "run", f"{name}_{service}_1", timeout=60)
        stop = podman_compose(env, project, *files, "stop")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        for service in images:
            assert container_state(env, f"{name}_{service}_1")[1] == 0, service
    finally:
        podman_compose(env, project, *files, "down", "-t", "5", timeout=120)
        label = f"label=io.podman.compose.project={name}"
        leftovers = run_podman(env, "ps", "-aq", "--filter", label, check=False).stdout.split()
        if leftovers:
            run_podman(env, "rm", "--force", "--time", "0", *leftovers, check=False)
        run_podman(env, "network", "rm", "--force", f"{name}_default", check=False)


def test_compose_in_a_fresh_clone_gets_its_env_from_the_readme(tmp_path: Path) -> None:
    """A fresh clone has no .env (git-ignored): the README's lines make one that compose reads."""
    project = tmp_path / "shop"
    copy_as_user(project, database="postgresql")
    (project / ".env").unlink()
    env = user_environment(tmp_path / "home", user_bin(tmp_path / "bin", ["grep"]))
    readme = (project / "README.md").read_text()
    block = next(b for b in readme_blocks(readme) if ".env.example" in b.text)
    run_lines(block.lines(), project, env, "[postgresql] Containers")
    settings = dotenv_values(project / ".env")
    assert len(settings["FLASK_SECRET_KEY"] or "") == 64
    assert (project / ".env").read_text().count("FLASK_SECRET_KEY=") == 1
    assert (password := settings["POSTGRES_PASSWORD"])
    # Only what the user's shell has: compose must find every setting in .env.
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home")}
    compose = podman_compose(clean, project, "config", timeout=60)
    assert compose.returncode == 0, compose.stdout + compose.stderr
    web = yaml.safe_load(compose.stdout)["services"]["web"]
    assert password in web["environment"]["DATABASE_URL"]


def test_kube_play_runs_the_deployment(
    podman: dict[str, str], copie_session: Any, tmp_path: Path
) -> None:
    """Exercised: the pod template (image, user, read-only root file system, emptyDir
    /tmp, ConfigMap and Secret as environment, WEB_CONCURRENCY from the CPU limit, CPU
    and memory limits) and a graceful `podman kube down`. Not exercised by podman 4.3:
    the probes (curl health checks, which the image lacks and no systemd timer runs),
    preStop hooks and terminationGracePeriodSeconds (it stops with SIGTERM and 10 s),
    the Service, the HPA, the PodDisruptionBudget and the migration Job."""
    project = render(copie_session, with_k8s=True, python_version=BASE_PYTHON)
    add_slow_route(project)
    build = build_project_image(podman, project, "k8s")
    name, port = f"cft-{uuid.uuid4().hex[:8]}", free_port()
    tag, web_container = f"localhost/copier-flask-test:{name}", f"{name}-pod-0-web"
    # The ConfigMap, Deployment and Service for one podman host: a unique name, one
    # replica (a second would want the same hostPort), the local image, a hostPort on
    # 127.0.0.1 (podman has no Service network) and the Secret's name.
    docs = k8s_manifests(project)
    deployment = docs["Deployment"]
    deployment["metadata"]["name"] = name
    deployment["spec"]["replicas"] = 1
    (web,) = deployment["spec"]["template"]["spec"]["containers"]
    web["image"] = tag
    web["ports"][0].update(hostPort=port, hostIP="127.0.0.1")
    for source in web["envFrom"]:
        if "secretRef" in source:
            source["secretRef"]["name"] = f"{name}-secrets"
    played = [docs["ConfigMap"], deployment, docs["Service"]]
    kube_file = tmp_path / "kube.yaml"
    kube_file.write_text(
        yaml.safe_dump_all([{k: v for k, v in doc.items() if k != "_file"} for doc in played])
    )
    # podman 4.3 reads a secretRef from a podman secret holding the Secret's `data` as
    # JSON (its own handling of `kind: Secret` does not round-trip).
    secret_data = {"FLASK_SECRET_KEY": base64.b64encode(SECRET.encode()).decode()}
    pod_log = tmp_path / "pod.log"  # ours: `kube down` removes the container
    run_podman(podman, "tag", build.image, tag)
    try:
        run_podman(
            podman, "secret", "create", f"{name}-secrets", "-", input=json.dumps(secret_data)
        )
        run_podman(
            podman, "kube", "play", "--log-opt", f"path={pod_log}", str(kube_file), timeout=120
        )
        health = wait_for_http(port)
        assert (health.status, health.body) == (200, b'{"status":"ok"}\n')

        # What the manifest asks for holds at run time.
        script = "id -u; echo $WEB_CONCURRENCY; touch /tmp/ok && echo tmp-writable; touch /app/x"
        uid, workers, tmp, app = shell(podman, web_container, f"{script} 2>&1 || true").splitlines()
        assert uid == APP_UID, "non-root, the image's UID"
        assert workers == "2", "WEB_CONCURRENCY from the CPU limit (2)"
        assert tmp == "tmp-writable"
        assert "Read-only file system" in app
        limits = "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}"
        inspect = run_podman(podman, "inspect", web_container, "--format", limits).stdout.split()
        assert inspect == ["true", str(256 * 2**20), str(2 * 10**9)]
        assert pod_log.read_text().count("Booting worker") == 2

        # Stopped with a request in flight: gunicorn gets SIGTERM, finishes it and exits
        # 0. podman before 5.1 SIGKILLs a pod's containers on `kube down` (podman issues
        # #19135, #21767; fixed by PR #22398): there the pod is stopped first, the
        # documented workaround. The client may not see the answer (podman tears the
        # network down while gunicorn finishes; Kubernetes keeps it): the log is the evidence.
        with slow_request_in_flight(port, wait=0):
            started = time.monotonic()
            version = run_podman(podman, "version", "--format", "{{.Client.Version}}").stdout
            if tuple(int(part) for part in version.strip().split(".")[:2]) < (5, 1):
                run_podman(podman, "pod", "stop", "--time", "45", f"{name}-pod-0", timeout=120)
                assert container_state(podman, web_container)[1] == 0
            run_podman(podman, "kube", "down", str(kube_file), timeout=120)
            took = time.monotonic() - started
        output = pod_log.read_text()
        assert "Handling signal: term" in output
        # The manifests log JSON (LOG_FORMAT=json): the access line's quotes are escaped.
        assert re.search(r'GET /slow\?seconds=3 HTTP/1.1\\?" 200', output), "request finished"
        assert "Shutting down: Master" in output and "Reason:" not in output
        print(f"FIGURE podman pod stop + kube down, a 3 s request in flight: {took:.1f} s")
    finally:
        run_podman(podman, "kube", "down", str(kube_file), check=False, timeout=120)
        run_podman(podman, "pod", "rm", "--force", f"{name}-pod-0", check=False, timeout=120)
        run_podman(podman, "secret", "rm", f"{name}-secrets", check=False)
        run_podman(podman, "untag", build.image, tag, check=False)
