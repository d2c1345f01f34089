"""A fleet of twelve projects updated from one template release, the way the
weekly workflow does it.

Each project is generated at 1.0.0 with its own answers (the two presets
among them), gets one typical edit of its own, is committed, and is updated to
2.0.0 (harness/template_versions.py) by the very script the generated workflow
runs: `.github/scripts/update_from_template.py`, taken from the template. Every
project is one test, so pytest-xdist spreads the fleet over the cores; each
records a row, and the session prints them as one table (tests/conftest.py).

Each test asserts what the fleet as a whole must show: none of the user's lines
lost, every conflict named in git (the update commit) and in the pull request
text, and the project's own tests passing whenever there was no conflict.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import REPO
from harness.serving import answers
from harness.template_versions import (
    UPDATE_SCRIPT,
    V2,
    append,
    commit_all,
    copy_project,
    edit,
    git,
    insert_after,
    marker_files,
    run_as_user,
    succeeded,
)
from harness.venvs import project_venv, run_env, run_project_tests


@dataclass
class Kept:
    """What of the user's change the update must keep: lines in files (by their
    path after the update) and files that stay deleted; and the `conflicts` it
    is expected to make, and the `update_args` this user gives the script."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    conflicts: tuple[str, ...] = ()
    update_args: tuple[str, ...] = ()

    def count(self, project: Path) -> int:
        found = sum(
            (project / name).is_file() and line in (project / name).read_text()
            for name, line in self.lines
        )
        return found + sum(not (project / name).exists() for name in self.absent)

    @property
    def total(self) -> int:
        return len(self.lines) + len(self.absent)


# ---- the twelve user changes: each edits a project as its owner would ----------


def new_view(project: Path, package: str) -> Kept:
    view = '@bp.get("/hello")\ndef hello() -> str:\n    return "hello from the course"\n'
    append(project / package / "views.py", "\n\n" + view)
    # 2.0.0 adds a view at the end too: git cannot tell which goes first.
    lines = [(f"{package}/views.py", line) for line in view.splitlines()]
    return Kept(lines, conflicts=(f"{package}/views.py",))


def config_setting(project: Path, package: str) -> Kept:
    line = '    "PERMANENT_SESSION_LIFETIME": 3600,  # mine: sessions last an hour'
    anchor = r'^    "SESSION_COOKIE_SECURE": True,\n'
    insert_after(project / package / "config.py", anchor, line + "\n")
    return Kept([(f"{package}/config.py", line)])


def a_test(project: Path, package: str) -> Kept:
    test = (
        "def test_health_says_ok(client):\n"
        '    assert client.get("/healthz").get_json() == {"status": "ok"}\n'
    )
    (project / "tests" / "test_mine.py").write_text(test)
    return Kept([("tests/test_mine.py", line) for line in test.splitlines()])


def readme_prose(project: Path, package: str) -> Kept:
    prose = "Our team's notes: deploys go out on Tuesdays, after the review."
    insert_after(project / "README.md", r"\A# .*\n", f"\n{prose}\n")
    return Kept([("README.md", prose)])


def gunicorn_setting(project: Path, package: str) -> Kept:
    line = 'backlog = env_int("GUNICORN_BACKLOG", 4096)  # mine: bursts of clients'
    edit(project / "gunicorn.conf.py", r"^backlog = .*$", line)
    return Kept([("gunicorn.conf.py", line)])


def dockerfile_line(project: Path, package: str) -> Kept:
    line = "ENV TZ=Europe/Berlin"
    insert_after(project / "Dockerfile", r"^WORKDIR /app\n", line + "\n")
    return Kept([("Dockerfile", line)])


def nginx_site(project: Path, package: str) -> Kept:
    slug = answers(project)["project_slug"]
    line = "    keepalive 64;  # mine: more idle connections to the app"
    edit(project / f"deploy/nginx/{slug}.conf", r"^    keepalive 32;$", line)
    # 2.0.0 moves the site file; a migration carries the edit to the new place.
    return Kept([(f"deploy/nginx/sites/{slug}.conf", line)])


def added_dependency(project: Path, package: str) -> Kept:
    pin, spec = "requests==2.32.3", '    "requests>=2.32",'
    append(project / "requirements.txt", pin)
    insert_after(project / "pyproject.toml", r'^    "flask>=3\.1,<4",\n', spec + "\n")
    return Kept([("requirements.txt", pin), ("pyproject.toml", spec)])


def deleted_file(project: Path, package: str) -> Kept:
    # A file 2.0.0 changes: the user's deletion must win over the new lines.
    (project / "Dockerfile").unlink()
    return Kept(absent=["Dockerfile"])


def option_turned_on(project: Path, package: str) -> Kept:
    # The change is the answer given to the update.
    lines = [(".copier-answers.yml", "with_docker: true"), ("Dockerfile", "FROM ")]
    return Kept(lines, update_args=("--", "--data", "with_docker=true"))


def edited_dotenv(project: Path, package: str) -> Kept:
    line = "APP_UID=1000  # mine: files written by web-dev belong to me"
    append(project / ".env", line)  # git-ignored: the update must not even look
    return Kept([(".env", line)])


def same_lines_as_the_template(project: Path, package: str) -> Kept:
    line = "timeout = 120  # mine: the reports endpoint is slow"
    edit(project / "gunicorn.conf.py", r"^timeout = .*$", line)  # 2.0.0 changes it too
    return Kept([("gunicorn.conf.py", line)], conflicts=("gunicorn.conf.py",))


def preset(name: str) -> dict[str, Any]:
    """A preset's answers, but the Python the tests run on (BASE_ANSWERS')."""
    given = yaml.safe_load((REPO / "presets" / f"{name}.yml").read_text())
    given.pop("python_version", None)
    return given


# name: (answers, change)
FLEET: dict[str, tuple[dict[str, Any], Callable[[Path, str], Kept]]] = {
    "course-kit": (preset("course") | {"project_name": "Course Kit"}, new_view),
    "production": (preset("production") | {"project_name": "Payments"}, nginx_site),
    "defaults": ({}, config_setting),
    "bare": (
        {"with_docker": False, "with_nginx": False, "with_procfile": False, "ci": "none"},
        a_test,
    ),
    "granian": ({"project_name": "Fast Shop", "server": "granian"}, readme_prose),
    "sqlite": ({"project_name": "Notes", "database": "sqlite"}, gunicorn_setting),
    "other-names": (
        {"project_name": "Inventory API", "package_name": "inventory"},
        dockerfile_line,
    ),
    "big-uploads": (
        {"project_name": "Uploads", "max_body_size": "50m", "domain": "files.example.org"},
        added_dependency,
    ),
    "postgres-k8s": (
        {"project_name": "Ledger", "database": "postgresql", "with_k8s": True},
        deleted_file,
    ),
    "docker-later": (
        {"project_name": "Later", "with_docker": False, "with_nginx": False},
        option_turned_on,
    ),
    "no-ci": ({"project_name": "Quiet", "ci": "none"}, edited_dotenv),
    "same-lines": ({"project_name": "Reports"}, same_lines_as_the_template),
}


def pull_request_conflicts(body: str) -> list[str]:
    """The files listed under the pull request text's "Conflicts" heading."""
    section = re.search(r"^## Conflicts.*?\n(.*?)(?=^## )", body, re.MULTILINE | re.DOTALL)
    assert section is not None, body
    return re.findall(r"^- `([^`]+)`$", section[1], re.MULTILINE)


def commit_conflicts(project: Path) -> list[str]:
    """The files the update commit's message names as conflicts."""
    message = git(project, "log", "-1", "--format=%B")
    _, _, listed = message.partition("Conflicts to resolve:\n")
    return [line.strip() for line in listed.splitlines() if line.strip()]


@pytest.mark.parametrize("name", FLEET)
def test_fleet_member_updates_without_losing_work(
    name: str, template: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    given, change = FLEET[name]
    project = copy_project(template, tmp_path / name, **given)
    # The pins as generated: one shared, cached venv per set of pins (the
    # user's added dependency is declared, not imported).
    env = run_env(project_venv(project))
    kept = change(project, answers(project)["package_name"])
    if git(project, "status", "--porcelain"):  # .env and answers are not committed
        commit_all(project, f"my change: {change.__name__}")

    body_file = tmp_path / "pull-request.md"
    started = time.monotonic()
    command = [sys.executable, str(UPDATE_SCRIPT), "--body-file", str(body_file)]
    output = succeeded(run_as_user(project, [*command, *kept.update_args]))
    seconds = time.monotonic() - started

    # On its own branch, one commit on top of the user's, the tree clean.
    assert git(project, "branch", "--show-current").strip() == f"template-update/{V2}"
    assert git(project, "rev-list", "--count", "main..HEAD").strip() == "1"
    assert git(project, "status", "--porcelain") == ""
    assert answers(project)["_commit"] == V2
    changed = git(project, "diff", "--name-only", "--no-renames", "main", "HEAD").split()

    # Every conflict named: the files that hold markers (or .rej files) are
    # exactly those listed in the commit and in the pull request text.
    body = body_file.read_text()
    rejected = [name for name in changed if name.endswith(".rej")]
    in_tree = sorted(marker_files(project) + rejected)
    assert commit_conflicts(project) == in_tree, output
    assert pull_request_conflicts(body) == in_tree, body
    assert in_tree == sorted(kept.conflicts), "the conflicts this change was expected to make"
    # Only this release's entries in the text, none of the older ones.
    assert "### 2.0.0 (a test release)" in body
    assert "### 0.1.0" not in body

    lines_kept = kept.count(project)
    suite = run_project_tests(project, env)
    row = {
        "project": name,
        "change": change.__name__.replace("_", " "),
        "files changed": len(changed),
        "conflicts": ", ".join(in_tree) or "-",
        "user lines kept": f"{lines_kept}/{kept.total}",
        # Markers in a Python file the tests import fail them: expected until resolved.
        "own tests": "pass" if suite.returncode == 0 else "fail" if in_tree else "FAIL",
        "update s": f"{seconds:.1f}",
    }
    record_property("fleet_row", json.dumps(row))

    assert lines_kept == kept.total, f"user lines lost in {name}"
    if not in_tree:
        assert suite.returncode == 0, suite.stdout + suite.stderr
