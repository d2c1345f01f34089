"""The generated README's Develop commands, run as printed, the way a newcomer
runs them: from `copier copy` to a running dev server, the tests, the
pre-commit hooks, and adding a package (which reaches uv.lock and, through the
hook, requirements.txt). tests/quick/test_newcomer_static.py checks what needs
no server: the PowerShell blocks, and uv's choice of Python.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import copier

from harness import REPO
from harness.http import free_port
from harness.render import BASE_ANSWERS
from harness.serving import serve
from harness.template_versions import GIT_ENV
from harness.tools import require_tool
from harness.venvs import CACHE, uv_env

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
    env = uv_env(**GIT_ENV)
    env.pop("UV_PYTHON")  # uv picks the interpreter from .python-version
    env["PATH"] = f"{Path(require_tool('uv')).parent}{os.pathsep}{env['PATH']}"
    env["PRE_COMMIT_HOME"] = str(CACHE / "pre-commit")
    return env


def sh(project: Path, env: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )


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
    sync, run, test, first_commit, hooks, add = commands

    result = sh(project, env, sync)
    assert result.returncode == 0, result.stderr
    port = free_port()
    # As printed; the port comes from Flask's own variable, so tests never clash.
    env_run = env | {"FLASK_RUN_PORT": str(port)}
    command = shlex.split(run)
    with serve(project, tmp_path, env_run, command=command, port=port, ready="/") as server:
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
