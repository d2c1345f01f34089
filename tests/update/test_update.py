"""`copier update` never loses a user's work: scenarios on real git repos.

Each generates a project from template 1.0.0 (the working tree), edits it as a user would,
commits and updates it to 2.0.0 (harness/template_versions.py) with the generated README's
command. move_path.py's own cases: tests/quick/test_hooks.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness import template_versions as tv
from harness import venvs
from harness.serving import answers, serve

NGINX_AT_V1 = "deploy/nginx/demo-shop.conf"
NGINX_AT_V2 = "deploy/nginx/sites/demo-shop.conf"
# A new default, the way the file sets its others (the project's own test_server.py
# still sets GUNICORN_TIMEOUT for its stuck-request test).
USER_TIMEOUT = 'timeout = env_int("GUNICORN_TIMEOUT", 120)  # mine: the reports endpoint is slow'
USER_GUNICORN_HEAD = "# mine: tuned for the reports service"
NGINX_EDIT = "# mine: the reports team proxies through this host"
CONFLICT = f"""<<<<<<< before updating
{USER_TIMEOUT}
=======
{tv.V2_TIMEOUT}
>>>>>>> after updating
"""


def check_update(project: Path, available: bool, current: str) -> None:
    """`copier check-update`, the README's first command."""
    result = tv.run_copier(project, "check-update", "--output-format=json")
    tv.succeeded(result)
    expected = {"update_available": available, "current_version": current, "latest_version": tv.V2}
    assert json.loads(result.stdout) == expected


def test_the_user_edits_stay_the_template_changes_arrive_and_the_project_serves(
    template: Path, venv_bin: Path, tmp_path: Path
) -> None:
    project = tv.copy_project(template, tmp_path / "demo-shop")
    check_update(project, available=True, current=tv.V1)
    gunicorn = project / "gunicorn.conf.py"
    # The same line as the template's change (a conflict), and a far one (none).
    tv.edit(gunicorn, r"^timeout = .*$", USER_TIMEOUT)
    gunicorn.write_text(f"{USER_GUNICORN_HEAD}\n{gunicorn.read_text()}")
    tv.insert_after(project / tv.PACKAGE / "views.py", r"^bp = Blueprint\(.*\)\n", tv.USER_VIEW)
    tv.insert_after(project / "README.md", r"\A# .*\n", f"\n{tv.USER_README}\n")
    tv.append(project / "requirements.txt", tv.USER_REQUIREMENT)
    (project / "Procfile").unlink()  # an optional file this user does not want
    (project / tv.PACKAGE / "static" / "style.css").write_text(tv.USER_STYLE)
    nginx = project / NGINX_AT_V1  # a file 2.0.0 moves
    nginx.write_text(f"{NGINX_EDIT}\n{nginx.read_text()}")
    (project / "notes.txt").write_text("untracked counts as dirty too\n")
    before = tv.snapshot(project)
    refused = tv.copier_update(project)
    assert refused.returncode != 0
    assert "Destination repository is dirty; cannot continue" in refused.stderr
    assert tv.snapshot(project) == before
    tv.commit_all(project, "my edits")
    output = tv.succeeded(tv.copier_update(project))

    assert f"Updating to template version {tv.V2}" in output
    assert answers(project)["_commit"] == tv.V2
    merged = gunicorn.read_text()
    assert merged.startswith(USER_GUNICORN_HEAD + "\n")
    # The conflicting line is kept, never overwritten; 2.0.0's is offered next to it.
    assert CONFLICT in merged
    assert merged.rstrip().endswith(tv.V2_NOTE), "merged next to the user's edits"
    views = (project / tv.PACKAGE / "views.py").read_text()
    assert tv.USER_VIEW.strip() in views and tv.V2_VIEW in views
    assert tv.USER_README in (project / "README.md").read_text()
    assert tv.USER_REQUIREMENT in (project / "requirements.txt").read_text().splitlines()
    assert not (project / "Procfile").exists(), "a deleted file stays deleted"
    assert (project / "Dockerfile").read_text().rstrip().endswith(tv.V2_DOCKERFILE)
    moved = (project / NGINX_AT_V2).read_text()
    assert moved.startswith(NGINX_EDIT + "\n"), "the user's edit moved with the file"
    assert moved.rstrip().endswith(tv.V2_NOTE), "and the template's change merged in"
    assert not nginx.exists()
    # The migration ran exactly once, and merged three ways (with a real base).
    runs = re.findall(r"^move_path: .*$", output, re.MULTILINE)
    assert runs == [
        f"move_path: {NGINX_AT_V1} moved to {NGINX_AT_V2}; merged your edits (three-way)"
    ]

    # Only the file both changed; unmerged in git, so it cannot be committed unresolved.
    assert tv.marker_files(project) == ["gunicorn.conf.py"]
    assert tv.conflict_files(project) == ["gunicorn.conf.py"]
    # The output names it (hooks/migrations/report_update.py), and the moved file's old path.
    assert "1 file(s) with conflicts" in output
    assert "\n  gunicorn.conf.py\n" in output
    assert f"\n  {NGINX_AT_V1}\n" in output
    assert tv.snapshot(project)[".env"] == before[".env"], "bytes and mtime"
    # hooks/write_dotenv.py prints on every run; on update Copier runs tasks three times
    # (old copy, new copy, project), so silence proves the copy-only guard held each time.
    assert ".env" not in output
    # _skip_if_exists holds in a project that deleted a file (see copier.yml).
    assert (project / tv.PACKAGE / "static" / "style.css").read_text() == tv.USER_STYLE

    # The conflict resolved as this user would (their side kept). Updating again (same
    # version) must not run the migration again or change anything.
    tv.edit(gunicorn, re.escape(CONFLICT), USER_TIMEOUT + "\n")
    assert tv.marker_files(project) == []
    tv.commit_all(project, "update to 2.0.0")
    assert "move_path" not in tv.succeeded(tv.copier_update(project))
    assert tv.git(project, "status", "--porcelain") == ""
    check_update(project, available=False, current=tv.V2)

    tv.succeeded(venvs.run_project_tests(project, venvs.run_env(venv_bin)))
    with serve(project, tmp_path / "logs", venvs.production_env(venv_bin)) as served:
        assert served.get("/healthz").status == served.get("/").status == 200
        assert served.get("/mine").body == b"a view of my own"
        assert served.get("/v2").body == b"added in v2"


def test_turning_an_option_on_and_off_and_a_conflict_in_rej_mode(
    template: Path, tmp_path: Path
) -> None:
    project = tv.copy_project(template, tmp_path / "demo-shop", with_docker=False)
    assert not (project / "Dockerfile").exists()
    tv.edit(project / "gunicorn.conf.py", r"^timeout = .*$", USER_TIMEOUT)
    tv.commit_all(project, "my timeout")
    output = tv.succeeded(tv.copier_update(project, "--data", "with_docker=true", "--conflict=rej"))
    # As the generated README warns: the file takes the template's line, the user's
    # change waits in the .rej file, which the update names.
    assert tv.V2_TIMEOUT in (project / "gunicorn.conf.py").read_text()
    assert f"+{USER_TIMEOUT}" in (project / "gunicorn.conf.py.rej").read_text()
    assert "\n  gunicorn.conf.py.rej\n" in output
    assert (project / "Dockerfile").read_text().rstrip().endswith(tv.V2_DOCKERFILE)
    assert (project / ".dockerignore").is_file()
    assert answers(project)["with_docker"] is True
    # The moved file this user never edited: at its new place, the old one gone. The
    # Procfile they kept gets 2.0.0's change (the test above deleted it).
    assert tv.V2_NOTE in (project / NGINX_AT_V2).read_text()
    assert not (project / NGINX_AT_V1).exists()
    assert (project / "Procfile").read_text().rstrip().endswith(tv.V2_NOTE)
    tv.commit_all(project, "docker on")

    # Off again, at the same version, after an edit: Copier deletes the option's files,
    # edited or not (the generated README says so); the last commit has the edit, and
    # the update names the file.
    tv.append(project / "Dockerfile", "# mine: a build note")
    tv.commit_all(project, "my Dockerfile note")
    off = tv.succeeded(tv.copier_update(project, "--data", "with_docker=false"))
    assert not (project / "Dockerfile").exists()
    assert not (project / ".dockerignore").exists()
    assert "\n  Dockerfile\n" in off
    assert "# mine: a build note" in tv.git(project, "show", "HEAD:Dockerfile")
