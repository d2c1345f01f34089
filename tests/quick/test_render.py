"""Every combination of the switches renders into a clean, lint-free project; so does each
preset, with `copier copy --data-file` as the README says, its answers recorded and the files
it promises there (tests/live/test_boot.py boots them). What a newcomer meets before any
server runs: the README's PowerShell blocks parse, and a project whose Python the machine lacks
makes uv fetch that Python rather than use an older one (tests/live/test_dev_tools.py runs the
README's Develop commands)."""

from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
import tree_sitter
import tree_sitter_powershell
import yaml

from harness import REPO
from harness.render import (
    PRESETS,
    RUNNING_PYTHON,
    SWITCHES,
    jinja_leftovers,
    project_files,
    render_preset,
    text_problems,
)
from harness.tools import require_tool, run_tool
from harness.venvs import uv_env

# What runs, written out: every combination of the three switches and CI
# (16), the database and the server varied so that each switch meets each of
# their values; plus Kubernetes (which needs Docker) with each database.
COLUMNS = ("with_docker", "with_nginx", "with_procfile", "with_k8s", "ci", "database", "server")
# fmt: off
SUPPORTED_COMBINATIONS: list[dict[str, Any]] = [
    dict(zip(COLUMNS, row, strict=True))
    for row in [
        # docker nginx  procfile k8s   ci        database      server
        (True,  True,  True,  False, "github", "none",       "gunicorn"),
        (True,  True,  True,  False, "none",   "sqlite",     "gunicorn"),
        (True,  True,  False, False, "github", "postgresql", "granian"),
        (True,  True,  False, False, "none",   "none",       "granian"),
        (True,  False, True,  False, "github", "sqlite",     "gunicorn"),
        (True,  False, True,  False, "none",   "postgresql", "gunicorn"),
        (True,  False, False, False, "github", "none",       "granian"),
        (True,  False, False, False, "none",   "sqlite",     "granian"),
        (False, True,  True,  False, "github", "postgresql", "gunicorn"),
        (False, True,  True,  False, "none",   "none",       "gunicorn"),
        (False, True,  False, False, "github", "sqlite",     "granian"),
        (False, True,  False, False, "none",   "postgresql", "granian"),
        (False, False, True,  False, "github", "none",       "gunicorn"),
        (False, False, True,  False, "none",   "sqlite",     "gunicorn"),
        (False, False, False, False, "github", "postgresql", "granian"),
        (False, False, False, False, "none",   "none",       "granian"),
        (True,  True,  True,  True,  "github", "none",       "gunicorn"),
        (True,  True,  False, True,  "none",   "sqlite",     "granian"),
        (True,  False, True,  True,  "github", "postgresql", "gunicorn"),
    ]
]
# fmt: on

# The files each condition on the answers (Jinja, as in the template's file names) switches on.
CONDITIONAL_FILES = {
    name: condition
    for condition, names in {
        "with_docker": "Dockerfile .dockerignore compose.yaml",
        "with_procfile": "Procfile",
        "with_nginx": "deploy/nginx/demo-shop.conf deploy/nginx/include/site.conf "
        "deploy/nginx/main-context.conf deploy/systemd/demo-shop.service",
        "with_nginx and with_docker": "deploy/nginx/nginx.conf",
        "with_k8s": "deploy/k8s/deployment.yaml",
        "ci == 'github'": ".github/workflows/ci.yml",
        "server == 'gunicorn'": "gunicorn.conf.py",
        "server == 'granian'": "run_granian.py",
        "database != 'none'": "demo_shop/db.py demo_shop/models.py demo_shop/items.py "
        "migrations/env.py migrations/alembic.ini migrations/script.py.mako tests/test_items.py",
    }.items()
    for name in names.split()
}
ALWAYS = """.copier-answers.yml .env .env.example .gitignore README.md pyproject.toml
    requirements.txt uv.lock .python-version .pre-commit-config.yaml .editorconfig wsgi.py
    demo_shop/__init__.py demo_shop/config.py demo_shop/health.py demo_shop/views.py
    tests/conftest.py""".split()
# Code that could switch on Werkzeug's debugger (tests/resilience/test_resilience.py
# proves its absence on a running server).
DEBUGGER = ("DebuggedApplication", "use_debugger", "debug=True", "use_evalex")


def combo_id(combo: dict[str, Any]) -> str:
    on = [k.removeprefix("with_") for k in (*SWITCHES, "with_k8s") if combo[k]]
    return "+".join(on or ["bare"]) + f"-ci:{combo['ci']}-db:{combo['database']}-{combo['server']}"


def assert_ruff_clean(project: Path) -> None:
    for args in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        result = run_tool("ruff", *args, cwd=project, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


# Besides deploy/: the files that say how the app is started and configured.
SERVER_FILES = {"compose.yaml", "Dockerfile", "Procfile", "wsgi.py", ".env.example"}


@pytest.mark.parametrize("combo", SUPPORTED_COMBINATIONS, ids=combo_id)
def test_combination_renders_clean(rendered: Any, combo: dict[str, Any]) -> None:
    """The files each answer asks for and no others; no Jinja left; no debugger;
    lint-clean; read as hand-written; a learner reading a granian project's
    deployment files reads about granian, never gunicorn, and the other way round."""
    project = rendered(**combo)
    files = {str(p) for p in project_files(project)}

    for name in ALWAYS:
        assert name in files, f"{name} missing"
    for name, condition in CONDITIONAL_FILES.items():
        on = jinja2.Environment(autoescape=True).compile_expression(condition)(**combo)
        assert (name in files) == on, f"{name}: {condition}"
    procfile = (project / "Procfile").read_text() if combo["with_procfile"] else ""
    release = combo["database"] != "none" and combo["with_procfile"]
    assert ("release: flask db upgrade" in procfile) == release

    assert jinja_leftovers(project, "demo_shop") == []
    for name in (f for f in files if f.endswith(".py")):
        code = (project / name).read_text()
        assert not [n for n in DEBUGGER if n in code], f"{name} wires up Werkzeug's debugger"
        # Its code (not its comments) never calls `app.run(` (or `application.run(`).
        assert not any(
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "run"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in {"app", "application"}
            for node in ast.walk(ast.parse(code))
        ), f"{name} starts the development server"

    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    # with_k8s is asked (and recorded) only with Docker.
    asked = {k: v for k, v in combo.items() if k != "with_k8s" or combo["with_docker"]}
    assert {k: answers[k] for k in asked} == asked

    assert_ruff_clean(project)
    # No line over 100 characters (URLs and fenced code aside), no trailing
    # whitespace, no doubled blank lines outside Python: no marks of Jinja.
    assert text_problems(project) == []
    other = "gunicorn" if combo["server"] == "granian" else "granian"
    mentions = [
        f"{rel}:{number}: {line.strip()}"
        for rel in project_files(project)
        if rel.parts[0] == "deploy"
        or str(rel) in SERVER_FILES
        or (len(rel.parts) == 2 and rel.name == "config.py")  # <package>/config.py
        for number, line in enumerate((project / rel).read_text().splitlines(), 1)
        if other in line.lower()
    ]
    assert mentions == []


def test_gunicorn_config_reads_at_a_glance(default_project: Path) -> None:
    """Settings only, each in gunicorn's reference form: `# name: what it does and
    when to change it`, in at most three lines; the machinery is in gunicorn_hooks.py."""
    lines = (default_project / "gunicorn.conf.py").read_text().splitlines()
    assert len(lines) <= 160
    internals = [line for line in lines if re.match(r"(from|import) gunicorn(\.| |$)", line)]
    assert internals == [], "gunicorn's own modules belong in gunicorn_hooks.py"
    # A description: "# name: ..." (or "# name / other: ..."), then "#   ..." lines.
    length: dict[str, int] = {}
    current: list[str] = []
    for line in lines:
        if heading := re.match(r"# ([a-z_]+(?: / [a-z_]+)*): ", line):
            current = heading[1].split(" / ")
            length.update(dict.fromkeys(current, 1))
        elif line.startswith("#   ") and current:
            length.update({name: length[name] + 1 for name in current})
        else:
            current = []
    assert {name: n for name, n in length.items() if n > 3} == {}
    settings = {m[1] for line in lines if (m := re.match(r"([a-z]\w*) = ", line))} | {"bind"}
    assert settings - set(length) == set(), "every setting is described"
    assert len(settings) >= 20


def test_python_version_reaches_every_place_with_one_lock(rendered: Any) -> None:
    locks = set()
    for python_version in ["3.11", "3.12", "3.13", "3.14", "3.15"]:
        project = rendered(python_version=python_version)
        # requires-python is the lock's floor, so one lock serves every version;
        # .python-version is the version the project develops on (uv reads it).
        locks.add((project / "uv.lock").read_text())
        assert 'requires-python = ">=3.11"' in (project / "pyproject.toml").read_text()
        assert (project / ".python-version").read_text() == f"{python_version}\n"
        target = f'target-version = "py{python_version.replace(".", "")}"'
        assert target in (project / "pyproject.toml").read_text()
        assert f"python:{python_version}-slim" in (project / "Dockerfile").read_text()
        # Each version's ruff rules (pyupgrade, formatting) hold for the rendered code.
        assert_ruff_clean(project)
    assert len(locks) == 1


def test_dotenv_holds_a_fresh_secret_for_development(rendered: Any) -> None:
    secrets = []
    for project in (rendered(), rendered(database="sqlite")):
        dotenv = project / ".env"
        assert dotenv.stat().st_mode & 0o077 == 0, ".env must be private to its owner"
        values = dict(line.split("=", 1) for line in dotenv.read_text().splitlines() if "=" in line)
        assert values["FLASK_DEBUG"] == "1"
        assert len(values["FLASK_SECRET_KEY"]) == 64
        secrets.append(values["FLASK_SECRET_KEY"])
        assert ".env" in (project / ".gitignore").read_text().split()
    assert secrets[0] != secrets[1], "every project gets its own secret"


# What each preset promises: (files present, files absent).
COMMON = {"wsgi.py", "gunicorn.conf.py", "Procfile", ".github/workflows/ci.yml",
          ".github/workflows/template-update.yml"}  # fmt: skip
PROMISED = {
    "course": (
        COMMON | {"tests/test_views.py", ".github/scripts/update_from_template.py"},
        {"Dockerfile", "compose.yaml", "deploy", "migrations"},
    ),
    "production": (
        COMMON | {"Dockerfile", "compose.yaml", "deploy/nginx/include/site.conf",
                  "deploy/k8s/deployment.yaml", "deploy/systemd", "migrations/env.py"},
        set(),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", PRESETS)
def test_preset_sets_questions_that_are_recorded_and_promised_files_lint_clean(
    name: str, tmp_path: Path
) -> None:
    assert PRESETS == sorted(PROMISED), "a new preset needs its promises in PROMISED"
    preset = yaml.safe_load((REPO / "presets" / f"{name}.yml").read_text())
    questions = {k for k in yaml.safe_load((REPO / "copier.yml").read_text()) if k[0] != "_"}
    assert set(preset) <= questions, f"{name}: {set(preset) - questions} are not questions"
    # In a folder named after the preset.
    rendered = render_preset(name, tmp_path / name)
    answers = yaml.safe_load((rendered / ".copier-answers.yml").read_text())
    assert {key: answers.get(key) for key in preset} == preset
    assert answers["python_version"] == RUNNING_PYTHON, "--data wins over --data-file"
    present, absent = PROMISED[name]
    assert [name for name in sorted(present) if not (rendered / name).exists()] == []
    assert [name for name in sorted(absent) if (rendered / name).exists()] == []
    assert_ruff_clean(rendered)


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
