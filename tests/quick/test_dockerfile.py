"""The generated Dockerfile and .dockerignore, read and linted (nothing is built)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from harness.render import RUNNING_PYTHON
from harness.tools import run_tool

APP_UID = "10001"
HADOLINT_VARIANTS = [
    {},
    {"database": "sqlite"},
    {"database": "postgresql"},
    {"python_version": "3.14", "package_name": "shop"},
    {"server": "granian"},
]


def test_hadolint_finds_nothing_in_any_variant(rendered: Any) -> None:
    dockerfiles = [str(rendered(**answers) / "Dockerfile") for answers in HADOLINT_VARIANTS]
    result = run_tool("hadolint", "--no-color", "--failure-threshold", "warning", *dockerfiles)
    assert result.returncode == 0, result.stdout + result.stderr
    # Not even info-level notes today; keep it that way.
    assert result.stdout.strip() == "", result.stdout


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per line, continuation lines joined, no comments."""
    joined = re.sub(r"\\\n(\s*#.*\n)*", " ", dockerfile)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_dockerfile_and_dockerignore_shape(default_project: Path) -> None:
    text = (default_project / "Dockerfile").read_text()
    steps = instructions(text)
    keywords = [k for k, _ in steps]

    # A slim base pinned to the project's Python, written out where Dependabot
    # reads it, and the same base for both stages (the venv points at its Python).
    base = f"python:{RUNNING_PYTHON}-slim-trixie"
    froms = [rest for k, rest in steps if k == "FROM"]
    assert froms == [f"{base} AS builder", base]
    # No python path is hard-coded: the base decides where its python lives.
    assert not re.search(r"/usr(/local)?/bin/python", text)

    # Dependencies before code, so a code change keeps the dependency layer.
    final = [i for i, k in enumerate(keywords) if k == "FROM"][1]
    sync = steps.index(
        ("RUN", "uv sync --locked --no-dev --group metrics --group sentry --no-install-project")
    )
    lock = steps.index(("COPY", "pyproject.toml uv.lock ./"))
    code = [i for i, (k, r) in enumerate(steps) if k == "COPY" and i > final]
    assert lock < sync < final < min(code)
    # uv comes from PyPI, pinned, before the lock (a lock change does not fetch it again).
    uv = next(i for i, (k, r) in enumerate(steps) if k == "RUN" and '"uv==${UV_VERSION}"' in r)
    assert uv < lock
    # Only what runs reaches the final image.
    copied = " ".join(r for k, r in steps[final:] if k == "COPY")
    assert "tests" not in copied and ". ." not in copied

    # A numeric non-root user (runAsNonRoot can only check a number).
    user = [r for k, r in steps if k == "USER"]
    assert user == ["${APP_UID}:${APP_GID}"]
    assert ("ARG", f"APP_UID={APP_UID}") in steps
    env = " ".join(r for k, r in steps if k == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env

    # A health check without curl, an exec-form CMD with the generated config.
    healthcheck = next(r for k, r in steps if k == "HEALTHCHECK")
    assert "urllib.request" in healthcheck and "/healthz" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck
    cmd = next(r for k, r in steps if k == "CMD")
    assert json.loads(cmd) == ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    assert ("EXPOSE", "8000") in steps

    # .dockerignore keeps secrets and clutter out of the build context.
    ignored = (default_project / ".dockerignore").read_text().splitlines()
    patterns = {line.strip() for line in ignored if line.strip() and not line.startswith("#")}
    for pattern in (".env", ".env.*", ".git/", ".venv/", "__pycache__/", "instance/", "*.pem"):
        assert pattern in patterns, pattern
    assert "!.env.example" in patterns
