"""The generated serving stack, started for resilience and safety tests.

`gunicorn_stack` runs gunicorn alone on a loopback port; `nginx_stack` runs
the project's own nginx config (tests/helpers/nginx.py makes it run here) in
front of gunicorn on a unix socket, the way a host deploys it. Both serve the
project with its generated gunicorn.conf.py and stop every process by its PID.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.chaos import wait_for_workers
from tests.helpers.load import Load
from tests.helpers.project_env import project_environment
from tests.helpers.servers import LOOPBACK, Server, free_port, start, stop, unix_http_get, wait_http

SECRET = "s" * 64


@dataclass
class Stack:
    """A running gunicorn (maybe behind nginx); requests go to 127.0.0.1:`port`."""

    gunicorn: Server
    port: int
    host: str | None = None  # the Host header nginx serves; None for gunicorn alone
    stderr: Path | None = None  # gunicorn's stderr, when kept apart from stdout
    # How the server was started, to describe it (`label`).
    command: Sequence[str] = ()
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def label(self) -> str:
        """What ran, from the settings gunicorn resolved, e.g. "nginx → gunicorn
        gthread 2x32 (unix socket)": a figure names the stack it measured."""
        assert self.cwd is not None, "a Stack made by gunicorn_stack or nginx_stack"
        server = describe_server(self.command, self.cwd, self.env)
        return f"nginx → {server} (unix socket)" if self.host else server

    @property
    def master(self) -> int:
        return self.gunicorn.pid

    def workers(self, count: int) -> set[int]:
        """The worker PIDs, once there are `count` of them."""
        return wait_for_workers(self.master, lambda pids: len(pids) == count, f"{count} workers")

    def load(self, path: str = "/healthz", **kwargs: Any) -> Load:
        return Load(self.port, path, host=self.host, **kwargs)


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


def project_env(venv_bin: Path, **settings: str) -> dict[str, str]:
    """Production settings (a secret, no debug) plus `settings`, with the shared venv."""
    return project_environment(venv_bin, **({"FLASK_SECRET_KEY": SECRET} | settings))


@contextmanager
def gunicorn_stack(
    command: list[str], project: Path, env: Mapping[str, str], logs: Path, split: bool = False
) -> Iterator[Stack]:
    """gunicorn alone on a free loopback port. With `split`, stderr goes to its
    own file (`stack.stderr`) instead of joining stdout in `stack.gunicorn.log`."""
    port = free_port()
    env = {**env, "PORT": str(port), "HOST": LOOPBACK}
    logs.mkdir(parents=True, exist_ok=True)
    if split:
        out, err = logs / f"gunicorn-{port}.out", logs / f"gunicorn-{port}.err"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            process = subprocess.Popen(
                command,
                cwd=project,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        server = Server(process, out)
    else:
        server, err = start(command, project, env, logs / f"gunicorn-{port}.log"), None
    try:
        wait_http(server, port)
        yield Stack(server, port, stderr=err, command=command, cwd=project, env=env)
    finally:
        stop(server)


@contextmanager
def nginx_stack(
    command: list[str],
    project: Path,
    env: Mapping[str, str],
    work: Path,
    debian_setup: str | None = None,
) -> Iterator[Stack]:
    """The project's nginx config in front of gunicorn on a unix socket. With
    `debian_setup` (shell lines, maybe none), under Debian's own nginx.conf as
    they leave it (tests/helpers/nginx.py: use_debian_main_conf)."""
    from tests.helpers.nginx import localize, running_nginx, short_tempdir, use_debian_main_conf

    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    sockets = short_tempdir()
    sock = sockets / "gunicorn.sock"
    site = localize(
        project, work, answers["project_slug"], port=free_port(), upstream=f"unix:{sock}"
    )
    if debian_setup is not None:
        use_debian_main_conf(site, answers["project_slug"], debian_setup)
    # The socket, in the variable whichever server the project runs reads.
    bind = {"GUNICORN_BIND": f"unix:{sock}", "GRANIAN_UDS": str(sock)}
    # gunicorn's access log is off by default behind nginx; the tests read it.
    bind["GUNICORN_ACCESS_LOG"] = env.get("GUNICORN_ACCESS_LOG", "-")
    env = {**env, **bind}
    server = start(command, site.root, env, work / "gunicorn.log")
    try:
        wait_for_unix_socket(server, sock)
        with running_nginx(site, answers["domain"]):
            yield Stack(
                server, site.port, answers["domain"], command=command, cwd=site.root, env=env
            )
    finally:
        stop(server)
        shutil.rmtree(sockets, ignore_errors=True)


def wait_for_unix_socket(server: Server, sock: Path, deadline: float = 20) -> None:
    """Poll until gunicorn answers /healthz on `sock` (or exits, or time runs out)."""
    end = time.monotonic() + deadline
    while True:
        assert server.process.poll() is None, f"gunicorn exited:\n{server.output()}"
        try:
            if unix_http_get(sock, "/healthz", timeout=2).status == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < end, f"gunicorn not ready on {sock}:\n{server.output()}"
        time.sleep(0.1)
