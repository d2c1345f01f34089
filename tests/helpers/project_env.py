"""One virtualenv with a rendered project's dependencies, shared by every test.

Rendered projects of one template version pin the same dependencies, so they
can share a single environment: it is keyed by the pins and the interpreter,
built once (under a file lock, so pytest-xdist workers wait for each other
instead of racing) and cached outside the clone so that reruns are instant.
Projects are not installed into it; tests run them from their own folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "copier-flask"
# Installed besides the pins: waitress, which requirements.txt only pulls in
# on Windows, so that the tests can boot the app under it here too.
EXTRA = ["waitress==3.0.2"]


def _dependency_groups(pyproject: str) -> str:
    """The [dependency-groups] table's text: names and versions vary per
    project, the tools they pin do not."""
    start = pyproject.index("[dependency-groups]")
    end = pyproject.find("\n[", start + 1)
    return pyproject[start : end if end != -1 else None]


def _key(project: Path) -> str:
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    digest.update((project / "requirements.txt").read_bytes())
    digest.update(_dependency_groups((project / "pyproject.toml").read_text()).encode())
    digest.update(" ".join(EXTRA).encode())
    return digest.hexdigest()[:16]


def project_environment(bindir: Path, **extra: str) -> dict[str, str]:
    """The environment for running a rendered project from the venv at `bindir`:
    its bin/ first on PATH, and no FLASK_*/gunicorn settings inherited from the
    caller, so each test states the settings it runs with."""
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
    """The bin/ folder of a virtualenv holding `project`'s pins and dev group."""
    target = CACHE / "venvs" / _key(project)
    bindir = target / "bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return bindir
        venv.EnvBuilder(clear=True, with_pip=True).create(target)
        pip = [str(bindir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        # The projects document `pip install --group dev`, which needs pip >= 25.1.
        _quiet([*pip, "--upgrade", "pip>=25.1"], project)
        _quiet([*pip, "-r", "requirements.txt", "--group", "dev", *EXTRA], project)
        (target / ".complete").touch()
    return bindir


def _quiet(command: list[str], cwd: Path) -> None:
    """Run pip; show its output only when it fails."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
