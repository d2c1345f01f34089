"""The matrix of tests/container/test_pythons.py covers what it must: the default
Python and every newer one offered, and every package of every lock."""

from __future__ import annotations

from harness import REPO
from harness import project_ci as ci
from harness.provisioning import TESTING_PYTHONS


def test_the_matrix_holds_every_newer_python_and_every_locked_package() -> None:
    newest = {v for v in ci.OFFERED_PYTHONS if ci.version(v) >= ci.version(ci.DEFAULT_PYTHON)}
    # Debian testing must offer them (the stand-in images come from it).
    assert newest <= set(TESTING_PYTHONS)
    assert {(p, v) for p in newest for v in ci.VARIANTS} == set(ci.PYTHON_RUNS)
    locks = [p.name.split("-") for p in (REPO / "locks").iterdir() if (p / "uv.lock").is_file()]
    every = set().union(*(ci.lock_packages({"database": d, "server": s}) for d, s in locks))
    held = set().union(*(ci.lock_packages(a) for a in ci.VARIANTS.values()))
    assert every - held == set()
