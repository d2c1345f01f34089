"""The locks the template ships (locks/, see locks/update.py) are never stale.

Every database x server variant is rendered as a user gets it: its uv.lock must satisfy its
pyproject.toml (`uv lock --check`, offline) and its requirements.txt must be exactly what
`uv export` makes of the lock; either failure names the one command that fixes it. Each also
installs with every hash checked: `uv sync --locked` into the shared venv (harness/venvs.py),
and requirements.txt with --require-hashes, as pip does on the README's Linux host.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import REPO
from harness.tools import run_tool
from harness.venvs import project_venv, uv_env
from locks.update import EXPORT, FIX, LOCKS, VARIANTS, variant_dir

IDS = [f"{database}-{server}" for database, server in VARIANTS]


def uv(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_tool("uv", *args, cwd=project, env=uv_env())


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_shipped_lock_is_fresh_and_installs_with_hashes(
    rendered: Any, tmp_path: Path, variant: tuple[str, str]
) -> None:
    # Every variant has a lock, and nothing else is stored.
    stored = sorted(p.name for p in LOCKS.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert stored == sorted(IDS), f"locks/ does not match the variants: run `{FIX}`"
    for name in ("uv.lock", "requirements.txt"):
        assert (variant_dir(*variant) / name).is_file(), f"{variant}: no {name}: run `{FIX}`"
    database, server = variant
    project = rendered(database=database, server=server)
    check = uv(project, "lock", "--check", "--offline")
    assert check.returncode == 0, f"uv.lock is stale for {variant}: run `{FIX}`\n{check.stderr}"

    exported = tmp_path / "requirements.txt"
    export = uv(project, *EXPORT, "--output-file", str(exported))
    assert export.returncode == 0, export.stderr
    shipped = (project / "requirements.txt").read_text()
    # The header names the command that made it; the rest must match exactly.
    assert shipped.splitlines()[2:] == exported.read_text().splitlines()[2:], (
        f"requirements.txt is stale for {variant}: run `{FIX}`"
    )
    venv = tmp_path / "venv"
    pip = ["pip", "install", "-q", "--python", str(venv / "bin" / "python"), "--require-hashes"]
    for command in (["venv", "-q", str(venv)], [*pip, "-r", "requirements.txt"]):
        result = uv(project, *command)
        assert result.returncode == 0, f"requirements.txt: run `{FIX}`\n{result.stderr}"
    python = str(project_venv(project) / "python")
    listed = uv(project, "pip", "list", "--python", python)
    assert listed.returncode == 0, listed.stderr
    names = "flask granian gunicorn psycopg sqlalchemy".split()
    installed = {name for name in names if f"\n{name} " in listed.stdout.lower()}
    expected = {"flask", server} | ({"sqlalchemy"} if database != "none" else set())
    expected |= {"psycopg"} if database == "postgresql" else set()
    assert installed == expected


def test_one_uv_and_one_ruff_version_everywhere(default_project: Path) -> None:
    """The uv that made the locks is the one projects use (Dockerfile, CI,
    pre-commit); ruff is pinned once, in the dev group, and pre-commit runs that one."""
    made_by = uv(default_project, "--version").stdout.split()[1]
    answers = yaml.safe_load((REPO / "copier.yml").read_text())
    assert answers["uv_version"]["default"] == made_by
    for name in [".pre-commit-config.yaml", "Dockerfile", ".github/workflows/ci.yml"]:
        text = (default_project / name).read_text()
        assert f"uv=={made_by}" in text or f"UV_VERSION={made_by}" in text, name
    ruff = re.search(r'"ruff==([\d.]+)"', (default_project / "pyproject.toml").read_text())
    hooks = (default_project / ".pre-commit-config.yaml").read_text()
    assert ruff and "ruff==" not in hooks
    assert "entry: uv run --frozen ruff check" in hooks and "uv run --frozen ruff format" in hooks
