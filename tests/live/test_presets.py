"""The presets boot: each, rendered with `copier copy --data-file` as the README says, passes
its own tests and serves under gunicorn, and under waitress through the exact command the
generated README gives Windows users. (tests/quick/test_presets_static.py reads them.)"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from harness.http import LOOPBACK, free_port
from harness.readme import readme_blocks
from harness.render import PRESETS, render_preset
from harness.serving import serve
from harness.venvs import production_env, project_venv, run_env, run_project_tests


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_passes_its_own_tests_and_serves(preset: str, tmp_path: Path) -> None:
    project = render_preset(preset, tmp_path / preset)
    venv = project_venv(project)
    result = run_project_tests(project, run_env(venv))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout

    # Production refuses to start without a database URL; a SQLite file stands in for
    # PostgreSQL (/healthz and / never touch it).
    database = {"DATABASE_URL": f"sqlite:///{project / 'instance' / 'boot.sqlite3'}"}
    env = production_env(venv, **(database if (project / "migrations").is_dir() else {}))
    # The waitress command in the README's PowerShell blocks, exactly one, on one line;
    # PowerShell may set variables first on the same line (`$env:X = ...;`).
    found = {
        line.split(";")[-1].split(" #")[0].strip()
        for block in readme_blocks((project / "README.md").read_text(), "powershell")
        for line in block.lines()
        if "waitress-serve" in line
    }
    assert len(found) == 1, f"expected one waitress-serve command in the README, got {found}"
    # `uv run X` runs X in the project's environment: here the shared venv, with the same
    # locked packages.
    waitress = shlex.split(found.pop().removeprefix("uv run "))
    assert waitress[0] == "waitress-serve", waitress
    listen = [arg for arg in waitress if arg.startswith("--listen=")]
    assert len(listen) == 1, f"the README's command says where it listens: {waitress}"
    # As written, except the port (the README's may be taken here) and, should the
    # README listen on every interface, the host: tests bind to loopback.
    port = free_port()
    waitress = [f"--listen={LOOPBACK}:{port}" if arg in listen else arg for arg in waitress]
    for server, command, at in [("gunicorn", None, None), ("waitress", waitress, port)]:
        with serve(project, tmp_path / server, env, command=command, port=at) as served:
            assert served.get("/healthz").status == 200, server
            assert served.get("/").status == 200, server
