"""The generated compose.yaml, run for real with podman-compose on a loopback port: the
project's image and nginx with the generated container config; and a fresh clone's
.env, made by the README's lines. (tests/quick/test_compose_file.py checks the file.)
"""

from __future__ import annotations

import http.client
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values

from harness.http import free_port, http_get
from harness.images import build_project_image, container_state, podman_compose
from harness.podman import run_podman
from harness.provisioning import BASE_PYTHON, ensure_nginx_image
from harness.readme import copy_as_user, readme_blocks, run_lines, user_bin, user_environment
from harness.render import render
from harness.waiting import eventually


def test_compose_stack_serves_through_nginx(podman: dict[str, str], copie_session: Any) -> None:
    project = render(copie_session, python_version=BASE_PYTHON)
    # No registry: the image just built and a stand-in for nginx:*-alpine, through an
    # override file (like a user's compose.override.yaml); compose.yaml is unchanged.
    images = {"web": build_project_image(podman, project, "default").image}
    images["nginx"] = ensure_nginx_image(podman)
    services = {service: {"image": image} for service, image in images.items()}
    (project / "compose.test.yaml").write_text(yaml.safe_dump({"services": services}))
    port, name = free_port(), f"cftest{uuid.uuid4().hex[:8]}"
    env = {**podman, "HTTP_PORT": f"127.0.0.1:{port}"}
    files = ["-p", name, "-f", "compose.yaml", "-f", "compose.test.yaml"]
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
        leftovers = run_podman(
            env, "ps", "-aq", "--filter", f"label=io.podman.compose.project={name}", check=False
        ).stdout.split()
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
