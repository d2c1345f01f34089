"""What a newcomer meets before any server runs: the README's PowerShell blocks
parse, and a project whose Python the machine lacks makes uv fetch that Python
rather than use an older one. (tests/live/test_newcomer.py runs the README's
Develop commands.)"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import tree_sitter
import tree_sitter_powershell

from harness.render import RUNNING_PYTHON
from harness.tools import require_tool, run_tool
from harness.venvs import uv_env


def test_an_older_system_python_makes_uv_fetch_the_projects(rendered: Any) -> None:
    """python-build-standalone downloads come from GitHub, which this machine
    cannot reach; so the test stops uv before it downloads and checks that it
    asked for the project's Python, instead of settling for an older one."""
    missing = "3.14" if sys.version_info[:2] < (3, 14) else None
    if missing is None:
        pytest.skip("this interpreter is already the newest choice")
    project = rendered(python_version=missing)
    env = uv_env()
    env.pop("UV_PYTHON")  # uv picks the interpreter from .python-version
    env["PATH"] = f"{Path(require_tool('uv')).parent}{os.pathsep}/usr/bin:/bin"
    result = run_tool("uv", "sync", cwd=project, env=env)
    assert result.returncode != 0
    assert f"No interpreter found for Python {missing}" in result.stderr, result.stderr
    assert "A managed Python download is available" in result.stderr, result.stderr
    assert not (project / ".venv" / "bin" / f"python{RUNNING_PYTHON}").exists()


def test_powershell_blocks_parse(rendered: Any) -> None:
    """No PowerShell here (Microsoft ships it from GitHub and its own apt
    repository): tree-sitter's PowerShell grammar (PyPI) parses each block
    instead, which catches quoting and syntax slips, not wrong commands."""
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    # The check can fail: an unclosed string is an error.
    assert parser.parse(b'$env:X = "unclosed\n').root_node.has_error
    for server, database in [("gunicorn", "none"), ("granian", "none"), ("gunicorn", "postgresql")]:
        readme = (rendered(server=server, database=database) / "README.md").read_text()
        blocks = re.findall(r"^```powershell\n(.*?)^```$", readme, flags=re.MULTILINE | re.DOTALL)
        assert len(blocks) == (2 if server == "gunicorn" else 1), (server, database)
        for block in blocks:
            assert not parser.parse(block.encode()).root_node.has_error, block
        if server == "gunicorn":
            run = [line for line in blocks[1].splitlines() if "waitress-serve" in line]
            assert run == ["uv run waitress-serve '--listen=127.0.0.1:8000' wsgi:app"]
        if database == "postgresql":  # as the sh block: the database's URL, then the migrations
            production = blocks[1]
            assert "$env:DATABASE_URL = " in production and "uv run flask db upgrade" in production
