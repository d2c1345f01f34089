"""Images of rendered projects, built with podman and shared by the container,
compose and Kubernetes tests.

Builds go through the persistent layer cache of tests/helpers/containers.py, so
a warm build of an unchanged project takes seconds. Tests run what a build
produced by its image id, never by a tag: tags are shared by every test run on
the machine, ids cannot change under a running test.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.containers import (
    CONTAINER_CA_BUNDLE,
    DEBIAN_SUITE,
    _file_lock,
    base_image_key,
    ca_bundle_volume,
    cache_root,
    ensure_base_image,
    ensure_python_image,
    podman_available,
    run_podman,
)
from tests.helpers.tools import skip_or_fail

#: Where built project images are tagged (for people looking at the storage).
IMAGE_REPO = "localhost/copier-flask-test"

#: The build step lines of `podman build` output: "[2/2] STEP 9/14: COPY ...".
STEP = re.compile(r"^(?:\[\d+/\d+\] )?STEP \d+/\d+: (?P<instruction>.*)$")

#: A stand-in for the official nginx image (no registry is reachable here):
#: Debian's nginx on the same base, started the way nginx:*-alpine starts.
NGINX_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \\
    && apt-get install -y --no-install-recommends nginx-light wget \\
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \\
    && ln -sf /dev/stdout /var/log/nginx/access.log \\
    && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
"""


def require_podman() -> None:
    """Skip when podman cannot run containers here; fail instead under CI=true."""
    reason = podman_available()
    if reason is not None:
        skip_or_fail(f"podman is unusable: {reason}")


@dataclass
class Build:
    """One `podman build`: the image id, its context, its log and how long it took."""

    image: str
    tag: str
    context: Path
    output: str
    seconds: float

    def steps(self) -> list[tuple[str, bool]]:
        """(instruction, came from the layer cache) for every build step."""
        steps: list[tuple[str, bool]] = []
        for line in self.output.splitlines():
            match = STEP.match(line)
            if match:
                steps.append((match["instruction"], False))
            elif line.startswith("--> Using cache") and steps:
                steps[-1] = (steps[-1][0], True)
        return steps


def build_project_image(
    env: Mapping[str, str], project: Path, name: str, *build_args: str
) -> Build:
    """Build `project`'s Dockerfile the way a user would, on the local base image.

    `--format docker` keeps the HEALTHCHECK; the CA bundle is mounted so pip
    reaches PyPI (see containers.py); `build_args` are extra NAME=VALUE pairs.
    """
    return _build(env, project, name, f"PYTHON_IMAGE={ensure_base_image(env)}", *build_args)


def build_project_image_as_written(env: Mapping[str, str], project: Path, python: str) -> Build:
    """Build `project`'s Dockerfile on its own FROM line, for Python `python`.

    The official image's name is given to the Debian-testing stand-in
    (containers.ensure_python_image) and nothing is pulled. The lock keeps
    two builds from retagging the name under each other; check the built
    image's Python all the same (another user of the storage may tag it).
    """
    with _file_lock(cache_root() / f"python-{python}-official-tag.lock"):
        ensure_python_image(env, python)
        return _build(env, project, f"py{python}-{uuid.uuid4().hex[:8]}", pull="never")


def _build(
    env: Mapping[str, str], project: Path, name: str, *build_args: str, pull: str | None = None
) -> Build:
    tag = f"{IMAGE_REPO}:{name}"
    iidfile = project.parent / f".iid-{name}-{uuid.uuid4().hex[:8]}"
    args = [f"--pull={pull}"] if pull else []
    for pair in build_args:
        args += ["--build-arg", pair]
    started = time.monotonic()
    proc = run_podman(
        env,
        "build",
        "--format",
        "docker",
        *args,
        "-v",
        ca_bundle_volume(),
        "--iidfile",
        str(iidfile),
        "-t",
        tag,
        str(project),
        timeout=900,
    )
    seconds = time.monotonic() - started
    image = iidfile.read_text().strip()
    iidfile.unlink()
    output = proc.stdout + proc.stderr
    return Build(image=image, tag=tag, context=project, output=output, seconds=seconds)


#: The generated project's CI steps that depend on the Python (its workflow
#: also runs pre-commit, whose hooks are the same ruff): the locked install,
#: the type check, lint and format, the suite with its coverage floor.
PROJECT_CI_STEPS = (
    "uv sync --locked",
    "uv run --no-sync mypy",
    "uv run --no-sync ruff check .",
    "uv run --no-sync ruff format --check .",
    "uv run --no-sync pytest --cov -q -p no:cacheprovider",
)


#: What uv says at length when a package has no wheel for the Python (and may not build).
NO_WHEEL = r"\1 has no wheel for this Python"

#: The first line that says why a run failed: uv's error, then a Python exception.
FAILURE = (
    re.compile(r"^error: (.+)$", flags=re.MULTILINE),
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
            match = pattern.search(self.output)
            if match:
                line = re.sub(r" @ registry\+\S+`", "`", match[1])  # where from: PyPI
                line = re.sub(r"^Distribution (`\S+`) can't be installed .*", NO_WHEEL, line)
                return textwrap.shorten(line, width, placeholder="...")
        return f"exit {self.returncode}"


def run_project_ci(
    env: Mapping[str, str], image: str, project: Path, uv_version: str, *before: str
) -> Run:
    """Run `project`'s CI steps in `image`, as its workflow does on a fresh runner.

    The image's `python` is the runner's setup-python; uv comes from PyPI
    with pip, and never downloads a Python. `before` are commands to run
    first (`uv lock --upgrade`). The project is copied in, so the lock
    they write stays in the container. The environment is clean: the
    image's, the proxy variables podman passes on, and the host's CA bundle
    in the image's store (pip and uv read no other on Python 3.13+).
    Packages install from wheels only, as in the slim image (no compiler):
    a package without a wheel for this Python fails to install, instead of
    building for minutes or fetching a toolchain from outside PyPI.
    Downloads are cached between runs outside the clone.
    """
    downloads = cache_root() / "testing-downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    script = " && ".join(
        (
            "cp -a /project /work",
            "cd /work",
            f'python -m pip install -q --root-user-action=ignore "uv=={uv_version}"',
            *before,
            *PROJECT_CI_STEPS,
        )
    )
    started = time.monotonic()
    proc = run_podman(
        env,
        "run",
        "--rm",
        "--pull=never",
        "-v",
        f"{project}:/project:ro",
        "-v",
        ca_bundle_volume(),
        "-v",
        f"{downloads}:/root/.cache",
        "-e",
        "UV_PYTHON_DOWNLOADS=never",
        "-e",
        "UV_NO_BUILD=1",
        "-e",
        "UV_PROJECT_ENVIRONMENT=/venv",
        "-e",
        f"SSL_CERT_FILE={CONTAINER_CA_BUNDLE}",
        image,
        "sh",
        "-exc",
        script,
        check=False,
        timeout=1200,
    )
    return Run(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)


def ensure_nginx_image(env: Mapping[str, str]) -> str:
    """A local nginx image that behaves like the official one; its reference.

    Built once per storage (apt from the base image's Debian mirror, about
    15 s), then reused; a file lock keeps pytest-xdist workers from racing.
    """
    ref = f"localhost/copier-flask-nginx:{DEBIAN_SUITE}-{base_image_key()}"
    if run_podman(env, "image", "exists", ref, check=False).returncode == 0:
        return ref
    with _file_lock(cache_root() / "nginx-image.lock"):
        if run_podman(env, "image", "exists", ref, check=False).returncode == 0:
            return ref
        context = Path(env["TMPDIR"]) / f"nginx-image-{uuid.uuid4().hex[:8]}"
        context.mkdir(parents=True)
        (context / "Dockerfile").write_text(NGINX_DOCKERFILE)
        run_podman(
            env,
            "build",
            "--format",
            "docker",
            "--build-arg",
            f"BASE_IMAGE={ensure_base_image(env)}",
            "-t",
            ref,
            str(context),
            timeout=900,
        )
    return ref


def image_megabytes(env: Mapping[str, str], ref: str) -> float:
    """The image's size on disk (all its layers), in MB."""
    size = run_podman(env, "image", "inspect", "--format", "{{.Size}}", ref).stdout
    return int(size.strip()) / 1e6


def container_state(env: Mapping[str, str], name: str) -> tuple[str, int]:
    """(status, exit code) of a container."""
    out = run_podman(
        env, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name
    ).stdout.split()
    return out[0], int(out[1])


def wait_for_exit(env: Mapping[str, str], name: str, timeout: float) -> int:
    """Wait until the container has stopped; return its exit code.

    Polls `podman inspect`: podman 4.3's `podman wait` only notices an exit
    about 20 s late when no systemd is running.
    """
    deadline = time.monotonic() + timeout
    while True:
        status, code = container_state(env, name)
        if status in {"exited", "stopped"}:
            return code
        if time.monotonic() > deadline:
            raise TimeoutError(f"container {name} still {status} after {timeout} s")
        time.sleep(0.2)


def logs(env: Mapping[str, str], name: str) -> str:
    """Everything the container wrote (stdout and stderr)."""
    proc = run_podman(env, "logs", name, check=False)
    return proc.stdout + proc.stderr


@contextlib.contextmanager
def container(env: Mapping[str, str], image: str, *run_args: str) -> Iterator[str]:
    """`podman run -d` with `run_args` (options, then an optional command after
    the image); yield its name; remove it afterwards, whatever happened."""
    name = f"copier-flask-test-{uuid.uuid4().hex[:12]}"
    split = run_args.index("--") if "--" in run_args else len(run_args)
    options, command = list(run_args[:split]), list(run_args[split + 1 :])
    try:
        run_podman(env, "run", "-d", "--name", name, *options, image, *command, timeout=120)
        yield name
    finally:
        run_podman(env, "rm", "--force", "--time", "5", name, check=False, timeout=120)


# A route that takes its time (`/slow?seconds=3`), added to a test's own copy of
# a project (the template has none): the request in flight when a container or
# pod is stopped.
SLOW_ROUTE = """

@bp.get("/slow")
def slow() -> dict[str, float]:
    import time

    from flask import request

    seconds = float(request.args.get("seconds", "3"))
    time.sleep(seconds)
    return {"slept": seconds}
"""


def add_slow_route(project: Path, package: str = "demo_shop", extra: str = "") -> None:
    """Append SLOW_ROUTE (and `extra`) to the project's views.py."""
    views = project / package / "views.py"
    views.write_text(views.read_text() + SLOW_ROUTE + extra)
