"""`serve(project, ...)`: a rendered project under its own server, as one handle.

The server is the one the project was rendered with (gunicorn with its
gunicorn.conf.py, or run_granian.py), or any `command` that listens on `port`
(honcho, waitress, `flask run`). Alone it listens on a free loopback port;
`behind_nginx` puts it on a unix socket behind the project's own nginx config,
made to run here (harness/nginx.py), the way a host deploys it. Every process
is stopped by its PID when the `with` block ends.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from harness import nginx
from harness.chaos import wait_for_workers
from harness.http import LOOPBACK, Response, free_port, http_get, http_request
from harness.load import Load
from harness.processes import STOP_DEADLINE, Process, start, stop
from harness.waiting import eventually

GUNICORN = ["gunicorn", "-c", "gunicorn.conf.py"]
GRANIAN = ["python", "run_granian.py"]


def answers(project: Path) -> dict[str, Any]:
    """The project's recorded Copier answers."""
    return yaml.safe_load((project / ".copier-answers.yml").read_text())


def server_command(project: Path, app: str | None = None) -> list[str]:
    """How the project's README starts its production server, serving `app`
    (default: wsgi:app)."""
    if answers(project).get("server") == "granian":
        return [*GRANIAN, *([app] if app else [])]
    return [*GUNICORN, app or "wsgi:app"]


@dataclass
class Served:
    """A running server; requests go to 127.0.0.1:`port` (nginx's, when behind it)."""

    process: Process  # the app server's main process
    port: int
    command: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    host: str | None = None  # the Host header nginx serves; None without nginx
    nginx: Process | None = None
    site: nginx.Site | None = None
    socket: Path | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def request(
        self,
        method: str,
        path: str = "/",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5,
    ) -> Response:
        """One request, with nginx's Host header when behind nginx."""
        host = {"Host": self.host} if self.host else {}
        return http_request(self.port, method, path, body, {**host, **(headers or {})}, timeout)

    def get(
        self, path: str = "/", headers: Mapping[str, str] | None = None, timeout: float = 5
    ) -> Response:
        return self.request("GET", path, headers=headers, timeout=timeout)

    def output(self) -> str:
        """What the app server has logged so far."""
        return self.process.output()

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = 20, **kw: Any) -> str:
        return self.process.wait_for_log(pattern, count, timeout, **kw)

    def workers(self, count: int) -> set[int]:
        """The worker PIDs, once there are `count` of them."""
        return wait_for_workers(self.pid, lambda pids: len(pids) == count, f"{count} workers")

    def load(self, path: str = "/healthz", **kwargs: Any) -> Load:
        return Load(self.port, path, host=self.host, **kwargs)

    def stop(self, timeout: float = STOP_DEADLINE) -> int:
        """Stop the app server now (nginx stays until the block ends); its exit code."""
        return stop(self.process, timeout)

    @cached_property
    def label(self) -> str:
        """What ran, from the settings the server resolved, e.g. "nginx → gunicorn
        gthread 2x32 (unix socket)": a figure names the stack it measured."""
        server = describe_server(self.command, self.cwd, self.env)
        return f"nginx → {server} (unix socket)" if self.nginx else server


@contextmanager
def serve(
    project: Path,
    work: Path,
    env: Mapping[str, str],
    *,
    app: str | None = None,
    command: Sequence[str] | None = None,
    port: int | None = None,
    behind_nginx: bool = False,
    split_stderr: bool = False,
    ready: str = "/healthz",
    timeout: float = 20,
    adjust_site: Callable[[nginx.Site], None] | None = None,
    debian_setup: str | None = None,
    container: bool = False,
) -> Iterator[Served]:
    """Serve `project` until the block ends; logs go to `work`.

    `app` picks another WSGI app in the project's folder (a probe's), `command`
    another server altogether; either way PORT and HOST tell it where to listen.
    With `split_stderr`, stderr gets a file of its own (`served.process.stderr`).
    Ready means `ready` answers (any status). `adjust_site` may change the
    localized nginx files before nginx starts (the benchmark's variants); with
    `debian_setup` (shell lines, maybe none) nginx runs under Debian's own
    nginx.conf as those lines leave it (nginx.use_debian_main_conf); with
    `container`, under the compose stack's deploy/nginx/nginx.conf instead.
    """
    command = list(command or server_command(project, app))
    work.mkdir(parents=True, exist_ok=True)
    with ExitStack() as cleanup:
        if behind_nginx:
            proxied = _behind_nginx(
                project, work, env, command, timeout, adjust_site, debian_setup, container
            )
            yield cleanup.enter_context(proxied)
            return
        port = port or free_port()
        env = {**env, "PORT": str(port), "HOST": LOOPBACK}
        name = Path(command[0]).name
        log, err = work / f"{name}-{port}.log", work / f"{name}-{port}.err"
        process = start(command, project, env, log, stderr=err if split_stderr else None)
        cleanup.callback(stop, process)

        def answers_http() -> Response:
            process.assert_alive()
            return http_get(port, ready, timeout=2)

        eventually(answers_http, timeout, what=f"{' '.join(command)} answering {ready}")
        yield Served(process, port, command, project, env)


@contextmanager
def _behind_nginx(
    project: Path,
    work: Path,
    env: Mapping[str, str],
    command: list[str],
    timeout: float,
    adjust_site: Callable[[nginx.Site], None] | None,
    debian_setup: str | None,
    container: bool = False,
) -> Iterator[Served]:
    """The project's nginx config in front of its server on a unix socket."""
    recorded = answers(project)
    sockets = nginx.short_tempdir()
    sock = sockets / "app.sock"
    site = nginx.localize(
        project,
        work,
        recorded["project_slug"],
        port=free_port(),
        upstream=f"unix:{sock}",
        container=container,
    )
    if adjust_site:
        adjust_site(site)
    if debian_setup is not None:
        nginx.use_debian_main_conf(site, recorded["project_slug"], debian_setup)
    # The socket, in the variable whichever server the project runs reads;
    # gunicorn's access log is off by default behind nginx, and tests read it.
    env = {
        **env,
        "GUNICORN_BIND": f"unix:{sock}",
        "GRANIAN_UDS": str(sock),
        "GUNICORN_ACCESS_LOG": env.get("GUNICORN_ACCESS_LOG", "-"),
    }
    process = start(command, site.root, env, work / "server.log")
    try:

        def answers_on_socket() -> bool:
            process.assert_alive()
            return http_get(sock, "/healthz", timeout=2).status == 200

        eventually(answers_on_socket, timeout, what=f"the server on {sock}")
        with nginx.running_nginx(site, recorded["domain"]) as proxy:
            yield Served(
                process, site.port, command, site.root, env, recorded["domain"], proxy, site, sock
            )
    finally:
        stop(process)
        shutil.rmtree(sockets, ignore_errors=True)


def gunicorn_settings(command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> dict[str, str]:
    """Every setting as gunicorn resolves it for `command` (gunicorn's --print-config)."""
    *options, app = command
    result = subprocess.run(
        [*options, "--print-config", app],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    pairs = (line.partition(" = ") for line in result.stdout.splitlines())
    return {name.strip(): value.strip() for name, sep, value in pairs if sep}


def describe_server(command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> str:
    """ "gunicorn gthread 2x32", "gunicorn sync w2", "granian w2 (run_granian.py)",
    or the command itself."""
    if "run_granian.py" in command:
        return f"granian w{env.get('WEB_CONCURRENCY') or '(cpus)'} (run_granian.py)"
    if Path(command[0]).name != "gunicorn":
        return " ".join(command)
    settings = gunicorn_settings(command, cwd, env)
    kind, workers = settings["worker_class"], settings["workers"]
    if kind == "gthread" or (kind == "sync" and int(settings["threads"]) > 1):
        # (gunicorn runs gthread when sync is asked for with threads > 1)
        return f"gunicorn gthread {workers}x{settings['threads']}"
    return f"gunicorn {kind} w{workers}"
