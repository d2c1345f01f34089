"""`copier update` never loses a user's work: scenario tests on real git repos.

Every test generates a project from template 1.0.0 (the working tree), commits
it, edits it as a user would, commits again and updates it to 2.0.0 (the
working tree plus the changes in harness/template_versions.py) with the command
the generated README gives. move_path.py's own cases are in
tests/quick/test_move_path.py.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import venvs
from harness.serving import answers, serve
from harness.template_versions import (
    V1,
    V2,
    V2_DOCKERFILE,
    V2_GUNICORN_TAIL,
    V2_NGINX_TAIL,
    V2_PROCFILE,
    V2_STYLE,
    V2_TIMEOUT,
    V2_VIEW,
    append,
    commit_all,
    conflict_files,
    copier_update,
    copy_project,
    edit,
    git,
    insert_after,
    marker_files,
    run_copier,
    snapshot,
    succeeded,
    take_ours,
)

PACKAGE = "demo_shop"  # from BASE_ANSWERS' project name
NGINX_AT_V1 = "deploy/nginx/demo-shop.conf"
NGINX_AT_V2 = "deploy/nginx/sites/demo-shop.conf"

# ---- the user's edits in the main scenario --------------------------------------
# A new default, the way the file sets its others (the project's own test_server.py
# still sets GUNICORN_TIMEOUT for its stuck-request test).
USER_TIMEOUT = 'timeout = env_int("GUNICORN_TIMEOUT", 120)  # mine: the reports endpoint is slow'
USER_GUNICORN_HEAD = "# mine: tuned for the reports service"
USER_VIEW = '\n\n@bp.get("/mine")\ndef mine() -> str:\n    return "a view of my own"\n'
USER_README = "Internal notes: this shop sells only tea."
USER_REQUIREMENT = "requests==2.32.3"
USER_STYLE = "body { background: papayawhip; }  /* mine */\n"


@dataclass
class Updated:
    project: Path
    output: str
    dotenv: tuple[bytes, int]  # .env's bytes and mtime before the update

    def read(self, name: str) -> str:
        return (self.project / name).read_text()


@pytest.fixture(scope="module")
def main_update(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Updated:
    """The main scenario: a project at 1.0.0 with a user's typical edits,
    committed, then updated to 2.0.0. Tests only read it."""
    project = copy_project(template, tmp_path_factory.mktemp("main") / "demo-shop")
    gunicorn = project / "gunicorn.conf.py"
    # The same line as the template's change (a conflict), and a far one (none).
    edit(gunicorn, r"^timeout = .*$", USER_TIMEOUT)
    gunicorn.write_text(f"{USER_GUNICORN_HEAD}\n{gunicorn.read_text()}")
    insert_after(project / PACKAGE / "views.py", r"^bp = Blueprint\(.*\)\n", USER_VIEW)
    insert_after(project / "README.md", r"\A# .*\n", f"\n{USER_README}\n")
    append(project / "requirements.txt", USER_REQUIREMENT)
    (project / "Procfile").unlink()  # an optional file this user does not want
    (project / PACKAGE / "static" / "style.css").write_text(USER_STYLE)
    commit_all(project, "my edits")
    dotenv = project / ".env"
    before = (dotenv.read_bytes(), dotenv.stat().st_mtime_ns)
    return Updated(project, succeeded(copier_update(project)), before)


# ---- the main scenario -----------------------------------------------------------


def test_every_user_edit_is_still_there_at_the_new_version(main_update: Updated) -> None:
    assert f"Updating to template version {V2}" in main_update.output
    assert answers(main_update.project)["_commit"] == V2
    gunicorn = main_update.read("gunicorn.conf.py")
    assert gunicorn.startswith(USER_GUNICORN_HEAD + "\n")
    assert USER_TIMEOUT in gunicorn, "the conflicting line is kept, never overwritten"
    assert USER_VIEW.strip() in main_update.read(f"{PACKAGE}/views.py")
    assert USER_README in main_update.read("README.md")
    assert USER_REQUIREMENT in main_update.read("requirements.txt").splitlines()
    assert not (main_update.project / "Procfile").exists(), "a deleted file stays deleted"


def test_the_template_changes_arrive(main_update: Updated) -> None:
    assert V2_VIEW in main_update.read(f"{PACKAGE}/views.py")
    gunicorn = main_update.read("gunicorn.conf.py")
    assert gunicorn.rstrip().endswith(V2_GUNICORN_TAIL), "merged next to the user's edits"
    assert V2_TIMEOUT in gunicorn, "offered inside the conflict"
    assert main_update.read("Dockerfile").rstrip().endswith(V2_DOCKERFILE)
    # The moved file the user never edited: at its new place, the old one gone.
    assert V2_NGINX_TAIL in main_update.read(NGINX_AT_V2)
    assert not (main_update.project / NGINX_AT_V1).exists()


def test_a_conflict_is_marked_and_named_never_overwritten(main_update: Updated) -> None:
    block = (
        f"<<<<<<< before updating\n{USER_TIMEOUT}\n=======\n{V2_TIMEOUT}\n>>>>>>> after updating\n"
    )
    assert block in main_update.read("gunicorn.conf.py")
    # Only the file both changed; git holds it as unmerged so it cannot be
    # committed unresolved by accident.
    assert marker_files(main_update.project) == ["gunicorn.conf.py"]
    assert conflict_files(main_update.project) == ["gunicorn.conf.py"]
    # The command's own output names it (hooks/migrations/report_update.py)...
    assert "1 file(s) with conflicts" in main_update.output
    assert "\n  gunicorn.conf.py\n" in main_update.output
    # ...and what it removed: the moved file's old path.
    assert f"\n  {NGINX_AT_V1}\n" in main_update.output


def test_user_owned_files_are_untouched_and_copy_tasks_do_not_run(main_update: Updated) -> None:
    dotenv = main_update.project / ".env"
    assert (dotenv.read_bytes(), dotenv.stat().st_mtime_ns) == main_update.dotenv
    # hooks/write_dotenv.py prints on every run ("Wrote ..." or "Kept the
    # existing ..."); on update Copier runs tasks three times (old copy, new
    # copy, project), so silence proves the copy-only guard held each time.
    assert ".env" not in main_update.output
    # _skip_if_exists: the template changed the stylesheet, the user's stays.
    # (This project deleted a file, the case where answers in the patterns
    # would not render: see copier.yml.)
    assert main_update.read(f"{PACKAGE}/static/style.css") == USER_STYLE
    assert V2_STYLE not in main_update.read(f"{PACKAGE}/static/style.css")


def test_the_updated_project_passes_its_tests_and_serves(
    main_update: Updated, venv_bin: Path, tmp_path: Path
) -> None:
    # Resolve the conflict as this user would (keep theirs), on a copy.
    project = tmp_path / "demo-shop"
    shutil.copytree(main_update.project, project)
    gunicorn = project / "gunicorn.conf.py"
    gunicorn.write_text(take_ours(gunicorn.read_text()))
    assert marker_files(project) == []
    succeeded(venvs.run_project_tests(project, venvs.run_env(venv_bin)))

    with serve(project, tmp_path / "logs", venvs.production_env(venv_bin)) as served:
        assert served.get("/healthz").status == served.get("/").status == 200
        assert served.get("/mine").body == b"a view of my own"
        assert served.get("/v2").body == b"added in v2"


# ---- other scenarios, each its own project ----------------------------------------


def test_turning_an_option_on_adds_its_files_and_off_removes_them(
    template: Path, tmp_path: Path
) -> None:
    project = copy_project(template, tmp_path / "demo-shop", with_docker=False)
    assert not (project / "Dockerfile").exists()

    succeeded(copier_update(project, "--data", "with_docker=true"))
    assert (project / "Dockerfile").read_text().rstrip().endswith(V2_DOCKERFILE)
    assert (project / ".dockerignore").is_file()
    assert answers(project)["with_docker"] is True
    commit_all(project, "docker on")

    # Off again, at the same version, after the user edited the Dockerfile:
    # Copier deletes the option's files, edited or not (the generated README
    # says so). The edit is not lost: the last commit has it, and the update
    # names the file.
    append(project / "Dockerfile", "# mine: a build note")
    commit_all(project, "my Dockerfile note")
    off = succeeded(copier_update(project, "--data", "with_docker=false"))
    assert not (project / "Dockerfile").exists()
    assert not (project / ".dockerignore").exists()
    assert "\n  Dockerfile\n" in off
    assert "# mine: a build note" in git(project, "show", "HEAD:Dockerfile")


def test_a_moved_file_keeps_the_users_edits_at_its_new_place(
    template: Path, tmp_path: Path
) -> None:
    project = copy_project(template, tmp_path / "demo-shop")
    mine = "# mine: the reports team proxies through this host"
    nginx = project / NGINX_AT_V1
    nginx.write_text(f"{mine}\n{nginx.read_text()}")
    commit_all(project, "my nginx note")

    output = succeeded(copier_update(project))
    moved = (project / NGINX_AT_V2).read_text()
    assert moved.startswith(mine + "\n"), "the user's edit moved with the file"
    assert moved.rstrip().endswith(V2_NGINX_TAIL), "and the template's change merged in"
    assert not (project / NGINX_AT_V1).exists()
    assert marker_files(project) == [] and conflict_files(project) == []
    # 2.0.0 changes the Procfile too: a user who kept it gets the change (the
    # main scenario's user deleted it, and it must stay deleted).
    assert (project / "Procfile").read_text().rstrip().endswith(V2_PROCFILE)
    # The migration ran exactly once, and merged three ways (with a real base).
    runs = re.findall(r"^move_path: .*$", output, re.MULTILINE)
    assert runs == [
        f"move_path: {NGINX_AT_V1} moved to {NGINX_AT_V2}; merged your edits (three-way)"
    ]

    # Updating again (same version) must not run it again or change anything.
    commit_all(project, "update to 2.0.0")
    assert "move_path" not in succeeded(copier_update(project))
    assert git(project, "status", "--porcelain") == ""


def test_conflict_rej_mode_keeps_the_users_change_in_a_rej_file(
    template: Path, tmp_path: Path
) -> None:
    project = copy_project(template, tmp_path / "demo-shop")
    edit(project / "gunicorn.conf.py", r"^timeout = .*$", USER_TIMEOUT)
    commit_all(project, "my timeout")

    output = succeeded(copier_update(project, "--conflict=rej"))
    # As the generated README warns: the file takes the template's line and
    # the user's change waits in the .rej file, which the update names.
    assert V2_TIMEOUT in (project / "gunicorn.conf.py").read_text()
    assert f"+{USER_TIMEOUT}" in (project / "gunicorn.conf.py.rej").read_text()
    assert "\n  gunicorn.conf.py.rej\n" in output


def test_check_update_sees_the_new_version_and_then_none(
    template: Path, main_update: Updated, tmp_path: Path
) -> None:
    """`copier check-update`, the README's first command."""

    def check_update(project: Path) -> object:
        result = run_copier(project, "check-update", "--output-format=json")
        succeeded(result)
        return json.loads(result.stdout)

    project = copy_project(template, tmp_path / "demo-shop")
    assert check_update(project) == {
        "update_available": True,
        "current_version": V1,
        "latest_version": V2,
    }
    assert check_update(main_update.project) == {
        "update_available": False,
        "current_version": V2,
        "latest_version": V2,
    }


def test_a_dirty_project_is_refused_and_nothing_is_written(template: Path, tmp_path: Path) -> None:
    project = copy_project(template, tmp_path / "demo-shop")
    append(project / "README.md", "Work in progress, not committed.")
    (project / "notes.txt").write_text("untracked counts as dirty too\n")
    before = snapshot(project)

    result = copier_update(project)
    assert result.returncode != 0
    assert "Destination repository is dirty; cannot continue" in result.stderr
    assert snapshot(project) == before
