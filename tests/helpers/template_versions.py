"""Two tagged versions of the template, and projects that update between them.

`copier update` only moves between git tags of a template, and this repo's own
history has none worth testing (nor will its working tree be committed when the
tests run). So the tests build a template repo of their own in a temp dir:

- 1.0.0 is the working tree as it is: copier.yml, template/, hooks/;
- 2.0.0 is 1.0.0 plus the deliberate changes below, the kind a real release
  makes: a changed gunicorn setting, a new view, a Dockerfile line, a Procfile
  line (so that a user who deleted the Procfile proves it stays deleted), the
  nginx config moved (with a `_migrations` entry, as a real release must), and
  a change to a file the user owns (which must not arrive).

Each change is made by anchoring on a line that any version of the template
has, and fails loudly when the anchor is gone, so that edits to the template by
others never turn these tests into silent no-ops.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import copier
import yaml

from tests.helpers.render import BASE_ANSWERS

REPO = Path(__file__).resolve().parents[2]
V1, V2 = "1.0.0", "2.0.0"

# The releases users have, by commit: git tags may not travel with a clone, a
# commit of main's history always does (CONTRIBUTING.md: cutting a release adds one).
RELEASES = {"0.1.0": "de30a804991611289c6f0c522e04ebe540f583be"}
RELEASED = "0.1.0"
# What a template version is made of: copier.yml and template/ (which includes
# from includes/ and locks/), hooks/ for tasks and migrations, and CHANGELOG.md,
# which the update script quotes.
TEMPLATE_PARTS = ("copier.yml", "CHANGELOG.md", "template", "hooks", "includes", "locks")

# Copier commits in its own temp repos with its own identity; ours does the same
# for the template and project repos, so no global git config is needed.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}

# ---- what 2.0.0 changes, as the lines a test can look for ----------------------
V2_TIMEOUT = 'timeout = env_int("GUNICORN_TIMEOUT", 45)  # v2: a shorter bound'
V2_GUNICORN_TAIL = "# v2: a closing note added by the template"
V2_VIEW = '@bp.get("/v2")\ndef v2_page() -> str:\n    return "added in v2"\n'
V2_DOCKERFILE = 'LABEL org.opencontainers.image.version="2.0.0"'
V2_PROCFILE = "# v2: a note the template added to the Procfile"
V2_NGINX_TAIL = "# v2: a note added by the template"
V2_STYLE = "/* v2: a change the user's own stylesheet must not get */"

TEMPLATE_NGINX = "{% if with_nginx %}deploy{% endif %}/nginx"
NGINX_OLD = "deploy/nginx/{project_slug}.conf"  # as move_path.py takes them
NGINX_NEW = "deploy/nginx/sites/{project_slug}.conf"
MOVE_MIGRATION = {
    "version": V2,
    "command": [
        "{{ _copier_python }}",
        "{{ _copier_conf.src_path }}/hooks/migrations/move_path.py",
        NGINX_OLD,
        NGINX_NEW,
    ],
}


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd`; its stdout, or an error with its stderr."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-gpg-sign", "-m", message)


def edit(path: Path, pattern: str, replacement: str | Callable[[re.Match[str]], str]) -> None:
    """Replace the one match of `pattern` (multiline) in `path` with `replacement`,
    taken literally, or computed from the match; fail unless there is exactly one."""
    replace = replacement if callable(replacement) else (lambda _: replacement)
    text, count = re.subn(pattern, replace, path.read_text(), flags=re.MULTILINE)
    assert count == 1, f"{path}: expected one match of {pattern!r}, found {count}"
    path.write_text(text)


def insert_after(path: Path, pattern: str, text: str) -> None:
    """Insert `text` right after the one match of `pattern` in `path`."""
    edit(path, pattern, lambda match: match[0] + text)


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text().rstrip("\n") + "\n" + text.rstrip("\n") + "\n")


def _make_v2(root: Path) -> None:
    template = root / "template"
    gunicorn = template / "{% if server == 'gunicorn' %}gunicorn.conf.py{% endif %}.jinja"
    edit(gunicorn, r"^timeout = .*$", V2_TIMEOUT)
    append(gunicorn, V2_GUNICORN_TAIL)
    append(template / "{{package_name}}" / "views.py.jinja", "\n\n" + V2_VIEW)
    append(template / "{% if with_docker %}Dockerfile{% endif %}.jinja", V2_DOCKERFILE)
    append(template / "{% if with_procfile %}Procfile{% endif %}.jinja", V2_PROCFILE)
    append(template / "{{package_name}}" / "static" / "style.css", V2_STYLE)

    # The move: git sees a rename; Copier sees a deleted and an added file.
    old = template / TEMPLATE_NGINX / "{{project_slug}}.conf.jinja"
    new = template / TEMPLATE_NGINX / "sites" / "{{project_slug}}.conf.jinja"
    assert old.is_file(), f"the nginx config moved in the working tree: {old} is gone"
    new.parent.mkdir()
    old.rename(new)
    append(new, V2_NGINX_TAIL)

    # The release's migrations: the repo's own entries without a version (they
    # run on every update) plus this release's move. The repo's versioned
    # entries are plans for its real releases, not for these test versions.
    config_path = root / "copier.yml"
    config = yaml.safe_load(config_path.read_text())
    kept = [entry for entry in config.get("_migrations", []) if "version" not in entry]
    config["_migrations"] = [MOVE_MIGRATION, *kept]
    config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=1000))


def build_template_versions(root: Path) -> Path:
    """A git repo at `root` with tags 1.0.0 (the working tree) and 2.0.0."""
    root.mkdir(parents=True)
    shutil.copy2(REPO / "copier.yml", root / "copier.yml")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "template", root / "template", ignore=ignore)
    shutil.copytree(REPO / "hooks", root / "hooks", ignore=ignore)
    shutil.copytree(REPO / "includes", root / "includes", ignore=ignore)
    shutil.copytree(REPO / "locks", root / "locks", ignore=ignore)  # uv.lock's source
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "the template as it is")
    git(root, "tag", V1)
    _make_v2(root)
    commit_all(root, "the next release")
    git(root, "tag", V2)
    return root


def version_in_the_making() -> str:
    """pyproject.toml's version: the one the working tree will be released as."""
    found = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert found, "pyproject.toml has no version"
    return found[1]


def build_release_versions(root: Path) -> Path:
    """A git repo at `root`: tag 0.1.0 as released, then the working tree tagged with
    pyproject.toml's version, so that tests update a real 0.1.0 project to this one."""
    root.mkdir(parents=True)
    released = [part for part in TEMPLATE_PARTS if part not in ("includes", "locks")]
    archive = subprocess.run(
        ["git", "archive", "--format=tar", RELEASES[RELEASED], *released],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True, timeout=60)
    git(root, "init", "-q", "-b", "main")
    commit_all(root, f"{RELEASED} as released")
    git(root, "tag", RELEASED)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in TEMPLATE_PARTS:
        target, source = root / part, REPO / part
        if target.is_dir():
            shutil.rmtree(target)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    commit_all(root, "the working tree")
    git(root, "tag", version_in_the_making())
    return root


def copy_project(template: Path, dst: Path, vcs_ref: str = V1, **answers: Any) -> Path:
    """Generate a project at `vcs_ref` into `dst` and commit it, as a user would."""
    copier.run_copy(
        str(template),
        dst,
        data={**BASE_ANSWERS, **answers},
        vcs_ref=vcs_ref,
        unsafe=True,
        defaults=True,
        quiet=True,
    )
    git(dst, "init", "-q", "-b", "main")
    commit_all(dst, "generated from the template")
    return dst


def copier_update(project: Path, *args: str, vcs_ref: str = V2) -> subprocess.CompletedProcess[str]:
    """`copier update` as the generated README tells users to run it, output captured.

    The CLI in a subprocess, not the API: its output is what a user reads, and
    migration scripts print to the process's own stdout.
    """
    command = [sys.executable, "-m", "copier", "update", "--trust", "--defaults"]
    return run_as_user(project, [*command, f"--vcs-ref={vcs_ref}", *args, str(project)])


def run_as_user(
    project: Path, command: list[str], timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """`command` in `project` as a user runs it from a terminal: git's identity set,
    no colours in the output, nothing on stdin (a prompt fails instead of hanging)."""
    return subprocess.run(
        command,
        cwd=project,
        env={**os.environ, **GIT_ENV, "NO_COLOR": "1", **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def snapshot(project: Path) -> dict[str, tuple[bytes, int]]:
    """Every file outside .git: its bytes and mtime, to prove nothing was written."""
    return {
        str(path.relative_to(project)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


def conflict_files(project: Path) -> list[str]:
    """Files git records as unmerged, as Copier leaves them after a conflict."""
    return git(project, "diff", "--name-only", "--diff-filter=U").splitlines()


def marker_files(project: Path) -> list[str]:
    """Files with a conflict marker at the start of a line."""
    markers = re.compile(r"^(<<<<<<< |>>>>>>> )", re.MULTILINE)
    return sorted(
        name
        for name, (content, _) in snapshot(project).items()
        if markers.search(content.decode(errors="replace"))
    )


def take_ours(text: str) -> str:
    """Resolve every conflict block in favour of the user's side."""
    return re.sub(
        r"^<<<<<<< before updating\n(.*?)^=======\n.*?^>>>>>>> after updating\n",
        r"\1",
        text,
        flags=re.MULTILINE | re.DOTALL,
    )


# ---- the same two versions with the template's CHANGELOG (tests/test_fleet.py) ----
# What update_from_template.py puts in its pull request text: the entries
# between the project's version and the new one, and nothing older.
V2_CHANGELOG = """\
## 2.0.0 (a test release)

### On update
- gunicorn's timeout is 45 s; a /v2 page; a version label in the Dockerfile.
- The nginx site moved to deploy/nginx/sites/ (a migration carries your edits).

### By hand
- Nothing.

"""


def build_template_versions_with_changelog(root: Path) -> Path:
    """As build_template_versions, with this repo's CHANGELOG.md in both tags
    (its entries are all older than 1.0.0) and V2_CHANGELOG added in 2.0.0.

    Built on top of build_template_versions, whatever it copies: each tag is
    moved to a commit that adds the CHANGELOG to what it had."""
    build_template_versions(root)
    release = git(root, "rev-parse", V2).strip()
    git(root, "checkout", "-q", "-b", "with-changelog", V1)
    shutil.copy2(REPO / "CHANGELOG.md", root / "CHANGELOG.md")
    commit_all(root, "the template as it is, with its CHANGELOG")
    git(root, "tag", "-f", V1)
    git(root, "cherry-pick", "--no-commit", release)
    insert_before_first_heading(root / "CHANGELOG.md", V2_CHANGELOG)
    commit_all(root, "the next release, with its CHANGELOG")
    git(root, "tag", "-f", V2)
    return root


def insert_before_first_heading(changelog: Path, section: str) -> None:
    """Put `section` above the newest version's heading, as a release does."""
    text = changelog.read_text()
    first = re.search(r"^## ", text, re.MULTILINE)
    assert first is not None, f"{changelog} has no version heading"
    changelog.write_text(text[: first.start()] + section + text[first.start() :])
