"""The presets boot: each, rendered with `copier copy --data-file` as the README
says, passes its own tests, serves under gunicorn, and under waitress through
the exact command the generated README gives Windows users.
(tests/quick/test_presets_static.py checks what they render.)
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from harness.http import LOOPBACK, free_port
from harness.render import PRESETS, render_preset
from harness.serving import serve
from harness.venvs import production_env, project_venv, run_env, run_project_tests


@pytest.fixture(scope="module", params=PRESETS)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_preset(request.param, tmp_path_factory.mktemp("presets") / request.param)


def production_settings(project: Path) -> dict[str, str]:
    """Production settings with the shared venv for the project's pins."""
    settings = {}
    if (project / "migrations").is_dir():
        # production refuses to start without a database URL; a SQLite file
        # stands in for PostgreSQL (/healthz and / never touch it).
        settings["DATABASE_URL"] = f"sqlite:///{project / 'instance' / 'boot.sqlite3'}"
    return production_env(project_venv(project), **settings)


def test_preset_passes_its_own_tests(rendered: Path) -> None:
    result = run_project_tests(rendered, run_env(project_venv(rendered)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


def windows_run_command(readme: str) -> str:
    """The waitress command in the README's PowerShell blocks (or, if it has
    none, in any fenced block): exactly one, on one line."""
    blocks = re.findall(r"^```([^\n]*)\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    powershell = [body for info, body in blocks if info.strip() in {"powershell", "pwsh", "ps1"}]
    found = {
        # PowerShell may set variables first on the same line (`$env:X = ...;`).
        line.split(";")[-1].split(" #")[0].strip()
        for body in powershell or [body for _, body in blocks]
        for line in body.splitlines()
        if "waitress-serve" in line
    }
    assert len(found) == 1, f"expected one waitress-serve command in the README, got {found}"
    command = found.pop()
    # `uv run X` runs X in the project's environment: here that is the shared
    # venv, which holds the same locked packages.
    command = command.removeprefix("uv run ")
    assert command.startswith("waitress-serve "), command
    return command


@pytest.mark.parametrize("server", ["gunicorn", "waitress as its README says"])
def test_preset_serves(rendered: Path, tmp_path: Path, server: str) -> None:
    command, port = None, None
    if server != "gunicorn":
        command = shlex.split(windows_run_command((rendered / "README.md").read_text()))
        listen = [arg for arg in command if arg.startswith("--listen=")]
        assert len(listen) == 1, f"the README's command says where it listens: {command}"
        # As written, except the port (the README's may be taken here) and, should
        # the README listen on every interface, the host: tests bind to loopback.
        port = free_port()
        command = [f"--listen={LOOPBACK}:{port}" if arg in listen else arg for arg in command]
    env = production_settings(rendered)
    with serve(rendered, tmp_path, env, command=command, port=port) as served:
        assert served.get("/healthz").status == 200
        assert served.get("/").status == 200
