"""The project under test: the template's defaults, rendered, plus the bench routes.

The template itself is never changed: the routes (bench/app/) are copied into
the benchmark's own render, and every server loads `bench_wsgi:app`. The
servers run from a virtualenv of the benchmark's own, cached outside the clone
and keyed by the project's pins: the tests' shared venv stays exactly what the
project pins, while this one adds the alternative servers and the plotting.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import venv
import warnings
from dataclasses import dataclass
from pathlib import Path

import copier
import yaml
from copier.errors import DirtyLocalWarning

from harness.render import RUNNING_PYTHON
from harness.venvs import CACHE

REPO = Path(__file__).resolve().parent.parent
APP_FILES = Path(__file__).resolve().parent / "app"
# Installed next to the project's own pins: the alternative servers, the plot, and
# the metrics group (uv.lock's version) for the nginx-metrics stack.
BENCH_PINS = (
    "granian==2.8.7",
    "gevent==26.9.0",
    "matplotlib==3.11.2",
    "prometheus-client==0.26.0",
)


@dataclass(frozen=True)
class Project:
    root: Path  # the rendered project, with bench_wsgi.py and bench_routes.py
    bindir: Path  # bin/ of the benchmark's virtualenv
    slug: str
    domain: str  # the Host header the generated nginx site answers to


def render(target: Path, vcs_ref: str = "HEAD") -> Project:
    """Render the default answers (for this interpreter) at template `vcs_ref` (HEAD:
    the working tree; a tag: that release) into `target`, add the routes."""
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # vcs_ref=HEAD renders the working tree, local edits included: on purpose.
        warnings.simplefilter("ignore", DirtyLocalWarning)
        copier.run_copy(
            str(REPO),
            str(target),
            data={"python_version": RUNNING_PYTHON},
            defaults=True,
            unsafe=True,  # the template's task writes .env
            vcs_ref=vcs_ref,
            quiet=True,
        )
    for source in APP_FILES.glob("*.py"):
        shutil.copy(source, target / source.name)
    answers = yaml.safe_load((target / ".copier-answers.yml").read_text())
    return Project(target, bench_venv(target), answers["project_slug"], answers["domain"])


def bench_venv(project: Path) -> Path:
    """bin/ of a virtualenv with `project`'s pins and BENCH_PINS, built once per key."""
    digest = hashlib.sha256(sys.version.encode())
    digest.update((project / "requirements.txt").read_bytes())
    digest.update(" ".join(BENCH_PINS).encode())
    target = CACHE / "bench-venvs" / digest.hexdigest()[:16]
    target.parent.mkdir(parents=True, exist_ok=True)
    # A lock, so that two runs (or the smoke test under xdist) never build it at once.
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".complete").exists():
            print(f"Building the benchmark's virtualenv in {target} (once)", flush=True)
            venv.EnvBuilder(clear=True, with_pip=True).create(target)
            pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q"]
            # Two installs: requirements.txt carries hashes (pip then demands
            # them for everything it installs in that run), BENCH_PINS do not.
            for args in (["-r", "requirements.txt"], BENCH_PINS):
                result = subprocess.run(  # noqa: S603 (fixed commands of our own)
                    [*pip, "--disable-pip-version-check", *args],
                    cwd=project,
                    capture_output=True,
                    text=True,
                    timeout=900,
                    check=False,
                )
                if result.returncode != 0:
                    raise SystemExit(f"pip failed:\n{result.stdout}{result.stderr}")
            (target / ".complete").touch()
    return target / "bin"
