"""The generated README's Develop commands, run as printed, the way a newcomer
runs them: from `copier copy` to a running dev server, the tests, the
pre-commit hooks, and adding a package (which reaches uv.lock and, through the
hook, requirements.txt). Also: the PowerShell blocks parse, and a project whose
Python the machine lacks makes uv fetch that Python rather than use an older one.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import copier
import pytest
import tree_sitter
import tree_sitter_powershell

from tests.helpers.project_env import CACHE, uv_environment
from tests.helpers.render import BASE_ANSWERS, RUNNING_PYTHON, render
from tests.helpers.servers import free_port, running
from tests.helpers.template_versions import GIT_ENV
from tests.helpers.tools import require_tool

REPO = Path(__file__).resolve().parent.parent
# A small pure-Python package from PyPI that no variant depends on.
NEW_PACKAGE = "humanize"


def fenced_blocks(readme: str, section: str, language: str) -> list[str]:
    """The ```language blocks of one `## section` of the README."""
    body = readme.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"^```{language}\n(.*?)^```$", body, flags=re.MULTILINE | re.DOTALL)


def printed_commands(readme: str) -> list[str]:
    """The Develop section's shell commands, comments removed."""
    block = fenced_blocks(readme, "Develop", "sh")[0]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def newcomer_env() -> dict[str, str]:
    """uv on PATH (from the template's own venv, as `pip install uv` gives it);
    no project venv active; git able to commit."""
    env = uv_environment(**GIT_ENV)
    env.pop("UV_PYTHON")  # uv picks the interpreter from .python-version
    env["PATH"] = f"{Path(require_tool('uv')).parent}{os.pathsep}{env['PATH']}"
    env["PRE_COMMIT_HOME"] = str(CACHE / "pre-commit")
    return env


def sh(project: Path, env: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.boot
def test_develop_commands_work_as_printed(tmp_path: Path) -> None:
    env = newcomer_env()
    project = tmp_path / "shop"
    started = time.monotonic()
    copier.run_copy(
        str(REPO),
        project,
        data=BASE_ANSWERS,
        vcs_ref="HEAD",
        unsafe=True,
        defaults=True,
        quiet=True,
    )
    commands = printed_commands((project / "README.md").read_text())
    assert [c.split()[:3] for c in commands] == [
        ["uv", "sync"],
        ["uv", "run", "flask"],
        ["uv", "run", "pytest"],
        ["git", "init", "-q"],
        ["uv", "run", "pre-commit"],
        ["uv", "add", "NAME"],
    ]
    sync, serve, test, first_commit, hooks, add = commands

    result = sh(project, env, sync)
    assert result.returncode == 0, result.stderr
    port = free_port()
    # As printed; the port comes from Flask's own variable, so tests never clash.
    with running(
        shlex.split(serve),
        project,
        env | {"FLASK_RUN_PORT": str(port)},
        tmp_path / "flask.log",
        port,
        ready_path="/",
    ) as server:
        first_page = time.monotonic() - started
        assert "Debug mode: on" in server.output()
    print(f"FIGURE copier copy to a running dev server (uv cache warm): {first_page:.1f} s")

    result = sh(project, env, test)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Required test coverage" in result.stdout

    result = sh(project, env, first_commit)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "README.md" in sh(project, env, "git ls-files").stdout, "the first commit holds it all"
    result = sh(project, env, hooks)
    assert result.returncode == 0, result.stdout + result.stderr
    result = sh(project, env, add.replace("NAME", NEW_PACKAGE))
    assert result.returncode == 0, result.stderr
    assert f'"{NEW_PACKAGE}>=' in (project / "pyproject.toml").read_text()
    assert f'name = "{NEW_PACKAGE}"' in (project / "uv.lock").read_text()

    # The next commit: the hook exports the new package into requirements.txt
    # and stops the commit, as pre-commit does when a hook changed a file;
    # adding the file and committing again succeeds.
    result = sh(project, env, "git add -A && git commit -qm 'a new package'")
    hook_output = result.stdout + result.stderr
    assert result.returncode != 0 and "hook id: uv-export" in hook_output, hook_output
    assert f"{NEW_PACKAGE}==" in (project / "requirements.txt").read_text()
    result = sh(project, env, "git add -A && git commit -qm 'a new package'")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.quick
def test_an_older_system_python_makes_uv_fetch_the_projects(copie: Any) -> None:
    """python-build-standalone downloads come from GitHub, which this machine
    cannot reach; so the test stops uv before it downloads and checks that it
    asked for the project's Python, instead of settling for an older one."""
    missing = "3.14" if sys.version_info[:2] < (3, 14) else None
    if missing is None:
        pytest.skip("this interpreter is already the newest choice")
    project = render(copie, python_version=missing)
    env = newcomer_env()
    env["PATH"] = f"{Path(require_tool('uv')).parent}{os.pathsep}/usr/bin:/bin"
    result = sh(project, env, "uv sync")
    assert result.returncode != 0
    assert f"No interpreter found for Python {missing}" in result.stderr, result.stderr
    assert "A managed Python download is available" in result.stderr, result.stderr
    assert not (project / ".venv" / "bin" / f"python{RUNNING_PYTHON}").exists()


@pytest.mark.quick
@pytest.mark.parametrize("server", ["gunicorn", "granian"])
def test_powershell_blocks_parse(copie: Any, server: str) -> None:
    """No PowerShell here (Microsoft ships it from GitHub and its own apt
    repository): tree-sitter's PowerShell grammar (PyPI) parses each block
    instead, which catches quoting and syntax slips, not wrong commands."""
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    readme = (render(copie, server=server) / "README.md").read_text()
    blocks = re.findall(r"^```powershell\n(.*?)^```$", readme, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) == (2 if server == "gunicorn" else 1)
    for block in blocks:
        assert not parser.parse(block.encode()).root_node.has_error, block
    # The check can fail: an unclosed string is an error.
    assert parser.parse(b'$env:X = "unclosed\n').root_node.has_error
    if server == "gunicorn":
        run = [line for line in blocks[1].splitlines() if "waitress-serve" in line]
        assert run == ["uv run waitress-serve '--listen=127.0.0.1:8000' wsgi:app"]
