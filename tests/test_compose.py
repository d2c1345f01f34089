"""The generated compose.yaml: valid for every variant, wired right, and run live.

Quick tests validate it against the Compose specification's JSON schema
(check-jsonschema ships it, no network needed) and check the wiring the
schema cannot see. The container test runs the real stack with podman-compose
on a loopback port: the project's image (built as in test_container.py) and
nginx with the generated container config, /healthz through nginx.
"""

from __future__ import annotations

import http.client
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.containers import BASE_PYTHON, podman_env, run_podman
from tests.helpers.images import (
    build_project_image,
    container_state,
    ensure_nginx_image,
    require_podman,
)
from tests.helpers.render import render
from tests.helpers.servers import free_port, http_get
from tests.helpers.tools import check_jsonschema, require_tool

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "sqlite": {"database": "sqlite"},
    "postgresql": {"database": "postgresql", "domain": "shop.example.org"},
    "no-nginx": {"with_nginx": False, "database": "postgresql"},
    "granian": {"server": "granian"},
}
# The variables compose.yaml requires from .env (or the environment).
COMPOSE_VARS = {"POSTGRES_PASSWORD": "p" * 32}


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request: pytest.FixtureRequest, copie_session: Any) -> tuple[str, Path]:
    return request.param, render(copie_session, **VARIANTS[request.param])


def load(project: Path) -> dict[str, Any]:
    """compose.yaml as compose sees it (YAML anchors and merge keys resolved)."""
    return yaml.safe_load((project / "compose.yaml").read_text())


def graceful_timeout(project: Path) -> int:
    """The server's default time for requests in flight on SIGTERM, read from
    the generated gunicorn.conf.py or run_granian.py."""
    if (project / "run_granian.py").exists():
        text = (project / "run_granian.py").read_text()
        return int(re.search(r'"GRANIAN_WORKERS_KILL_TIMEOUT": "(\d+)"', text)[1])
    text = (project / "gunicorn.conf.py").read_text()
    return int(re.search(r'GUNICORN_GRACEFUL_TIMEOUT", (\d+)\)', text)[1])


def seconds(duration: str) -> int:
    value = re.fullmatch(r"(\d+)s", duration)
    assert value, f"write durations in seconds, like 40s: {duration}"
    return int(value[1])


@pytest.mark.quick
def test_compose_matches_the_compose_spec(variant: tuple[str, Path]) -> None:
    _, project = variant
    result = check_jsonschema(project, "vendor.compose-spec", "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.quick
def test_compose_wiring(variant: tuple[str, Path]) -> None:
    name, project = variant
    answers = VARIANTS[name]
    database = answers.get("database", "none")
    with_nginx = answers.get("with_nginx", True)
    compose = load(project)
    services = compose["services"]
    web = services["web"]

    expected = {"web", "web-dev"}
    expected |= {"nginx"} if with_nginx else set()
    expected |= {"migrate"} if database != "none" else set()
    expected |= {"db"} if database == "postgresql" else set()
    assert set(services) == expected

    # The app: settings from .env, production mode whatever .env says, a
    # health check, read-only, and time to finish requests when stopped.
    assert web["env_file"] == ".env"
    assert web["environment"]["FLASK_DEBUG"] == "0"
    assert web["environment"]["FLASK_PROXY_HOPS"] == ("1" if with_nginx else "0")
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert web["read_only"] is True
    assert seconds(web["stop_grace_period"]) > graceful_timeout(project)
    assert "command" not in web, "the image's CMD (gunicorn) runs the app"

    # Every published port defaults to loopback.
    for service in services.values():
        for port in service.get("ports", []):
            assert re.search(r"\$\{\w+:-127\.0\.0\.1:\d+\}:\d+$|^127\.0\.0\.1:", port), port

    if with_nginx:
        nginx = services["nginx"]
        assert nginx["depends_on"] == {"web": {"condition": "service_healthy"}}
        assert f"Host: {answers.get('domain', 'example.com')}" in nginx["healthcheck"]["test"]
        assert "ports" not in web, "only nginx is published"
        conf = (project / "deploy/nginx/nginx.conf").read_text()
        for volume in nginx["volumes"]:
            source, target, mode = volume.split(":")
            assert (project / source).exists(), f"{source} is not in the project"
            assert mode == "ro"
            # nginx.conf's header lists what goes where; its includes use it.
            assert target in conf, f"nginx.conf does not expect a mount at {target}"

    if database != "none":
        # Migrations: once, before the app, never in the web workers.
        migrate = services["migrate"]
        assert migrate["command"] == ["flask", "db", "upgrade"]
        assert migrate["healthcheck"] == {"disable": True}
        assert web["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    if database == "postgresql":
        db = services["db"]
        assert db["image"].startswith("postgres:")
        assert "pg_isready" in db["healthcheck"]["test"]
        assert db["volumes"] == ["db-data:/var/lib/postgresql"]
        assert "db-data" in compose["volumes"]
        assert "ports" not in db, "the database is not published"
        for service in ("web", "migrate"):
            assert services[service]["depends_on"]["db"] == {"condition": "service_healthy"}
        assert "@db:5432/" in web["environment"]["DATABASE_URL"]
        assert "${POSTGRES_PASSWORD:?" in (project / "compose.yaml").read_text()
    if database == "sqlite":
        assert web["volumes"] == ["instance:/app/instance"]
        assert services["migrate"]["volumes"] == web["volumes"]

    # Development: a profile, the source mounted, gunicorn reloading.
    dev = services["web-dev"]
    assert dev["profiles"] == ["dev"]
    assert ".:/app" in dev["volumes"]
    if answers.get("server") == "granian":
        assert dev["command"][:2] == ["flask", "run"], "the development server reloads"
    else:
        assert dev["environment"]["GUNICORN_RELOAD"] == "1"
    assert dev["environment"]["FLASK_DEBUG"] == "1"
    assert dev["image"] != web["image"], "the dev image (its own UID) must not replace web's"


# --------------------------------------------------------------- live, podman --


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require_podman()
    return podman_env(tmp_path_factory.mktemp("podman"))


def podman_compose(
    env: dict[str, str], project: Path, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("podman-compose"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.container
def test_podman_compose_reads_every_variant(
    podman: dict[str, str], variant: tuple[str, Path]
) -> None:
    _, project = variant
    result = podman_compose({**podman, **COMPOSE_VARS}, project, "config", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert yaml.safe_load(result.stdout)["services"]["web"]["image"]


@pytest.mark.container
def test_compose_stack_serves_through_nginx(
    podman: dict[str, str], copie_session: Any, tmp_path: Path
) -> None:
    project = render(copie_session, python_version=BASE_PYTHON)
    web_image = build_project_image(podman, project, "default").image
    # No registry here: the stack runs the image just built and a local
    # stand-in for nginx:*-alpine, through an override file (like a user's
    # compose.override.yaml); compose.yaml itself is used unchanged.
    (project / "compose.test.yaml").write_text(
        yaml.safe_dump(
            {
                "services": {
                    "web": {"image": web_image},
                    "nginx": {"image": ensure_nginx_image(podman)},
                }
            }
        )
    )
    port = free_port()
    name = f"cftest{uuid.uuid4().hex[:8]}"
    env = {**podman, "HTTP_PORT": f"127.0.0.1:{port}"}
    files = ["-p", name, "-f", "compose.yaml", "-f", "compose.test.yaml"]
    try:
        up = podman_compose(env, project, *files, "up", "-d", "--no-build")
        assert up.returncode == 0, up.stdout + up.stderr

        deadline = time.monotonic() + 60
        while True:
            try:
                reply = http_get(port, "/healthz", headers={"Host": "example.com"})
                if reply.status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "no answer through nginx within 60 s"
            time.sleep(0.3)
        assert reply.body == b'{"status":"ok"}\n'
        assert reply.headers["server"] == "nginx", "the answer came through nginx"
        # The app's own security headers (security.py) pass through nginx.
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
        # Static files come from nginx (the mounted static folder), with its headers.
        # A versioned URL, as the pages link it: kept for a year.
        css = http_get(port, "/static/style.css?v=0123456789ab", headers={"Host": "example.com"})
        assert css.status == 200 and "max-age=31536000" in css.headers.get("cache-control", "")
        assert css.headers["x-frame-options"] == "DENY"

        # A newcomer's first look, http://localhost:PORT/ (a browser sends the
        # port in Host), shows the page through nginx; other names are dropped.
        page = http_get(port, "/", headers={"Host": f"localhost:{port}"})
        assert page.status == 200 and b"<h1>Demo Shop</h1>" in page.body
        assert page.headers["server"] == "nginx"
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            http_get(port, "/", headers={"Host": "unknown.test"})

        # Both health checks pass (run by hand: no systemd timers here).
        for service in ("web", "nginx"):
            check = run_podman(
                env, "healthcheck", "run", f"{name}_{service}_1", check=False, timeout=60
            )
            assert check.returncode == 0, f"{service}: {check.stdout}{check.stderr}"

        # A graceful stop: both exit 0 (gunicorn on SIGTERM, nginx on SIGQUIT).
        stop = podman_compose(env, project, *files, "stop")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        for service in ("web", "nginx"):
            assert container_state(env, f"{name}_{service}_1")[1] == 0, service
    finally:
        podman_compose(env, project, *files, "down", "-t", "5", timeout=120)
        leftovers = run_podman(
            env, "ps", "-aq", "--filter", f"label=io.podman.compose.project={name}", check=False
        ).stdout.split()
        if leftovers:
            run_podman(env, "rm", "--force", "--time", "0", *leftovers, check=False)
        run_podman(env, "network", "rm", "--force", f"{name}_default", check=False)
