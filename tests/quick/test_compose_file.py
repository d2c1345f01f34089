"""The generated compose files for every variant: valid against the Compose spec, read by
podman-compose, and wired right (tests/container/test_compose.py runs them)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from harness.images import podman_compose
from harness.tools import run_tool

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "sqlite": {"database": "sqlite"},
    "postgresql": {"database": "postgresql", "domain": "shop.example.org"},
    "no-nginx": {"with_nginx": False, "database": "postgresql"},
    "granian": {"server": "granian"},
}
# The server's default time for requests in flight on SIGTERM: its file, and the setting.
GRACEFUL = {
    "gunicorn": ("gunicorn.conf.py", r'GUNICORN_GRACEFUL_TIMEOUT", (\d+)\)'),
    "granian": ("run_granian.py", r'"GRANIAN_WORKERS_KILL_TIMEOUT": "(\d+)"'),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_compose_matches_the_spec_and_is_wired(rendered: Any, name: str) -> None:
    answers = VARIANTS[name]
    project = rendered(**answers)
    database = answers.get("database", "none")
    server = answers.get("server", "gunicorn")
    with_nginx = answers.get("with_nginx", True)
    # The HTTPS override comes with nginx (tests/live/test_watch.py serves it).
    files = ["compose.yaml", *(["compose.https.yaml"] if with_nginx else [])]
    schema = ["--builtin-schema", "vendor.compose-spec", *files]
    result = run_tool("check-jsonschema", *schema, cwd=project, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # As compose sees it: YAML anchors and merge keys resolved.
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    services = compose["services"]
    web = services["web"]

    optional = {"nginx": with_nginx, "migrate": database != "none", "db": database == "postgresql"}
    assert set(services) == {"web", "web-dev"} | {name for name, on in optional.items() if on}

    # The app: settings from .env, production mode whatever .env says, a
    # health check, read-only, and time to finish requests when stopped.
    assert web["env_file"] == ".env"
    assert web["environment"]["FLASK_DEBUG"] == "0"
    assert web["environment"]["FLASK_PROXY_HOPS"] == ("1" if with_nginx else "0")
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert web["read_only"] is True
    grace = re.fullmatch(r"(\d+)s", web["stop_grace_period"])
    assert grace, f"write durations in seconds, like 40s: {web['stop_grace_period']}"
    server_file, setting = GRACEFUL[server]
    assert int(grace[1]) > int(re.search(setting, (project / server_file).read_text())[1])
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
    if server == "granian":
        assert dev["command"][:2] == ["flask", "run"], "the development server reloads"
    else:
        assert dev["environment"]["GUNICORN_RELOAD"] == "1"
    assert dev["environment"]["FLASK_DEBUG"] == "1"
    assert dev["image"] != web["image"], "the dev image (its own UID) must not replace web's"


def test_podman_compose_reads_every_variant(podman: dict[str, str], rendered: Any) -> None:
    env = {**podman, "POSTGRES_PASSWORD": "p" * 32}  # compose.yaml requires it from .env
    for answers in VARIANTS.values():
        result = podman_compose(env, rendered(**answers), "config", timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert yaml.safe_load(result.stdout)["services"]["web"]["image"]
