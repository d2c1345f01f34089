"""Starting one stack on 127.0.0.1 and stopping it again, every process by its PID.

The nginx stacks reuse the live tests' launcher (tests/helpers/nginx.py): it
copies the project, rewrites the generated site config's paths, socket and
port to run here, and runs a private nginx in the foreground. Its wrapper
nginx.conf starts one worker process; Debian's own nginx.conf and the
generated container nginx.conf both say `worker_processes auto`, so the
benchmark's copy says that too.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.project import Project
from bench.stacks import Stack
from tests.helpers.nginx import (
    MIME_TYPES,
    TEMP_DIRS,
    Site,
    localize,
    running_nginx,
    short_tempdir,
)
from tests.helpers.project_env import project_environment
from tests.helpers.servers import (
    LOOPBACK,
    Server,
    free_port,
    start,
    stop,
    unix_http_get,
    wait_http,
)

# A production secret for the run (the config refuses to start without one).
SECRET = "b" * 64
ENTRY = "bench_wsgi:app"
# What the app's JSON route returns, byte for byte (Flask's compact JSON).
RAW_JSON = '{"hello":"world"}\\n'


@dataclass
class Running:
    """A started stack: requests go to 127.0.0.1:`port` with Host: `host`."""

    port: int
    host: str | None
    servers: list[Server]  # their process trees are the stack (memory, CPU)

    @property
    def roots(self) -> list[int]:
        return [server.pid for server in self.servers]


def nginx_available() -> bool:
    """Whether nginx_binary() will find nginx (it skips a test when not: no use here)."""
    found = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    return found is not None and MIME_TYPES.exists()


# granian's command line with spawned workers, as the generated run_granian.py starts it.
SPAWNED_GRANIAN = (
    "import multiprocessing; multiprocessing.set_start_method('spawn'); "
    "from granian.cli import entrypoint; entrypoint()"
)


def server_command(stack: Stack, project: Project, port: int) -> list[str]:
    """The command line of the stack's app server, listening on `port` unless behind nginx."""
    bindir = project.bindir
    if stack.server == "gunicorn":
        return [str(bindir / "gunicorn"), "-c", "gunicorn.conf.py", ENTRY]
    if stack.server == "flask":
        return [
            str(bindir / "flask"),
            "--app",
            ENTRY.split(":")[0],
            "run",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
        ]
    if stack.server == "granian":
        # --respawn-failed-workers: without it one dead worker stops the whole
        # server (measured, DESIGN.md section 5).
        granian = [str(bindir / "granian")]
        if stack.spawn:
            granian = [str(bindir / "python"), "-c", SPAWNED_GRANIAN]
        return [
            *granian,
            "--interface",
            "wsgi",
            "--workers",
            "2",
            "--respawn-failed-workers",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--log-level",
            "warning",
            ENTRY,
        ]
    raise ValueError(f"no app server for {stack.server!r}")


def server_env(stack: Stack, project: Project, **extra: str) -> dict[str, str]:
    """Production settings (no debug, a real secret) as the systemd unit gives them."""
    return project_environment(
        project.bindir,
        FLASK_SECRET_KEY=SECRET,
        PYTHONUNBUFFERED="1",
        # flask run would read the development .env (FLASK_DEBUG=1) if
        # python-dotenv were installed; the benchmark measures production mode.
        FLASK_SKIP_DOTENV="1",
        **dict(stack.env),
        **extra,
    )


@contextmanager
def running(stack: Stack, project: Project, work: Path) -> Iterator[Running]:
    """`stack`, started in `work` (logs, nginx prefix) and answering; stopped on exit."""
    work.mkdir(parents=True)
    with ExitStack() as cleanup:
        if stack.server == "none":
            site = raw_nginx_site(work, free_port())
            nginx = cleanup.enter_context(running_nginx(site, project.domain))
            yield Running(site.port, project.domain, [nginx])
        elif stack.behind_nginx:
            sockets = short_tempdir()  # unix socket paths must be short
            cleanup.callback(shutil.rmtree, sockets, ignore_errors=True)
            sock = sockets / "gunicorn.sock"
            site = localize(
                project.root, work, project.slug, port=free_port(), upstream=f"unix:{sock}"
            )
            use_every_cpu(site)
            if stack.upstream_keepalive is not None:
                set_upstream_keepalive(site, project.slug, stack.upstream_keepalive)
            env = server_env(stack, project, GUNICORN_BIND=f"unix:{sock}")
            app = start(server_command(stack, project, 0), site.root, env, work / "server.log")
            cleanup.callback(stop, app)
            wait_unix(app, sock)
            nginx = cleanup.enter_context(running_nginx(site, project.domain))
            yield Running(site.port, project.domain, [app, nginx])
        else:
            port = free_port()
            env = server_env(stack, project, PORT=str(port), HOST=LOOPBACK)
            command = server_command(stack, project, port)
            app = start(command, project.root, env, work / "server.log")
            cleanup.callback(stop, app)
            wait_http(app, port, "/healthz", deadline=30)
            yield Running(port, None, [app])


def use_every_cpu(site: Site) -> None:
    """worker_processes auto, as Debian's nginx.conf has it (the test wrapper says 1)."""
    text = site.main_conf.read_text()
    if "worker_processes 1;" not in text:
        raise RuntimeError("tests/helpers/nginx.py changed its wrapper: update use_every_cpu")
    site.main_conf.write_text(text.replace("worker_processes 1;", "worker_processes auto;"))


def set_upstream_keepalive(site: Site, slug: str, connections: int) -> None:
    """Change the generated upstream's `keepalive N;` in the benchmark's copy only."""
    conf = site.root / "deploy" / "nginx" / f"{slug}.conf"
    text, found = re.subn(r"(?m)^(\s*keepalive) \d+;", rf"\g<1> {connections};", conf.read_text())
    if found != 1:
        raise RuntimeError(f"{conf}: expected one upstream `keepalive N;`, found {found}")
    conf.write_text(text)


def wait_unix(server: Server, sock: Path, deadline: float = 30) -> None:
    """Poll until the app answers /healthz on `sock`, it exits, or time runs out."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited:\n{server.output()}")
        try:
            if unix_http_get(sock, "/healthz", timeout=2).status == 200:
                return
        except OSError:  # no socket yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no answer on {sock} in {deadline}s:\n{server.output()}")


def raw_nginx_site(work: Path, port: int) -> Site:
    """An nginx that answers every request with the JSON route's body itself."""
    prefix = work / "nginx"
    for name in TEMP_DIRS:
        (prefix / name).mkdir(parents=True)
    site = Site(
        work, prefix, port, prefix / "nginx.conf", prefix / "access.log", prefix / "error.log"
    )
    temp_paths = "".join(f"    {name}_temp_path {prefix / name};\n" for name in TEMP_DIRS)
    # Like the generated stack's nginx (worker_processes auto, an access log),
    # minus the proxying: the ceiling of what any stack behind nginx can reach.
    site.main_conf.write_text(
        "worker_processes auto;\n"
        f"error_log {site.error_log} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"    include {MIME_TYPES};\n"
        f"    access_log {site.access_log};\n"
        f"{temp_paths}"
        "    server {\n"
        f"        listen {LOOPBACK}:{port};\n"
        "        location / {\n"
        "            default_type application/json;\n"
        f"            return 200 '{RAW_JSON}';\n"
        "        }\n"
        "    }\n"
        "}\n"
    )
    return site
