"""The benchmark harness: the generated serving stack against its alternatives.

Run it with `python3 bench/run.py` (see bench/README.md); the modules here are
its parts, one job each.
"""
