"""Starting one stack on 127.0.0.1 and stopping it again, every process by its PID.

The nginx stacks reuse the live tests' launcher (harness/nginx.py): it
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.project import Project
from bench.stacks import Stack
from harness.http import LOOPBACK, free_port
from harness.nginx import MIME_TYPES, TEMP_DIRS, Site, running_nginx
from harness.processes import Process
from harness.serving import serve
from harness.venvs import run_env

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
    servers: list[Process]  # their process trees are the stack (memory, CPU)

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
    return run_env(
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
    if stack.server == "none":
        site = raw_nginx_site(work, free_port())
        with running_nginx(site, project.domain) as nginx:
            yield Running(site.port, project.domain, [nginx])
        return

    def adjust(site: Site) -> None:
        use_every_cpu(site)
        if stack.upstream_keepalive is not None:
            set_upstream_keepalive(site, project.slug, stack.upstream_keepalive)

    port = free_port()
    with serve(
        project.root,
        work,
        server_env(stack, project),
        command=server_command(stack, project, port),
        port=port,
        behind_nginx=stack.behind_nginx,
        adjust_site=adjust,
        timeout=30,
    ) as served:
        servers = [served.process, *([served.nginx] if served.nginx else [])]
        yield Running(served.port, served.host, servers)


def use_every_cpu(site: Site) -> None:
    """worker_processes auto, as Debian's nginx.conf has it (the test wrapper says 1)."""
    text = site.main_conf.read_text()
    if "worker_processes 1;" not in text:
        raise RuntimeError("harness/nginx.py changed its wrapper: update use_every_cpu")
    site.main_conf.write_text(text.replace("worker_processes 1;", "worker_processes auto;"))


def set_upstream_keepalive(site: Site, slug: str, connections: int) -> None:
    """Change the generated upstream's `keepalive N;` in the benchmark's copy only."""
    conf = site.root / "deploy" / "nginx" / f"{slug}.conf"
    text, found = re.subn(r"(?m)^(\s*keepalive) \d+;", rf"\g<1> {connections};", conf.read_text())
    if found != 1:
        raise RuntimeError(f"{conf}: expected one upstream `keepalive N;`, found {found}")
    conf.write_text(text)


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
