"""What a new user is told to type works as printed (issue "Every command a user is told
to type works as printed"): each failure the issue lists, proved fixed.

The live tests run the generated README's own lines, literally, in a clean environment
(tests/helpers/readme_blocks.py): no `python` on PATH, an empty HOME, uv as the README
says to install it. Servers listen on free loopback ports and are stopped by their PID.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml
from dotenv import dotenv_values

from hooks.migrations.report_update import report
from tests.helpers.project_env import project_environment, project_venv
from tests.helpers.readme_blocks import (
    Block,
    message_commands,
    readme_blocks,
    run_line,
    serving,
    user_bin,
    user_environment,
)
from tests.helpers.render import BASE_ANSWERS, render
from tests.helpers.servers import free_port, http_get, http_request, running, start, stop
from tests.helpers.template_versions import (
    V1,
    V2,
    build_template_versions,
    copy_project,
    run_as_user,
)
from tests.helpers.tools import require_tool

REPO = Path(__file__).resolve().parent.parent
COPIER = yaml.safe_load((REPO / "copier.yml").read_text())
SECRET = "s" * 64
SCRIPT = ".github/scripts/update_from_template.py"


def copy_as_user(dst: Path, **answers: Any) -> Path:
    """`copier copy --trust` with the tasks (the development .env), from the working tree."""
    copier.run_copy(
        str(REPO),
        dst,
        data={**BASE_ANSWERS, **answers},
        vcs_ref="HEAD",
        unsafe=True,
        defaults=True,
        quiet=True,
    )
    return dst


def section(readme: str, name: str) -> Block:
    blocks = [b for b in readme_blocks(readme) if b.section == name]
    assert blocks, f"no sh block in section {name!r}"
    return blocks[0]


def check(result: Any, variant: str, block: str) -> None:
    assert result.returncode == 0, f"[{variant}] {block}, line: {result.line}\n{result.output}"


# ---- the Develop block, the reload command, the production block, honcho (live) ---------


@pytest.fixture(scope="module")
def sqlite_user(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A SQLite project as a user has it after the Develop block's `uv sync`."""
    root = tmp_path_factory.mktemp("user")
    project = copy_as_user(root / "shop", database="sqlite")
    env = user_environment(root / "home", user_bin(root / "bin", ["uv"]))
    check(run_line("uv sync", project, env), "sqlite", "Develop")
    return project, env


@pytest.mark.boot
def test_the_develop_block_leaves_a_working_items_api(
    sqlite_user: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    project, env = sqlite_user
    lines = section((project / "README.md").read_text(), "Develop").lines()
    serve = next(line for line in lines if "flask run" in line)
    # Everything before the server, as printed (the migration step among them).
    for line in lines[: lines.index(serve)]:
        check(run_line(line, project, env), "sqlite", f"Develop: {line}")
    port = free_port()
    with serving(serve, project, env | {"FLASK_RUN_PORT": str(port)}, tmp_path / "log", port):
        assert http_get(port, "/items").status == 200
        created = http_request(
            port, "POST", "/items", b'{"name": "tea"}', {"Content-Type": "application/json"}
        )
        assert created.status == 201, created.body
        assert http_get(port, "/readyz").status == 200


@pytest.mark.boot
def test_the_reload_command_reads_dotenv(
    sqlite_user: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    project, env = sqlite_user
    readme = (project / "README.md").read_text()
    command = re.search(r"`(GUNICORN_RELOAD=1 [^`]+)`", readme.replace("\n", " "))
    assert command, "the README's reload command"
    assert "--env-file .env" in command[1]
    port = free_port()
    settings = {"PORT": str(port), "HOST": "127.0.0.1"}
    with serving(command[1], project, env | settings, tmp_path / "log", port) as server:
        assert http_get(port, "/healthz").status == 200
    assert "must be set" not in server.output()


@pytest.mark.boot
def test_the_production_block_runs_without_python_on_path(
    sqlite_user: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """Debian and Ubuntu have python3 and no `python`: the key is made with python3."""
    project, env = sqlite_user
    assert run_line("command -v python", project, env).returncode != 0, "no python here"
    make_key, _, serve = section((project / "README.md").read_text(), "Run in production").lines()
    assert "python3 -c" in make_key
    port = free_port()
    settings = {"PORT": str(port), "HOST": "127.0.0.1"}
    line = f"{make_key} && {serve}"
    # The export and the server in one shell, as a terminal runs them.
    server = start(
        ["bash", "-c", f"{make_key} && exec {serve}"], project, env | settings, tmp_path / "log"
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert http_get(port, "/healthz").status == 200
                break
            except OSError:
                assert server.process.poll() is None, f"{line}\n{server.output()}"
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.2)
    finally:
        stop(server)


@pytest.mark.boot
def test_the_local_procfile_run_serves(
    sqlite_user: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """`honcho start` alone stops `web` once `release` ends: the README runs them in order."""
    project, env = sqlite_user
    readme = (project / "README.md").read_text()
    block = next(b for b in readme_blocks(readme) if "honcho" in b.text)
    release, web = block.lines()
    assert "honcho start release" in release and "honcho start web" in web
    (project / "instance" / "app.sqlite3").unlink(missing_ok=True)
    check(run_line(release, project, env), "sqlite", f"Procfile: {release}")
    port = free_port()
    settings = {"PORT": str(port), "HOST": "127.0.0.1"}
    with serving(web, project, env | settings, tmp_path / "log", port):
        assert http_get(port, "/items").status == 200


# ---- readiness, secrets, the SQLite folder, alembic's lines (live, production) --------


@pytest.fixture(scope="module")
def sqlite_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("prod")
    project = copy_as_user(root / "shop", database="sqlite")
    return project, project_venv(project)


def production_env(bindir: Path, **settings: str) -> dict[str, str]:
    return project_environment(bindir, FLASK_SECRET_KEY=SECRET, **settings)


@pytest.mark.boot
def test_readiness_waits_for_the_migrations_and_alembic_keeps_quiet(
    sqlite_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    project, bindir = sqlite_venv
    port = free_port()
    env = production_env(
        bindir,
        PORT=str(port),
        HOST="127.0.0.1",
        DATABASE_URL=f"sqlite:///{tmp_path}/app.sqlite3",
        LOG_LEVEL="info",
    )
    command = [str(bindir / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"]
    with running(command, project, env, tmp_path / "gunicorn.log", port) as server:
        pending = http_get(port, "/readyz")
        assert pending.status == 503 and b"migrations pending" in pending.body
        migrate = subprocess.run(
            [str(bindir / "flask"), "db", "upgrade"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert migrate.returncode == 0, migrate.stderr
        assert http_get(port, "/readyz").status == 200
        # Newer code migrated the database further (a rolling deploy): still ready.
        with sqlite3.connect(tmp_path / "app.sqlite3") as connection:
            connection.execute("UPDATE alembic_version SET version_num = 'from_newer_code'")
        assert http_get(port, "/readyz").status == 200
    assert "setup plugin" not in server.output()
    assert "Context impl" not in server.output()


def start_and_fail(project: Path, env: dict[str, str], command: list[str]) -> tuple[int, str]:
    result = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=60
    )
    return result.returncode, (result.stdout + result.stderr).strip()


@pytest.mark.boot
@pytest.mark.parametrize("secret", ["...", "x" * 31])
def test_production_refuses_a_weak_secret(sqlite_venv: tuple[Path, Path], secret: str) -> None:
    project, bindir = sqlite_venv
    env = production_env(bindir, PORT=str(free_port()), HOST="127.0.0.1")
    env["FLASK_SECRET_KEY"] = secret
    code, output = start_and_fail(
        project, env, [str(bindir / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"]
    )
    assert code == 4, output
    refusal = [line for line in output.splitlines() if "FLASK_SECRET_KEY" in line]
    assert len(refusal) == 1 and "too short" in refusal[0] and "python3 -c" in refusal[0], output
    assert "Traceback" not in output


@pytest.mark.boot
def test_an_unwritable_database_folder_stops_the_app_in_one_line(
    sqlite_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    """As under systemd's ProtectSystem=strict: the folder is a read-only mount."""
    project, bindir = sqlite_venv
    unshare = require_tool("unshare")
    folder = tmp_path / "read-only"
    folder.mkdir()
    env = production_env(
        bindir,
        PORT=str(free_port()),
        HOST="127.0.0.1",
        DATABASE_URL=f"sqlite:///{folder}/app.sqlite3",
    )
    gunicorn = f"{bindir}/gunicorn -c gunicorn.conf.py wsgi:app"
    script = f"mount --bind -o ro {folder} {folder} && exec {gunicorn}"
    code, output = start_and_fail(project, env, [unshare, "-m", "bash", "-c", script])
    if "mount:" in output and code != 4:
        pytest.skip(f"no private mounts here: {output}")
    assert code == 4, output
    assert "cannot be written" in output and "Read-only file system" in output, output
    assert "Traceback" not in output and "PermissionError" not in output


@pytest.mark.boot
def test_granian_reloads_its_workers_on_sighup(tmp_path: Path) -> None:
    """What the unit's ExecReload sends; the README tells granian users to reload."""
    project = copy_as_user(tmp_path / "shop", server="granian")
    bindir = project_venv(project)
    port = free_port()
    env = production_env(bindir, PORT=str(port), HOST="127.0.0.1", WEB_CONCURRENCY="2")
    command = [str(bindir / "python"), "run_granian.py"]
    with running(command, project, env, tmp_path / "granian.log", port) as server:
        before = http_get(port, "/healthz")
        assert before.status == 200
        workers = _workers(server.pid)
        os.kill(server.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        # granian replaces one worker at a time, and says so for each.
        while server.output().count("Stopped old worker") < 2:
            assert time.monotonic() < deadline, f"workers not replaced:\n{server.output()}"
            time.sleep(0.2)
        # Two new processes (multiprocessing's resource tracker stays).
        assert len(_workers(server.pid) - workers) == 2
        assert http_get(port, "/healthz").status == 200


def _workers(pid: int) -> set[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(child) for child in children}


# ---- the update messages (live) -------------------------------------------------------


@pytest.mark.update
def test_the_update_script_reports_under_its_header_and_commits_without_saying_to(
    tmp_path: Path,
) -> None:
    template = build_template_versions(tmp_path / "template")
    project = copy_project(template, tmp_path / "project")
    result = run_as_user(project, [sys.executable, SCRIPT])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    header = output.index(f"Updating this project from template version {V1} to {V2}")
    assert header < output.index("copier update: no conflicts.") < output.index("Committed on")
    assert "then commit" not in output and "conflict markers (<<<<<<<)" not in output
    assert "copier recopy --trust --defaults" in output


@pytest.mark.quick
def test_the_messages_after_an_update_agree_with_it() -> None:
    assert "then commit" not in report([], [])
    after = COPIER["_message_after_update"]
    assert "Look for conflict markers" not in after and "name any file" in after


# ---- what the text says (quick) ----------------------------------------------------------


VALUE_PLACEHOLDER = re.compile(r"=\.\.\.|\s\.\.\.(\s|$)|=<|YOUR_")


@pytest.mark.quick
@pytest.mark.parametrize(
    "answers",
    [{}, {"database": "sqlite"}, {"database": "postgresql"}, {"server": "granian"}],
    ids=["defaults", "sqlite", "postgresql", "granian"],
)
def test_no_command_holds_a_value_placeholder(copie: Any, answers: dict[str, str]) -> None:
    project = render(copie, **answers)
    lines = [line for b in readme_blocks((project / "README.md").read_text()) for line in b.lines()]
    lines += message_commands(COPIER["_message_after_copy"])
    bad = [line for line in lines if VALUE_PLACEHOLDER.search(line)]
    assert not bad, bad


@pytest.mark.quick
def test_python_is_python3_and_tools_install_on_debian(copie: Any) -> None:
    project = render(copie, database="sqlite")
    texts = {
        "README.md": (REPO / "README.md").read_text(),
        "generated README.md": (project / "README.md").read_text(),
        "after copy": COPIER["_message_after_copy"],
        SCRIPT: (project / SCRIPT).read_text(),
        ".env.example": (project / ".env.example").read_text(),
    }
    for name, text in texts.items():
        assert not re.search(r"(?<!pipx )(?<!uv tool )\bpip install (copier|uv)\b", text), name
        assert not re.search(r"(?<![\w.])(?<!uv run )python -c", text), name
    assert "pipx install uv" in texts["generated README.md"]
    assert "pipx install copier" in texts["README.md"]


@pytest.mark.quick
def test_the_first_commit_comes_before_pre_commit(copie: Any) -> None:
    readme = (render(copie) / "README.md").read_text()
    for text in (section(readme, "Develop").text, COPIER["_message_after_copy"]):
        assert "git add -A && git commit" in text
        assert text.index("git commit") < text.index("pre-commit install")


@pytest.mark.quick
def test_the_host_block_installs_what_it_uses_on_the_distributions_python(copie: Any) -> None:
    project = render(copie, database="sqlite", python_version="3.14")
    host = section((project / "README.md").read_text(), "Deploy on a Linux host")
    installs = [line for line in host.lines() if "apt" in line and "install" in line]
    assert installs and all(" -y " in line for line in installs), installs
    assert all(tool in installs[0].split() for tool in ("git", "curl", "nginx", "python3-venv"))
    assert "python3 -m venv" in host.text
    assert "python3.14" not in host.text, "Debian 12/13 and Ubuntu 24.04 have no python3.14-venv"
    assert "Debian 12" in COPIER["python_version"]["help"]


@pytest.mark.quick
def test_the_sqlite_unit_gives_the_database_a_folder_and_migrates(copie: Any) -> None:
    project = render(copie, database="sqlite")
    unit = (project / "deploy" / "systemd" / "demo-shop.service").read_text()
    assert "StateDirectory=demo-shop" in unit
    assert "Environment=DATABASE_URL=sqlite:////var/lib/demo-shop/app.sqlite3" in unit
    assert "ExecStartPre=/srv/demo-shop/.venv/bin/flask db upgrade" in unit
    assert "ProtectSystem=strict" in unit


@pytest.mark.quick
def test_the_granian_unit_reloads(copie: Any) -> None:
    project = render(copie, server="granian")
    unit = (project / "deploy" / "systemd" / "demo-shop.service").read_text()
    assert "ExecReload=/bin/kill -s HUP $MAINPID" in unit
    assert "systemctl reload" in (project / "README.md").read_text()


@pytest.mark.quick
def test_docker_run_is_read_only(copie: Any) -> None:
    project = render(copie, database="sqlite")
    block = section((project / "README.md").read_text(), "Containers")
    run = next(line for line in block.lines() if line.startswith("docker run"))
    assert "--read-only" in run and "--tmpfs /tmp" in run
    assert "/app/instance" in run, "SQLite writes its folder: a volume there"


@pytest.mark.quick
def test_the_instructor_block_tags_the_fork_and_returns(copie: Any) -> None:
    readme = (REPO / "README.md").read_text()
    first = next(b for b in readme_blocks(readme) if "cp presets/course.yml" in b.text)
    version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert version and f"git tag {version[1]}" in first.text
    assert first.lines()[-1] == "cd ..", "block 2 runs from the folder block 1 started in"
    assert "tag" in readme.split("## Use it for a real project", 1)[1].split("###", 1)[0]


@pytest.mark.container
def test_compose_in_a_fresh_clone_gets_its_env_from_the_readme(tmp_path: Path) -> None:
    """A clone has no .env (git-ignored): the README's lines make one that compose reads."""
    project = copy_as_user(tmp_path / "shop", database="postgresql")
    (project / ".env").unlink()
    env = user_environment(tmp_path / "home", user_bin(tmp_path / "bin", ["grep"]))
    block = next(
        b for b in readme_blocks((project / "README.md").read_text()) if ".env.example" in b.text
    )
    for line in block.lines():
        check(run_line(line, project, env), "postgresql", f"Containers: {line}")
    settings = dotenv_values(project / ".env")
    assert len(settings["FLASK_SECRET_KEY"] or "") == 64
    assert (project / ".env").read_text().count("FLASK_SECRET_KEY=") == 1
    password = settings["POSTGRES_PASSWORD"]
    assert password
    compose = subprocess.run(
        [require_tool("podman-compose"), "config"],
        cwd=project,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert compose.returncode == 0, compose.stdout + compose.stderr
    web = yaml.safe_load(compose.stdout)["services"]["web"]
    assert password in web["environment"]["DATABASE_URL"]
