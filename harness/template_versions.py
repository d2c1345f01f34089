"""Template versions as tags of a git repo in a temp dir (`copier update` moves only
between tags), and the commands a user runs on a project generated from them. 2.0.0's
changes each anchor on a line every version has: a template edit fails loudly, never
turning a test into a no-op.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import copier
import yaml

from harness import REPO
from harness.render import BASE_ANSWERS

V1, V2 = "1.0.0", "2.0.0"

# The releases users have, by commit: git tags may not travel with a clone, a
# commit of main's history always does (CONTRIBUTING.md: cutting a release adds one).
RELEASES = {"0.1.0": "de30a804991611289c6f0c522e04ebe540f583be"}
RELEASED = "0.1.0"
# pyproject.toml's version: the one the working tree will be released as.
NEXT = re.findall(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.MULTILINE)[0]
# copier.yml and template/ (which includes from includes/ and locks/), hooks/ for tasks
# and migrations, and CHANGELOG.md, which the update script quotes.
TEMPLATE_PARTS = ("copier.yml", "CHANGELOG.md", "template", "hooks", "includes", "locks")
UPDATE_SCRIPT = (
    REPO
    / "template/{% if ci == 'github' %}.github{% endif %}"
    / "{% if update_workflow %}scripts{% endif %}/update_from_template.py"
)
# Our commits carry an identity of their own, so no global git config is needed.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}

# What the user's edits in the update tests add (their package is BASE_ANSWERS' one).
PACKAGE = "demo_shop"
USER_VIEW = '\n\n@bp.get("/mine")\ndef mine() -> str:\n    return "a view of my own"\n'
USER_README = "Internal notes: this shop sells only tea."
USER_REQUIREMENT = "requests==2.32.3"  # as the CHANGELOG's "By hand" example names it
USER_STYLE = "body { background: papayawhip; }  /* mine */\n"

# What 2.0.0 changes, as the lines a test can look for.
V2_TIMEOUT = 'timeout = env_int("GUNICORN_TIMEOUT", 45)  # v2: a shorter bound'
V2_NOTE = "# v2: a note added by the template"  # at the end of gunicorn, Procfile and nginx
V2_VIEW = '@bp.get("/v2")\ndef v2_page() -> str:\n    return "added in v2"\n'
V2_DOCKERFILE = 'LABEL org.opencontainers.image.version="2.0.0"'
# The update pull request quotes the entries newer than the project's version.
V2_CHANGELOG = """\
## 2.0.0 (a test release)

### On update
- gunicorn's timeout is 45 s; a /v2 page; a version label in the Dockerfile.
- The nginx site moved to deploy/nginx/sites/ (a migration carries your edits).

### By hand
- Nothing.

"""

# A CHANGELOG up to its newest version's heading: a release's section goes after it.
BEFORE_FIRST_HEADING = r"\A[\s\S]*?^(?=## )"
MOVE_MIGRATION = {
    "version": V2,
    "command": [
        "{{ _copier_python }}",
        "{{ _copier_conf.src_path }}/hooks/migrations/move_path.py",
        "deploy/nginx/{project_slug}.conf",
        "deploy/nginx/sites/{project_slug}.conf",
    ],
}


def git(cwd: Path, *args: str) -> str:
    result = run_as_user(cwd, ["git", *args])
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def commit_all(repo: Path, message: str, tag: str = "", init: bool = False) -> None:
    if init:
        git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-gpg-sign", "-m", message)
    if tag:
        git(repo, "tag", tag)


def edit(path: Path, pattern: str, replacement: str | Callable[[re.Match[str]], str]) -> None:
    """Replace the one match of `pattern` (multiline) with `replacement`, literal or computed."""
    replace = replacement if callable(replacement) else (lambda _: replacement)
    text, count = re.subn(pattern, replace, path.read_text(), flags=re.MULTILINE)
    assert count == 1, f"{path}: expected one match of {pattern!r}, found {count}"
    path.write_text(text)


def insert_after(path: Path, pattern: str, text: str) -> None:
    edit(path, pattern, lambda match: match[0] + text)


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text().rstrip("\n") + "\n" + text.rstrip("\n") + "\n")


def _make_v2(root: Path) -> None:
    template = root / "template"
    gunicorn = template / "{% if server == 'gunicorn' %}gunicorn.conf.py{% endif %}.jinja"
    edit(gunicorn, r"^timeout = .*$", V2_TIMEOUT)
    append(gunicorn, V2_NOTE)
    append(template / "{{package_name}}" / "views.py.jinja", "\n\n" + V2_VIEW)
    append(template / "{% if with_docker %}Dockerfile{% endif %}.jinja", V2_DOCKERFILE)
    append(template / "{% if with_procfile %}Procfile{% endif %}.jinja", V2_NOTE)
    # A change the user's own stylesheet must not get (_skip_if_exists).
    append(template / "{{package_name}}" / "static" / "style.css", "/* v2: a change */")
    insert_after(root / "CHANGELOG.md", BEFORE_FIRST_HEADING, V2_CHANGELOG)
    # The move, with its `_migrations` entry as a real release needs: git sees a
    # rename; Copier sees a deleted and an added file.
    nginx = template / "{% if with_nginx %}deploy{% endif %}/nginx"
    old = nginx / "{{project_slug}}.conf.jinja"
    new = nginx / "sites" / old.name
    assert old.is_file(), f"the nginx config moved in the working tree: {old} is gone"
    new.parent.mkdir()
    old.rename(new)
    append(new, V2_NOTE)
    config_path = root / "copier.yml"
    config = yaml.safe_load(config_path.read_text())
    config["_migrations"] = [MOVE_MIGRATION, *config.get("_migrations", [])]
    config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=1000))


def _copy_working_tree(root: Path) -> None:
    for part in TEMPLATE_PARTS:
        target, source = root / part, REPO / part
        if target.is_dir():
            shutil.rmtree(target)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target)


def build_template_versions(root: Path) -> Path:
    """A git repo at `root` with tags 1.0.0 (the working tree) and 2.0.0."""
    root.mkdir(parents=True)
    _copy_working_tree(root)
    commit_all(root, "the template as it is", tag=V1, init=True)
    _make_v2(root)
    commit_all(root, "the next release", tag=V2)
    return root


def build_release_versions(root: Path) -> Path:
    """A git repo at `root`: 0.1.0 as released, then the working tree as the next version."""
    released = [part for part in TEMPLATE_PARTS if part not in ("includes", "locks")]
    archive = root.parent / f"{RELEASED}.tar"
    git(REPO, "archive", f"--output={archive}", RELEASES[RELEASED], *released)
    shutil.unpack_archive(archive, root)
    commit_all(root, f"{RELEASED} as released", tag=RELEASED, init=True)
    _copy_working_tree(root)
    commit_all(root, "the working tree", tag=NEXT)
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
    commit_all(dst, "generated from the template", init=True)
    return dst


def run_as_user(
    cwd: Path, command: list[str], env: Mapping[str, str] | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    """`command` in `cwd` as a user runs it from a terminal (git's identity set, no colours)
    or in `env`; nothing on stdin, so that a prompt fails instead of hanging."""
    base = {**os.environ, **GIT_ENV, "NO_COLOR": "1"} if env is None else env
    return subprocess.run(
        command,
        cwd=cwd,
        env={**base, **extra},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def update_script(project: Path, *args: str, script: Path | str = UPDATE_SCRIPT, **env: str) -> str:
    """The update workflow's script (the template's copy unless `script` is given) run
    in `project`; its output. It must succeed."""
    return succeeded(run_as_user(project, [sys.executable, str(script), *args], **env))


def run_copier(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_as_user(project, [sys.executable, "-m", "copier", *args])


def copier_update(project: Path, *args: str, vcs_ref: str = V2) -> subprocess.CompletedProcess[str]:
    """`copier update` as the generated README tells users to run it."""
    return run_copier(project, "update", "--trust", "--defaults", f"--vcs-ref={vcs_ref}", *args)


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    """The output (stdout, then stderr) of a command that must have succeeded."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{result.args}: exit {result.returncode}\n{output}"
    return output


def run_shell(script: str, cwd: Path, env: Mapping[str, str]) -> str:
    """`script` in bash as a CI runner runs a step (it stops at the first failing command,
    of a pipe too); its output. It must succeed."""
    return succeeded(run_as_user(cwd, ["bash", "-eo", "pipefail", "-c", script], env))


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
    markers = re.compile(rb"^(<<<<<<< |>>>>>>> )", re.MULTILINE)
    return sorted(
        name for name, (content, _) in snapshot(project).items() if markers.search(content)
    )
