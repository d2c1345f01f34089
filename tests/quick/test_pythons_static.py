"""The matrix of tests/container/test_pythons.py covers what it must: the default
Python and every newer one offered, and every package of every lock."""

from __future__ import annotations

from harness import REPO
from harness.project_ci import (
    DEFAULT_PYTHON,
    OFFERED_PYTHONS,
    PYTHON_RUNS,
    VARIANTS,
    lock_packages,
    version,
)
from harness.provisioning import TESTING_PYTHONS


def test_the_default_and_every_newer_python_have_rows() -> None:
    newest = {v for v in OFFERED_PYTHONS if version(v) >= version(DEFAULT_PYTHON)}
    # Debian testing must offer them (the stand-in images come from it).
    assert newest <= set(TESTING_PYTHONS)
    assert {(p, v) for p in newest for v in VARIANTS} == set(PYTHON_RUNS)


def test_the_variants_hold_every_locked_package() -> None:
    locks = [p.name.split("-") for p in (REPO / "locks").iterdir() if (p / "uv.lock").is_file()]
    every = set().union(*(lock_packages({"database": d, "server": s}) for d, s in locks))
    held = set().union(*(lock_packages(a) for a in VARIANTS.values()))
    assert every - held == set()
