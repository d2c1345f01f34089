"""The presets in presets/ work with `copier copy --data-file`, as the README says.

Each preset is rendered once per module with the command an instructor or a
team runs (the CLI, not the API), then checked: the files it promises, lint,
its own tests, gunicorn serving it, and waitress through the exact command the
generated README gives Windows users.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.project_env import project_environment, project_venv, run_project_tests
from tests.helpers.render import RUNNING_PYTHON
from tests.helpers.servers import free_port, http_get, running
from tests.helpers.template_versions import REPO

PRESETS = sorted(path.stem for path in (REPO / "presets").glob("*.yml"))
SECRET = "s" * 64

# What each preset promises, by file: present (True) or absent (False).
PROMISED = {
    "course": {
        "wsgi.py": True,
        "gunicorn.conf.py": True,
        "Procfile": True,
        "tests/test_views.py": True,
        ".github/workflows/ci.yml": True,
        ".github/workflows/template-update.yml": True,
        ".github/scripts/update_from_template.py": True,
        "Dockerfile": False,
        "compose.yaml": False,
        "deploy": False,
        "migrations": False,
    },
    "production": {
        "wsgi.py": True,
        "gunicorn.conf.py": True,
        "Procfile": True,
        "Dockerfile": True,
        "compose.yaml": True,
        "deploy/nginx/include/site.conf": True,
        "deploy/k8s/deployment.yaml": True,
        "deploy/systemd": True,
        "migrations/env.py": True,
        ".github/workflows/ci.yml": True,
        ".github/workflows/template-update.yml": True,
    },
}


def copier_copy_with_preset(preset: str, destination: Path) -> subprocess.CompletedProcess[str]:
    """The README's command, with this interpreter's Python (the tests run the code)."""
    return subprocess.run(
        [
            *(sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--vcs-ref=HEAD"),
            *("--data-file", str(REPO / "presets" / f"{preset}.yml")),
            *("--data", f"python_version={RUNNING_PYTHON}"),
            *(str(REPO), str(destination)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module", params=PRESETS)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The preset's project, in a folder named after the preset."""
    project = tmp_path_factory.mktemp("presets", numbered=True) / request.param
    result = copier_copy_with_preset(request.param, project)
    assert result.returncode == 0, result.stdout + result.stderr
    return project


def preset_of(project: Path) -> str:
    return project.name


@pytest.mark.quick
def test_every_preset_is_listed_here() -> None:
    assert PRESETS == sorted(PROMISED), "a new preset needs its promises in PROMISED"


@pytest.mark.quick
def test_preset_answers_are_recorded(rendered: Path) -> None:
    preset = yaml.safe_load((REPO / "presets" / f"{preset_of(rendered)}.yml").read_text())
    answers = yaml.safe_load((rendered / ".copier-answers.yml").read_text())
    assert {key: answers.get(key) for key in preset} == preset
    assert answers["python_version"] == RUNNING_PYTHON, "--data wins over --data-file"


@pytest.mark.quick
def test_preset_only_sets_the_templates_questions() -> None:
    questions = {k for k in yaml.safe_load((REPO / "copier.yml").read_text()) if k[0] != "_"}
    for name in PRESETS:
        preset = yaml.safe_load((REPO / "presets" / f"{name}.yml").read_text())
        assert set(preset) <= questions, f"{name}: {set(preset) - questions} are not questions"


@pytest.mark.quick
def test_preset_renders_the_files_it_promises(rendered: Path) -> None:
    for name, present in PROMISED[preset_of(rendered)].items():
        assert (rendered / name).exists() == present, f"{name} should be {present}"
    ruff = str(Path(sys.executable).parent / "ruff")
    for command in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        result = subprocess.run([ruff, *command], cwd=rendered, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def run_settings(project: Path, **extra: str) -> dict[str, str]:
    """The shared venv for the project's pins, production settings and `extra`."""
    settings = {"FLASK_SECRET_KEY": SECRET, **extra}
    if (project / "migrations").is_dir():
        # production refuses to start without a database URL; a SQLite file
        # stands in for PostgreSQL (/healthz and / never touch it).
        settings["DATABASE_URL"] = f"sqlite:///{project / 'instance' / 'boot.sqlite3'}"
    return project_environment(project_venv(project), **settings)


@pytest.mark.boot
def test_preset_passes_its_own_tests(rendered: Path) -> None:
    result = run_project_tests(rendered, project_environment(project_venv(rendered)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


@pytest.mark.boot
def test_preset_serves_under_gunicorn(rendered: Path, tmp_path: Path) -> None:
    port = free_port()
    env = run_settings(rendered, PORT=str(port), HOST="127.0.0.1")
    command = ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    with running(command, rendered, env, tmp_path / "gunicorn.log", port):
        assert http_get(port, "/healthz").status == 200
        assert http_get(port, "/").status == 200


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


@pytest.mark.boot
def test_preset_serves_under_waitress_as_its_readme_says(rendered: Path, tmp_path: Path) -> None:
    command = shlex.split(windows_run_command((rendered / "README.md").read_text()))
    listen = [arg for arg in command if arg.startswith("--listen=")]
    assert len(listen) == 1, f"the README's command says where it listens: {command}"
    # As written, except the port (the README's may be taken here) and, should
    # the README listen on every interface, the host: tests bind to loopback.
    port = free_port()
    command = [f"--listen=127.0.0.1:{port}" if arg in listen else arg for arg in command]
    with running(command, rendered, run_settings(rendered), tmp_path / "waitress.log", port):
        assert http_get(port, "/healthz").status == 200
        assert http_get(port, "/").status == 200
