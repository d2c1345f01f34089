"""`serve(project, ...)`: a rendered project under its own server (maybe behind its own nginx,
as a host deploys it), as one handle. Every process is stopped by its PID when the block ends.
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
from harness.processes import Process, start, stop
from harness.waiting import eventually


def answers(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / ".copier-answers.yml").read_text())


def server_command(project: Path, app: str | None = None) -> list[str]:
    """How the project's README starts its production server, serving `app` (or wsgi:app)."""
    if answers(project).get("server") == "granian":
        return ["python", "run_granian.py", *([app] if app else [])]
    return ["gunicorn", "-c", "gunicorn.conf.py", app or "wsgi:app"]


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

    def stop(self) -> int:
        """Stop the app server now (nginx stays until the block ends); its exit code."""
        return stop(self.process)

    @cached_property
    def label(self) -> str:
        """What ran, e.g. "nginx → gunicorn gthread 2x32 (unix socket)" (as gunicorn resolved
        its settings), "granian w2 (run_granian.py)": a figure names the stack it measured."""
        if "run_granian.py" in self.command:
            server = f"granian w{self.env.get('WEB_CONCURRENCY') or '(cpus)'} (run_granian.py)"
        elif Path(self.command[0]).name != "gunicorn":
            server = " ".join(self.command)
        else:
            *options, app = self.command
            printed = subprocess.run(
                [*options, "--print-config", app],
                cwd=self.cwd,
                env=dict(self.env),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert printed.returncode == 0, printed.stdout + printed.stderr
            pairs = (line.partition(" = ") for line in printed.stdout.splitlines())
            settings = {name.strip(): value.strip() for name, sep, value in pairs if sep}
            kind, workers, threads = (settings[k] for k in ("worker_class", "workers", "threads"))
            # (gunicorn runs gthread when sync is asked for with threads > 1)
            if kind == "gthread" or (kind == "sync" and int(threads) > 1):
                server = f"gunicorn gthread {workers}x{threads}"
            else:
                server = f"gunicorn {kind} w{workers}"
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
    """Serve `project` with the server it was rendered with (gunicorn.conf.py or run_granian.py)
    until the block ends; logs go to `work`.

    `app` picks another WSGI app in the project's folder (a probe's), `command` another server
    (honcho, waitress, `flask run`); alone, PORT and HOST tell it where to listen (`port`, or a
    free one). `behind_nginx` puts it on a unix socket behind the project's own nginx config,
    made to run here (harness/nginx.py). With `split_stderr`, stderr gets a file of its own
    (`served.process.stderr`). Ready means `ready` answers (any status; behind nginx, a 200).
    `adjust_site` may change the localized nginx files before nginx starts (the benchmark's
    variants); with `debian_setup` (shell lines, maybe none) nginx runs under Debian's own
    nginx.conf as those lines leave it; with `container`, under deploy/nginx/nginx.conf.
    """
    command = list(command or server_command(project, app))
    with ExitStack() as cleanup:
        if behind_nginx:
            recorded = answers(project)
            socket = nginx.short_tempdir() / "app.sock"
            cleanup.callback(shutil.rmtree, socket.parent, ignore_errors=True)
            slug = recorded["project_slug"]
            site = nginx.localize(
                project,
                work,
                slug,
                port=free_port(),
                upstream=f"unix:{socket}",
                container=container,
            )
            if adjust_site:
                adjust_site(site)
            if debian_setup is not None:
                nginx.use_debian_main_conf(site, slug, debian_setup)
            # The socket, in the variable whichever server the project runs reads;
            # gunicorn's access log is off by default behind nginx, and tests read it.
            env = {"GUNICORN_ACCESS_LOG": "-", **env, "GRANIAN_UDS": str(socket)}
            env["GUNICORN_BIND"] = f"unix:{socket}"
            cwd, port, host, upstream = site.root, site.port, recorded["domain"], socket
        else:
            port = upstream = port or free_port()
            env = {**env, "PORT": str(port), "HOST": LOOPBACK}
            cwd, site, host, socket = project, None, None, None
        log = work / f"{Path(command[0]).name}-{port}.log"
        stderr = log.with_suffix(".err") if split_stderr else None
        process = start(command, cwd, env, log, stderr=stderr)
        cleanup.callback(stop, process)

        def answering() -> Response | bool:
            process.assert_alive()
            response = http_get(upstream, ready, timeout=2)
            return response.status == 200 if site else response

        eventually(answering, timeout, what=f"{' '.join(command)} answering {ready} on {upstream}")
        proxy = cleanup.enter_context(nginx.running_nginx(site, host)) if site else None
        yield Served(process, port, command, cwd, env, host, proxy, site, socket)
