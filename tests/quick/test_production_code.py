"""The generated code, read: nothing in it can switch on Werkzeug's debugger.

(tests/resilience/test_production_safety.py proves the same on a running server.)
"""

from __future__ import annotations

from pathlib import Path


def test_the_generated_code_never_wires_up_the_debugger(default_project: Path) -> None:
    sources = {p: p.read_text() for p in default_project.rglob("*.py")}
    wired = [
        f"{path.relative_to(default_project)}: {needle}"
        for path, text in sources.items()
        for needle in ("DebuggedApplication", "use_debugger", "debug=True", "use_evalex")
        if needle in text
    ]
    assert not wired, wired
