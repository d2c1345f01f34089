"""A fleet of twelve projects, each generated at 1.0.0 with its own answers (the two presets
among them) and one typical edit, committed, then updated to 2.0.0 by the template's copy of
the script the weekly workflow runs. One test per project, so pytest-xdist spreads the
fleet; each records a row of the session's table (tests/conftest.py).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from harness import REPO
from harness import template_versions as tv
from harness.serving import answers
from harness.venvs import project_venv, run_env, run_project_tests

VIEW = '@bp.get("/hello")\ndef hello() -> str:\n    return "hello from the course"\n'
TEST = """def test_health_says_ok(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
"""
CONFIG = '    "PERMANENT_SESSION_LIFETIME": 3600,  # mine: sessions last an hour\n'
PROSE = "\nOur team's notes: deploys go out on Tuesdays, after the review.\n"
BACKLOG = 'backlog = env_int("GUNICORN_BACKLOG", 4096)  # mine: bursts of clients'
KEEPALIVE = "    keepalive 64;  # mine: more idle connections to the app"
TIMEOUT = "timeout = 120  # mine: the reports endpoint is slow"
DOTENV = "APP_UID=1000  # mine: files written by web-dev belong to me"
# 2.0.0 moves the site file; a migration carries the edit to the new place.
MOVED = {"deploy/nginx/{project_slug}.conf": "deploy/nginx/sites/{project_slug}.conf"}


class Member(NamedTuple):
    answers: dict[str, Any]
    # (file, anchor, text): the text replaces the anchor's one match (a regex) if it ends
    # with "$", else goes after it; no anchor: appended, or the file written; no text: the
    # file deleted. Every line of a text is kept, a deleted file stays deleted.
    edits: list[tuple[str, str | None, str | None]]
    conflicts: tuple[str, ...] = ()  # the conflicts the update is expected to make
    update_args: tuple[str, ...] = ()  # what this user gives the script
    expected: tuple[tuple[str, str], ...] = ()  # (file, line) the update must bring


def preset(name: str) -> dict[str, Any]:
    """A preset's answers, but the Python the tests run on (BASE_ANSWERS')."""
    given = yaml.safe_load((REPO / "presets" / f"{name}.yml").read_text())
    given.pop("python_version", None)
    return given


FLEET = {
    # 2.0.0 adds a view at the end too: git cannot tell which goes first.
    "course-kit: new view": Member(
        preset("course") | {"project_name": "Course Kit"},
        [("{package_name}/views.py", None, "\n\n" + VIEW)],
        conflicts=("course_kit/views.py",),
    ),
    "production: nginx site": Member(
        preset("production") | {"project_name": "Payments"},
        [("deploy/nginx/{project_slug}.conf", "^    keepalive 32;$", KEEPALIVE)],
    ),
    "defaults: config setting": Member(
        {},
        [("{package_name}/config.py", r'^    "SESSION_COOKIE_SECURE": True,\n', CONFIG)],
    ),
    "bare: a test": Member(
        {"with_docker": False, "with_nginx": False, "with_procfile": False, "ci": "none"},
        [("tests/test_mine.py", None, TEST)],
    ),
    "granian: readme prose": Member(
        {"project_name": "Fast Shop", "server": "granian"}, [("README.md", r"\A# .*\n", PROSE)]
    ),
    "sqlite: gunicorn setting": Member(
        {"project_name": "Notes", "database": "sqlite"},
        [("gunicorn.conf.py", "^backlog = .*$", BACKLOG)],
    ),
    "other-names: dockerfile line": Member(
        {"project_name": "Inventory API", "package_name": "inventory"},
        [("Dockerfile", r"^WORKDIR /app\n", "ENV TZ=Europe/Berlin\n")],
    ),
    "big-uploads: added dependency": Member(
        {"project_name": "Uploads", "max_body_size": "50m", "domain": "files.example.org"},
        [
            ("requirements.txt", None, "requests==2.32.3"),
            ("pyproject.toml", r'^    "flask>=3\.1,<4",\n', '    "requests>=2.32",\n'),
        ],
    ),
    # A file 2.0.0 changes: the user's deletion must win over the new lines.
    "postgres-k8s: deleted file": Member(
        {"project_name": "Ledger", "database": "postgresql", "with_k8s": True},
        [("Dockerfile", None, None)],
    ),
    # The change is the answer given to the update.
    "docker-later: option turned on": Member(
        {"project_name": "Later", "with_docker": False, "with_nginx": False},
        [],
        update_args=("--", "--data", "with_docker=true"),
        expected=((".copier-answers.yml", "with_docker: true"), ("Dockerfile", "FROM ")),
    ),
    # .env is git-ignored: the update must not even look.
    "no-ci: edited dotenv": Member(
        {"project_name": "Quiet", "ci": "none"}, [(".env", None, DOTENV)]
    ),
    # 2.0.0 changes the same line.
    "same-lines: same lines as the template": Member(
        {"project_name": "Reports"},
        [("gunicorn.conf.py", "^timeout = .*$", TIMEOUT)],
        conflicts=("gunicorn.conf.py",),
    ),
}


def make_edits(project: Path, member: Member) -> tuple[list[tuple[str, str]], list[str]]:
    """The member's edits made; the (file, line) the update must keep, the files deleted."""
    names, kept, deleted = answers(project), list(member.expected), []
    for name, anchor, text in member.edits:
        path = project / name.format(**names)
        if text is None:
            path.unlink()
            deleted.append(name)
        elif anchor is None:
            tv.append(path, text) if path.exists() else path.write_text(text)
        elif anchor.endswith("$"):
            tv.edit(path, anchor, text)
        else:
            tv.insert_after(path, anchor, text)
        at = MOVED.get(name, name).format(**names)
        kept += [(at, line) for line in (text or "").splitlines() if line.strip()]
    return kept, deleted


def has_line(path: Path, line: str) -> bool:
    return path.is_file() and line in path.read_text()


@pytest.mark.parametrize("name", FLEET)
def test_fleet_member_updates_without_losing_work(
    name: str, template: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    member, (project_name, change) = FLEET[name], name.split(": ")
    project = tv.copy_project(template, tmp_path / project_name, **member.answers)
    # The pins as generated: one shared, cached venv per set of pins (the user's added
    # dependency is declared, not imported).
    env = run_env(project_venv(project))
    kept, deleted = make_edits(project, member)
    if tv.git(project, "status", "--porcelain"):  # .env and answers are not committed
        tv.commit_all(project, f"my change: {change}")

    body_file = tmp_path / "pull-request.md"
    started = time.monotonic()
    output = tv.update_script(project, "--body-file", str(body_file), *member.update_args)
    seconds = time.monotonic() - started

    # On its own branch, one commit on top of the user's, the tree clean.
    assert tv.git(project, "branch", "--show-current").strip() == f"template-update/{tv.V2}"
    assert tv.git(project, "rev-list", "--count", "main..HEAD").strip() == "1"
    assert tv.git(project, "status", "--porcelain") == ""
    assert answers(project)["_commit"] == tv.V2
    changed = tv.git(project, "diff", "--name-only", "--no-renames", "main", "HEAD").split()

    # Every conflict named: the files that hold markers (or .rej files) are exactly
    # those listed in the commit and in the pull request text.
    body = body_file.read_text()
    in_tree = sorted(tv.marker_files(project) + [n for n in changed if n.endswith(".rej")])
    listed = tv.git(project, "log", "-1", "--format=%B").partition("Conflicts to resolve:\n")[2]
    assert [line.strip() for line in listed.splitlines() if line.strip()] == in_tree, output
    section = re.search(r"^## Conflicts.*?\n(.*?)(?=^## )", body, re.MULTILINE | re.DOTALL)
    assert section is not None, body
    assert re.findall(r"^- `([^`]+)`$", section[1], re.MULTILINE) == in_tree, body
    assert in_tree == sorted(member.conflicts), "the conflicts this change was expected to make"
    # Only this release's entries in the text, none of the older ones.
    assert "### 2.0.0 (a test release)" in body and "### 0.1.0" not in body

    lost = [f"{file}: {line}" for file, line in kept if not has_line(project / file, line)]
    lost += [file for file in deleted if (project / file).exists()]
    total = len(kept) + len(deleted)
    suite = run_project_tests(project, env)
    row = {
        "project": project_name,
        "change": change,
        "files changed": len(changed),
        "conflicts": ", ".join(in_tree) or "-",
        "user lines kept": f"{total - len(lost)}/{total}",
        # Markers in a Python file the tests import fail them: expected until resolved.
        "own tests": "pass" if suite.returncode == 0 else "fail" if in_tree else "FAIL",
        "update s": f"{seconds:.1f}",
    }
    record_property("fleet_row", json.dumps(row))
    assert lost == [], f"user lines lost in {name}"
    if not in_tree:
        assert suite.returncode == 0, suite.stdout + suite.stderr
