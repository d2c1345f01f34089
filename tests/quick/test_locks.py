"""The locks the template ships (locks/, see locks/update.py) are never stale.

Every database x server variant is rendered as a user gets it; its uv.lock must
satisfy its pyproject.toml (`uv lock --check`, offline: no resolution happens)
and its requirements.txt must be exactly what `uv export` makes of the lock.
Either failure names the one command that fixes it. That each lock also
*installs* (`uv sync --locked`, every hash checked) is proved by the shared
project venv (harness/venvs.py) for each variant the suite boots,
and by test_every_lock_installs_with_hashes below.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import REPO
from harness.render import RUNNING_PYTHON, render
from harness.tools import require_tool
from harness.venvs import project_venv, uv_env
from locks.update import EXPORT, FIX, LOCKS, VARIANTS, variant_dir

IDS = [f"{database}-{server}" for database, server in VARIANTS]


def uv(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("uv"), *args],
        cwd=project,
        env=uv_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_variant_has_a_lock_and_nothing_else_is_stored() -> None:
    stored = sorted(p.name for p in LOCKS.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert stored == sorted(IDS), f"locks/ does not match the variants: run `{FIX}`"
    for variant in VARIANTS:
        for name in ("uv.lock", "requirements.txt"):
            assert (variant_dir(*variant) / name).is_file(), f"{variant}: no {name}: run `{FIX}`"


def test_every_python_version_gets_the_same_lock(default_project: Path, copie_session: Any) -> None:
    """One lock serves every python_version answer (requires-python >= 3.11);
    .python-version says which one the project uses."""
    locks = set()
    for python in ("3.11", "3.14"):
        rendered = python == RUNNING_PYTHON  # the default project's version
        project = default_project if rendered else render(copie_session, python_version=python)
        locks.add((project / "uv.lock").read_text())
        assert (project / ".python-version").read_text() == f"{python}\n"
        assert 'requires-python = ">=3.11"' in (project / "pyproject.toml").read_text()
    assert len(locks) == 1


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_shipped_lock_is_fresh_and_installs_with_hashes(
    copie_session: Any, tmp_path: Path, variant: tuple[str, str]
) -> None:
    """The rendered uv.lock satisfies its pyproject.toml and requirements.txt is
    its export. `uv sync --locked` into the shared, cached venv checks every
    wheel's hash against the lock (uv refuses a mismatch), once per lock change;
    and requirements.txt installs in --require-hashes mode, as pip does on the
    platforms and the Linux host of the README. (One test per render.)"""
    database, server = variant
    project = render(copie_session, database=database, server=server)
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
    for command in (
        ["venv", "-q", str(venv)],
        [
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            "--require-hashes",
            "-r",
            "requirements.txt",
        ],
    ):
        result = uv(project, *command)
        assert result.returncode == 0, f"requirements.txt: run `{FIX}`\n{result.stderr}"
    bindir = project_venv(project)
    names = "flask granian gunicorn psycopg sqlalchemy".split()
    listed = subprocess.run(
        [require_tool("uv"), "pip", "list", "--python", str(bindir / "python")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    installed = {name for name in names if f"\n{name} " in listed}
    expected = {"flask", server} | ({"sqlalchemy"} if database != "none" else set())
    expected |= {"psycopg"} if database == "postgresql" else set()
    assert installed == expected


def test_one_uv_and_one_ruff_version_everywhere(default_project: Path) -> None:
    """The uv that made the locks is the one projects use (Dockerfile, CI,
    pre-commit); ruff is pinned once, in the dev group, and pre-commit runs that one."""
    made_by = subprocess.run(
        [require_tool("uv"), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    answers = yaml.safe_load((REPO / "copier.yml").read_text())
    assert answers["uv_version"]["default"] == made_by
    files = [".pre-commit-config.yaml", "Dockerfile", ".github/workflows/ci.yml"]
    for name in files:
        assert f"uv=={made_by}" in (default_project / name).read_text() or (
            f"UV_VERSION={made_by}" in (default_project / name).read_text()
        ), name
    ruff = re.search(r'"ruff==([\d.]+)"', (default_project / "pyproject.toml").read_text())
    hooks = (default_project / ".pre-commit-config.yaml").read_text()
    assert ruff and "ruff==" not in hooks
    assert "entry: uv run --frozen ruff check" in hooks and "uv run --frozen ruff format" in hooks
