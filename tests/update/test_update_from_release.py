"""Updating a real 0.1.0 project to this release: what its users will get.

The template repo (the `released` fixture) has 0.1.0 (this repo's first
release, by commit) and the working tree tagged with pyproject.toml's version.
A project generated from 0.1.0, committed and edited as a user would, is
updated with the command its README gives: the user's edits stay, the new files
arrive (logs, error pages, security headers, CSRF, the lock, the update
workflow), its own tests pass and it serves under gunicorn in production mode;
the CHANGELOG's "By hand" commands, run as printed, move a user's own
dependency into the lock.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from harness import REPO, venvs
from harness.serving import serve
from harness.template_versions import (
    GIT_ENV,
    RELEASED,
    UPDATE_SCRIPT,
    append,
    commit_all,
    copier_update,
    copy_project,
    edit,
    git,
    marker_files,
    run_as_user,
    run_shell,
    succeeded,
    version_in_the_making,
)
from harness.tools import require_tool

NEW = version_in_the_making()
PACKAGE = "demo_shop"
WORKFLOW = ".github/workflows/template-update.yml"

USER_VIEW = '\n\n@bp.get("/mine")\ndef mine() -> str:\n    return "a view of my own"\n'
USER_WSGI = "# mine: started by our own process manager"
USER_README = "Internal notes: this shop sells only tea."
USER_STYLE = "body { background: papayawhip; }  /* mine */\n"
USER_HEADING = "<h1>Tea, and nothing else</h1>"
USER_REQUIREMENT = "requests==2.32.3"  # as the CHANGELOG's example names it

NEW_FILES = [
    f"{PACKAGE}/logs.py",
    f"{PACKAGE}/errors.py",
    f"{PACKAGE}/security.py",
    f"{PACKAGE}/static_files.py",
    f"{PACKAGE}/templates/base.html",
    f"{PACKAGE}/templates/error.html",
    f"{PACKAGE}/static/favicon.svg",
    "deploy/nginx/include/headers.conf",
    "deploy/nginx/errors/413.html",
    "tests/test_errors.py",
    "tests/test_logs.py",
    "tests/test_security.py",
    f"{PACKAGE}/metrics.py",
    f"{PACKAGE}/error_reports.py",
    "deploy/nginx/include/https.conf",
    "compose.https.yaml",
    "tests/test_watch.py",
]


@pytest.fixture(scope="module")
def updated(released: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    project = copy_project(
        released, tmp_path_factory.mktemp("from-0.1.0") / "project", vcs_ref=RELEASED
    )
    assert not (project / PACKAGE / "logs.py").exists(), "0.1.0 had no logs.py"

    # The user's own work, committed, where 0.2.0 changed nothing near it
    # (tests/update/test_update.py covers conflicts).
    append(project / PACKAGE / "views.py", USER_VIEW)
    append(project / "wsgi.py", USER_WSGI)
    edit(project / "README.md", r"^# Demo Shop$", f"# Demo Shop\n\n{USER_README}")
    (project / PACKAGE / "static" / "style.css").write_text(USER_STYLE)
    edit(project / PACKAGE / "templates" / "index.html", r"^\s*<h1>.*</h1>$", USER_HEADING)
    commit_all(project, "my changes")
    return project, succeeded(copier_update(project, vcs_ref=NEW))


def test_the_user_edits_survive(updated: tuple[Path, str]) -> None:
    project, output = updated
    assert marker_files(project) == [], output
    assert USER_VIEW.strip() in (project / PACKAGE / "views.py").read_text()
    assert USER_WSGI in (project / "wsgi.py").read_text()
    assert USER_README in (project / "README.md").read_text()
    # The page and stylesheet are the user's (_skip_if_exists): never rewritten.
    assert (project / PACKAGE / "static" / "style.css").read_text() == USER_STYLE
    assert USER_HEADING in (project / PACKAGE / "templates" / "index.html").read_text()


def test_the_new_files_and_settings_arrive(updated: tuple[Path, str]) -> None:
    project, _ = updated
    assert [name for name in NEW_FILES if not (project / name).is_file()] == []
    factory = (project / PACKAGE / "__init__.py").read_text()
    assert "logs.init_app(app)" in factory and "security.init_app(app)" in factory
    conf = (project / "gunicorn.conf.py").read_text()
    assert "logconfig_dict" in conf and "access_log_format" in conf
    assert "flask-wtf==" in (project / "requirements.txt").read_text()
    proxy = (project / "deploy/nginx/include/proxy.conf").read_text()
    assert "proxy_set_header X-Request-ID $request_id;" in proxy


def test_the_updated_project_passes_its_tests_and_serves(
    updated: tuple[Path, str], venv_bin: Path, tmp_path: Path
) -> None:
    project, _ = updated
    succeeded(venvs.run_project_tests(project, venvs.run_env(venv_bin)))

    with serve(project, tmp_path, venvs.production_env(venv_bin)) as served:
        mine, missing = served.get("/mine"), served.get("/nowhere")
    assert (mine.status, mine.body) == (200, b"a view of my own")
    assert mine.headers["x-request-id"] and "content-security-policy" in mine.headers
    assert missing.status == 404 and b"request id" in missing.body


def by_hand_commands() -> list[str]:
    """The shell block under this version's "By hand" in CHANGELOG.md."""
    changelog = (REPO / "CHANGELOG.md").read_text()
    section = changelog.split(f"## {NEW}", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section.split("### By hand", 1)[1], flags=re.DOTALL)
    assert block, "no shell block under By hand"
    lines = [line.strip() for line in block[1].splitlines()]
    return [line.split("  #")[0].strip() for line in lines if line]


def test_own_dependency_survives_the_update_and_moves_to_the_lock(
    released: Path, tmp_path: Path
) -> None:
    project = copy_project(released, tmp_path / "demo-shop", vcs_ref=RELEASED)
    assert not (project / "uv.lock").exists()
    # What 0.1.0's requirements.txt told users to do: add the pin there.
    append(project / "requirements.txt", USER_REQUIREMENT)
    commit_all(project, "my dependency")

    succeeded(copier_update(project, vcs_ref=NEW))
    # Left in place: the template rewrote the file, so the user's line is in
    # a conflict block, on their side, for them to move.
    assert USER_REQUIREMENT in (project / "requirements.txt").read_text().splitlines()
    assert marker_files(project) == ["requirements.txt"]
    assert (project / "uv.lock").is_file()

    uv = require_tool("uv")
    env = venvs.uv_env(**GIT_ENV)
    env["PATH"] = f"{Path(uv).parent}:{env['PATH']}"
    commands = by_hand_commands()
    assert commands[0].startswith("uv add ") and USER_REQUIREMENT in commands[0]
    for command in commands:
        run_shell(command, project, env)

    assert f'"{USER_REQUIREMENT}"' in (project / "pyproject.toml").read_text()
    lock = (project / "uv.lock").read_text()
    assert re.search(r'^name = "requests"\nversion = "2\.32\.3"$', lock, flags=re.MULTILINE)
    assert f"{USER_REQUIREMENT} \\" in (project / "requirements.txt").read_text().splitlines()
    assert marker_files(project) == []
    run_shell(f"{uv} lock --check", project, env)
    assert git(project, "status", "--porcelain").strip() == "", "everything is committed"


def test_the_update_workflow_reaches_0_1_0_projects_with_this_changelog(
    released: Path, tmp_path: Path
) -> None:
    project = copy_project(released, tmp_path / "project", vcs_ref=RELEASED)
    assert not (project / WORKFLOW).exists()
    # The project has no script yet: the one it is about to get does the update.
    command = [sys.executable, str(UPDATE_SCRIPT), "--body-file", str(tmp_path / "body.md")]
    succeeded(run_as_user(project, command))
    assert (project / WORKFLOW).is_file(), "update_workflow's default reaches old projects"
    assert "update_workflow: true" in (project / ".copier-answers.yml").read_text()
    body = (tmp_path / "body.md").read_text()
    assert f"### {NEW} " in body and "### 0.1.0" not in body
    assert "Update pull requests" in body, "this CHANGELOG's entry for the new version"
