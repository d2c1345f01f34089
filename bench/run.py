#!/usr/bin/env python3
"""Benchmark the generated serving stack against the alternatives, side by side.

    python3 bench/run.py [--duration S] [--passes N] [--stacks a,b] [--routes json,io] [--smoke]

Works on a fresh clone with Python 3.10+: like dev.py, it builds .venv (copier)
first, then runs the harness (bench/benchmark.py) from it. The harness builds its
own cached virtualenv for the servers (the project's pins, granian, gevent,
matplotlib). Results go to build/bench/ (results.json, results.md, results.png).
`--help` lists every option.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    # dev.py lives at the top of the repo, which is not on sys.path when this
    # file runs as a script; its ensure_venv() is the one way .venv is built.
    sys.path.insert(0, str(REPO))
    import dev

    # From .venv itself (pytest, `.venv/bin/python bench/run.py`) it exists
    # already, and rebuilding it under a running test session would be unkind.
    if Path(sys.prefix).resolve() != dev.VENV.resolve():
        dev.ensure_venv()
    # -m from the repo root, so the harness imports `bench.*` and `harness.*`.
    # exec, not a child process: Ctrl+C then reaches the harness alone, which
    # stops its servers itself instead of being killed with them still running.
    os.chdir(REPO)
    python = str(dev.BIN / "python")
    os.execv(python, [python, "-m", "bench.benchmark", *argv])  # noqa: S606 (our own venv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
