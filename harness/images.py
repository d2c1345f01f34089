"""Images of rendered projects, built with podman, and the containers run from them.

Builds use podman.py's persistent layer cache and provisioning.py's stand-ins for the
official images, so a warm build of an unchanged project takes seconds. Tests run a
build by its image id, never by its tag: tags are shared by every run on the machine.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.http import Response, free_port, http_get
from harness.podman import (
    CONTAINER_CA_BUNDLE,
    _file_lock,
    _run,
    ca_bundle_volume,
    cache_root,
    podman_available,
    run_podman,
)
from harness.provisioning import (
    BASE_PYTHON,
    ensure_base_image,
    ensure_python_image,
)
from harness.tools import require_tool, skip_or_fail
from harness.waiting import eventually

#: The official python image a Dockerfile's FROM line names: its Python version.
PYTHON_FROM = re.compile(r"^FROM\s+(?:docker\.io/library/)?python:(\d+\.\d+)-slim", re.MULTILINE)


def require_podman() -> None:
    """Skip when podman cannot run containers here; fail instead under CI=true."""
    if reason := podman_available():
        skip_or_fail(f"podman is unusable: {reason}")


@dataclass
class Build:
    """One `podman build`: the image id, its context, its log and how long it took."""

    image: str
    tag: str
    context: Path
    output: str
    seconds: float


def stand_in_for_from_lines(env: Mapping[str, str], dockerfile: Path) -> None:
    """Give the local stand-ins the names the Dockerfile's FROM lines use (the real
    image's, so that Dependabot can bump it): Debian 12's base for its Python, a
    Debian-testing one for the newer Pythons. The storage's users share those names:
    tag right before a build, and check the Python of what was built."""
    for python in set(PYTHON_FROM.findall(dockerfile.read_text())):
        base = ensure_base_image(env) if python == BASE_PYTHON else None
        stand_in = base or ensure_python_image(env, python)  # which raises for others
        run_podman(env, "tag", stand_in, f"docker.io/library/python:{python}-slim-trixie")


def build_project_image(env: Mapping[str, str], project: Path, name: str) -> Build:
    """Build `project`'s Dockerfile as a user would (`--format docker` keeps the
    HEALTHCHECK), its FROM lines' names locked: two builds must not retag them at once."""
    tag = f"localhost/copier-flask-test:{name}"
    iidfile = project.parent / f".iid-{name}-{uuid.uuid4().hex[:8]}"
    dockerfile = project / "Dockerfile"
    with contextlib.ExitStack() as locks:
        for python in sorted(set(PYTHON_FROM.findall(dockerfile.read_text()))):
            locks.enter_context(_file_lock(cache_root() / f"python-{python}-official-tag.lock"))
        stand_in_for_from_lines(env, dockerfile)
        started = time.monotonic()
        proc = run_podman(
            env,
            *("build", "--format", "docker", "--pull=never", "-v", ca_bundle_volume()),
            *("--iidfile", str(iidfile), "-t", tag, str(project)),
            timeout=900,
        )
    seconds = time.monotonic() - started
    image = iidfile.read_text().strip()
    iidfile.unlink()
    return Build(image, tag, project, proc.stdout + proc.stderr, seconds)


#: The generated CI's steps that depend on the Python (its pre-commit runs the same ruff).
PROJECT_CI_STEPS = (
    "uv sync --locked",
    "uv run --no-sync mypy",
    "uv run --no-sync ruff check .",
    "uv run --no-sync ruff format --check .",
    "uv run --no-sync pytest --cov -q -p no:cacheprovider",
)

#: The first line that says why a run failed: uv's error, a type checker's
#: ("file:line: error: ..."), then a Python exception.
FAILURE = (
    re.compile(r"^error: (.+)$", flags=re.MULTILINE),
    re.compile(r"^(\S+:\d+: error: .+)$", flags=re.MULTILINE),
    re.compile(r"^(?:E\s+)*(\w+Error: .+)$", flags=re.MULTILINE),
)


@dataclass
class Run:
    """A shell script run in a container: its exit code, output and duration."""

    returncode: int
    output: str
    seconds: float

    def why(self, width: int = 90) -> str:
        """Why it failed, in one line of at most `width` characters ("" if it passed)."""
        if self.returncode == 0:
            return ""
        for pattern in FAILURE:
            if match := pattern.search(self.output):
                line = re.sub(r" @ registry\+\S+`", "`", match[1])  # where from: PyPI
                # uv at length: a package has no wheel for the Python (and may not build)
                no_wheel = r"\1 has no wheel for this Python"
                line = re.sub(r"^Distribution (`\S+`) can't be installed .*", no_wheel, line)
                return textwrap.shorten(line, width, placeholder="...")
        return f"exit {self.returncode}"


def run_project_ci(
    env: Mapping[str, str],
    image: str,
    project: Path,
    uv_version: str,
    *before: str,
    steps: Sequence[str] = PROJECT_CI_STEPS,
) -> Run:
    """Run `project`'s CI steps (or another job's `steps`) in `image` after `before`, as
    on a fresh runner; uv never downloads a Python. The project is copied in: what the
    steps write stays there. The host's CA bundle: pip and uv read no other on 3.13+.
    Wheels only, as in the slim image: a package without one fails, instead of building."""
    downloads = cache_root() / "testing-downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    install_uv = f'python -m pip install -q --root-user-action=ignore "uv=={uv_version}"'
    script = " && ".join(("cp -a /project /work", "cd /work", install_uv, *before, *steps))
    settings = ("UV_PYTHON_DOWNLOADS=never", "UV_NO_BUILD=1", "UV_PROJECT_ENVIRONMENT=/venv")
    started = time.monotonic()
    proc = run_podman(
        env,
        *("run", "--rm", "--pull=never", "-v", f"{project}:/project:ro"),
        *("-v", ca_bundle_volume(), "-v", f"{downloads}:/root/.cache"),
        *(f"--env={setting}" for setting in settings),
        f"--env=SSL_CERT_FILE={CONTAINER_CA_BUNDLE}",
        *(image, "sh", "-exc", script),
        check=False,
        timeout=1200,
    )
    return Run(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)


def container_state(env: Mapping[str, str], name: str) -> tuple[str, int]:
    """(status, exit code) of a container."""
    state = "{{.State.Status}} {{.State.ExitCode}}"
    status, code = run_podman(env, "inspect", "--format", state, name).stdout.split()
    return status, int(code)


def wait_for_exit(env: Mapping[str, str], name: str, timeout: float) -> int:
    """The container's exit code, once it has stopped. Polls `podman inspect`: podman
    4.3's `podman wait` notices an exit about 20 s late when no systemd runs."""
    status = eventually(
        lambda: (state := container_state(env, name))[0] in {"exited", "stopped"} and state,
        timeout,
        what=f"container {name} stopped",
        interval=0.2,
    )
    return status[1]


def wait_for_http(port: int, path: str = "/healthz", timeout: float = 30) -> Response:
    """GET 127.0.0.1:`port``path` until it answers with any status (a new container
    accepts on its published port before the app inside listens)."""
    return eventually(
        lambda: http_get(port, path, timeout=5), timeout, what=f"an answer on :{port}{path}"
    )


def logs(env: Mapping[str, str], name: str) -> str:
    """Everything the container wrote (stdout and stderr)."""
    proc = run_podman(env, "logs", name, check=False)
    return proc.stdout + proc.stderr


@contextlib.contextmanager
def container(
    env: Mapping[str, str], image: str, *options: str, **settings: str
) -> Iterator[tuple[str, int]]:
    """`podman run -d` with `options`, `settings` in its environment and its port 8000 on
    a free loopback port: (name, port); removed afterwards, whatever happened."""
    name, port = f"copier-flask-test-{uuid.uuid4().hex[:12]}", free_port()
    options = ("-p", f"127.0.0.1:{port}:8000", *options)
    options += tuple(f"--env={key}={value}" for key, value in settings.items())
    try:
        run_podman(env, "run", "-d", "--name", name, *options, image, timeout=120)
        yield name, port
    finally:
        run_podman(env, "rm", "--force", "--time", "5", name, check=False, timeout=120)


def shell(env: Mapping[str, str], name: str, script: str, *options: str) -> str:
    """The output of `sh -c script` in a running container (`options`: podman exec's)."""
    return run_podman(env, "exec", *options, name, "sh", "-c", script, timeout=120).stdout


# `/slow?seconds=3`, added to a test's copy of a project (the template has none): the
# request in flight when a container or a pod is stopped.
SLOW_ROUTE = """

@bp.get("/slow")
def slow() -> dict[str, float]:
    import time

    from flask import request

    seconds = float(request.args.get("seconds", "3"))
    time.sleep(seconds)
    return {"slept": seconds}
"""


def add_slow_route(project: Path, extra: str = "") -> None:
    views = project / "demo_shop" / "views.py"
    views.write_text(views.read_text() + SLOW_ROUTE + extra)


@contextlib.contextmanager
def slow_request_in_flight(port: int, wait: float = 20) -> Iterator[dict[str, object]]:
    """GET /slow?seconds=3 from a thread, in the worker by the time the block starts;
    afterwards (waited for up to `wait` s) the dict's "reply": (status, body) or the error."""
    answer: dict[str, object] = {}

    def request() -> None:
        try:
            reply = http_get(port, "/slow?seconds=3", timeout=20)
            answer["reply"] = (reply.status, reply.body)
        except Exception as exc:  # the caller's to judge
            answer["reply"] = exc

    client = threading.Thread(target=request, daemon=True)
    client.start()
    time.sleep(1)
    yield answer
    client.join(timeout=wait)


def podman_compose(
    env: dict[str, str], project: Path, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """podman-compose `args` in `project` (its exit code is the caller's to check)."""
    return _run([require_tool("podman-compose"), *args], timeout, False, cwd=project, env=env)
