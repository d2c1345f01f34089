"""One virtualenv with a rendered project's dependencies, shared by every test.

Projects of one template version and variant ship the same uv.lock, so they share one
environment, keyed by the lock and the interpreter, built once with `uv sync --locked` as the
README does (under a file lock: pytest-xdist workers wait for each other) and cached outside
the clone. A lock that no longer matches its pyproject.toml, or no longer installs, fails here.
Projects are not installed into it; tests run them from their own folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

from harness.tools import require_tool, skip_or_fail

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "copier-flask"
# Installed besides the lock: waitress, which the lock only pulls in on
# Windows, so that the tests can boot the app under it here too.
EXTRA = ["waitress==3.0.2"]
# A production secret for tests: long enough for any check the app makes.
SECRET = "s" * 64
# The token the example /items API's writes need in production (API_TOKEN), and
# the header that sends it.
API_TOKEN = "t" * 64
BEARER = {"Authorization": f"Bearer {API_TOKEN}"}


def uv_env(**extra: str) -> dict[str, str]:
    """Settings for running uv in tests: this interpreter, never a download
    (python-build-standalone comes from GitHub, unreachable here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    return env | {"UV_PYTHON": sys.executable, "UV_PYTHON_DOWNLOADS": "never"} | extra


def run_env(bindir: Path, **extra: str) -> dict[str, str]:
    """The environment for running a project from the venv at `bindir`, with no FLASK_*
    or gunicorn settings inherited from the caller: each test states the ones it runs with."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLASK_", "GUNICORN_", "WEB_CONCURRENCY", "VIRTUAL_ENV"))
        and k not in {"PORT", "HOST"}
    }
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env | extra


def run_project_tests(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The rendered project's own pytest suite, as its README runs it."""
    return subprocess.run(
        ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def project_venv(project: Path) -> Path:
    """The bin/ folder of a virtualenv holding `project`'s locked packages and dev group."""
    # Keyed by the lock without the project's own name (which varies from test to test).
    pyproject = (project / "pyproject.toml").read_text()
    name = re.search(r'^name = "(.+)"$', pyproject, flags=re.MULTILINE)[1]  # type: ignore[index]
    text = (project / "uv.lock").read_text()
    text = re.sub(rf'^name = "{re.escape(name)}"$', 'name = "PROJECT"', text, flags=re.MULTILINE)
    built = "uv sync --compile-bytecode"  # how it was built
    key = hashlib.sha256(f"{sys.version}{text}{' '.join(EXTRA)}{built}".encode()).hexdigest()
    target = CACHE / "venvs" / key[:16]
    bindir = target / "bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return bindir
        uv = require_tool("uv")
        env = uv_env(UV_PROJECT_ENVIRONMENT=str(target))
        # Bytecode compiled once here, as pip does by default and the image
        # does: tests run with PYTHONDONTWRITEBYTECODE, and every worker would
        # otherwise compile Flask and its dependencies again at start.
        python = str(bindir / "python")
        for command in (
            [uv, "sync", "--locked", "--compile-bytecode"],
            [uv, "pip", "install", "--compile-bytecode", "--python", python, *EXTRA],
        ):  # uv's output shown only when it fails
            done = subprocess.run(
                command, cwd=project, env=env, capture_output=True, text=True, timeout=600
            )
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
        (target / ".complete").touch()
    return bindir


def production_env(bindir: Path, **settings: str) -> dict[str, str]:
    """run_env with production's required secret, the API's token (BEARER sends it), `settings`."""
    return run_env(bindir, **({"FLASK_SECRET_KEY": SECRET, "API_TOKEN": API_TOKEN} | settings))


def tool_venv(pin: str) -> Path:
    """bin/ of a virtualenv of its own holding `pin` (e.g. "gixy==0.1.21"), one per pin, built
    once under the cache: an auditor's own pins never meet the project's."""
    target = CACHE / "tools" / pin.replace("==", "-")
    target.parent.mkdir(parents=True, exist_ok=True)
    marker = target / ".complete"
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (marker.exists() and marker.read_text() == pin):
            venv.EnvBuilder(clear=True, with_pip=True).create(target)
            pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q", pin]
            try:
                subprocess.run(pip, check=True, timeout=300, capture_output=True)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                skip_or_fail(f"could not install {pin}: {exc}")
            marker.write_text(pin)
    return target / "bin"
