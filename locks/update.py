"""Regenerate the lock and requirements.txt that every variant of the template ships.

    python3 dev.py lock              after editing template/pyproject.toml.jinja
    python3 dev.py lock --upgrade    move every package to its newest allowed version

A generated project's dependencies depend on two answers (database, server),
so each of the 6 combinations has its own folder here: `locks/<database>-<server>/`
with `uv.lock` and `requirements.txt`. (Every project declares
`requires-python = ">=3.11"`, so one lock serves every python_version answer:
uv can only lock for versions it has an interpreter of, and never downloads one
here.)
template/uv.lock.jinja and template/requirements.txt.jinja include the right
pair. For each variant this script renders the template as it is, runs
`uv lock` there (the shipped lock is the starting point, so versions move only
with --upgrade or when pyproject.toml.jinja asks for it), exports
requirements.txt from the lock, and stores both. It is safe to run again at any
time, e.g. after merging a branch that added a dependency.
tests/test_locks.py fails while any stored file is stale.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import copier

REPO = Path(__file__).resolve().parent.parent
LOCKS = REPO / "locks"
DATABASES = ("none", "sqlite", "postgresql")
SERVERS = ("gunicorn", "granian")
VARIANTS = [(d, s) for d in DATABASES for s in SERVERS]

# The project's own entry in uv.lock carries its name; the stored lock carries a
# Jinja expression instead, filled in when the template renders.
SLUG = "locked-project"
SLUG_LINE = f'name = "{SLUG}"'
SLUG_TEMPLATE = 'name = "{{ project_slug }}"'

# Exactly how the generated project's README, CI and pre-commit hook export it.
# (--no-annotate: "# via" comments would name the project, in an order that
# depends on its name.)
EXPORT = ["export", "--frozen", "--no-dev", "--no-emit-project", "--no-annotate", "--quiet"]
EXPORT_OUTPUT = ["--output-file", "requirements.txt"]
FIX = "python3 dev.py lock"


def variant_dir(database: str, server: str) -> Path:
    return LOCKS / f"{database}-{server}"


def uv() -> str:
    """uv from the template's own .venv (the `test` group pins it), else PATH."""
    here = Path(sys.executable).parent / "uv"
    found = str(here) if here.exists() else shutil.which("uv")
    if found is None:
        sys.exit("uv is not installed: run this through `python3 dev.py lock`")
    return found


def uv_env() -> dict[str, str]:
    # The lock is the same whichever supported Python runs uv: use this one,
    # never a download (.python-version would ask for the project's).
    return {**os.environ, "UV_PYTHON": sys.executable, "UV_PYTHON_DOWNLOADS": "never"}


def run_uv(project: Path, *args: str) -> None:
    result = subprocess.run(
        [uv(), *args], cwd=project, env=uv_env(), capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"uv {' '.join(args)} failed in {project.name}:\n{result.stderr}")


def render(database: str, server: str, dst: Path) -> Path:
    """The template's working tree rendered for one variant, without its tasks."""
    copier.run_copy(
        str(REPO),
        dst,
        data={
            "project_name": SLUG,
            "project_slug": SLUG,
            "server": server,
            "database": database,
        },
        vcs_ref="HEAD",
        defaults=True,
        quiet=True,
        skip_tasks=True,
    )
    return dst


def lock_variant(variant: tuple[str, str], upgrade: bool) -> str:
    database, server = variant
    with tempfile.TemporaryDirectory(prefix="lock-") as tmp:
        project = render(database, server, Path(tmp) / "project")
        lockfile = project / "uv.lock"
        if not lockfile.read_text().strip():
            lockfile.unlink()  # a new variant: nothing to start from, see main()
        run_uv(project, "lock", *(["--upgrade"] if upgrade else []))
        run_uv(project, *EXPORT, *EXPORT_OUTPUT)
        text = lockfile.read_text()
        if text.count(SLUG_LINE) != 1:
            sys.exit(f"{variant}: the project's entry is not in uv.lock")
        target = variant_dir(*variant)
        target.mkdir(parents=True, exist_ok=True)
        (target / "uv.lock").write_text(text.replace(SLUG_LINE, SLUG_TEMPLATE))
        shutil.copyfile(project / "requirements.txt", target / "requirements.txt")
    return target.name


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="newest allowed versions")
    args = parser.parse_args(argv)
    # The template includes both files of its variant: a new variant starts
    # from empty ones so that it renders at all.
    for variant in VARIANTS:
        for name in ("uv.lock", "requirements.txt"):
            path = variant_dir(*variant) / name
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("")
    # uv does the network work; two at a time keeps a 2-core machine usable.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for name in pool.map(lambda v: lock_variant(v, args.upgrade), VARIANTS):
            print(f"locked {name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
