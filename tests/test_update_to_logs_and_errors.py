"""Updating a real 0.1.0 project to this release: the user's edits stay, the new files arrive.

A template repo of its own gets two tags: 0.1.0 (this repo's own tag, the
first release) and 0.2.0 (the working tree, with logs.py, the error pages,
the security headers and CSRF). A project generated from 0.1.0, committed and
edited as a user would, is updated with the command its README gives; then its
own tests run, and it serves under gunicorn in production mode.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.project_env import run_project_tests
from tests.helpers.servers import http_get
from tests.helpers.stack import SECRET, gunicorn_stack
from tests.helpers.template_versions import (
    RELEASED,
    append,
    build_release_versions,
    commit_all,
    copier_update,
    copy_project,
    edit,
    insert_after,
    marker_files,
    version_in_the_making,
)

pytestmark = pytest.mark.update

APP = ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]

OLD, NEW = RELEASED, version_in_the_making()
PACKAGE = "demo_shop"

USER_VIEW = '\n\n@bp.get("/mine")\ndef mine() -> str:\n    return "a view of my own"\n'
USER_WSGI = "# mine: started by our own process manager"
USER_README = "Internal notes: this shop sells only tea."
USER_STYLE = "body { background: papayawhip; }  /* mine */\n"
USER_HEADING = "<h1>Tea, and nothing else</h1>"

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
def updated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    work = tmp_path_factory.mktemp("update-0.1.0")
    template = build_release_versions(work / "copier-flask")
    project = copy_project(template, work / "project", vcs_ref=OLD)
    assert not (project / PACKAGE / "logs.py").exists(), "0.1.0 had no logs.py"

    # The user's own work, committed.
    append(project / PACKAGE / "views.py", USER_VIEW)
    # (Not gunicorn.conf.py: 0.2.0 rewrote its comments, so an edit there is
    # a conflict to resolve, which tests/test_update.py covers.)
    append(project / "wsgi.py", USER_WSGI)
    # Under the title: 0.2.0 adds sections at the end, where an appended note
    # would be a conflict (tests/test_update.py covers those).
    insert_after(project / "README.md", r"^# Demo Shop$", f"\n\n{USER_README}")
    (project / PACKAGE / "static" / "style.css").write_text(USER_STYLE)
    edit(project / PACKAGE / "templates" / "index.html", r"^\s*<h1>.*</h1>$", USER_HEADING)
    commit_all(project, "my changes")

    result = copier_update(project, vcs_ref=NEW)
    assert result.returncode == 0, result.stdout + result.stderr
    return project, result.stdout + result.stderr


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
    missing = [name for name in NEW_FILES if not (project / name).is_file()]
    assert missing == []
    factory = (project / PACKAGE / "__init__.py").read_text()
    assert "logs.init_app(app)" in factory and "security.init_app(app)" in factory
    conf = (project / "gunicorn.conf.py").read_text()
    assert "logconfig_dict" in conf and "access_log_format" in conf
    assert "flask-wtf==" in (project / "requirements.txt").read_text()
    assert (
        "proxy_set_header X-Request-ID $request_id;"
        in (project / "deploy/nginx/include/proxy.conf").read_text()
    )


def test_the_updated_project_passes_its_tests_and_serves(
    updated: tuple[Path, str], run_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    project, _ = updated
    suite = run_project_tests(project, run_env())
    assert suite.returncode == 0, suite.stdout + suite.stderr

    with gunicorn_stack(APP, project, run_env(FLASK_SECRET_KEY=SECRET), tmp_path) as stack:
        mine = http_get(stack.port, "/mine")
        missing = http_get(stack.port, "/nowhere")
    assert (mine.status, mine.body) == (200, b"a view of my own")
    assert mine.headers["x-request-id"] and "content-security-policy" in mine.headers
    assert missing.status == 404 and b"request id" in missing.body
