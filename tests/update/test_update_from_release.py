"""Updating a real 0.1.0 project to this release (the `released` fixture): what its users
will get, with the update workflow's script (it runs the generated README's command)."""

from __future__ import annotations

import re
from pathlib import Path

from harness import REPO, venvs
from harness import template_versions as tv
from harness.readme import readme_blocks
from harness.serving import serve
from harness.tools import require_tool

NEW, PACKAGE = tv.NEXT, tv.PACKAGE
WORKFLOW = ".github/workflows/template-update.yml"
USER_WSGI = "# mine: started by our own process manager"
USER_HEADING = "<h1>Tea, and nothing else</h1>"
NEW_FILES = """
    demo_shop/logs.py demo_shop/errors.py demo_shop/security.py demo_shop/static_files.py
    demo_shop/metrics.py demo_shop/error_reports.py demo_shop/static/favicon.svg
    demo_shop/templates/base.html demo_shop/templates/error.html compose.https.yaml
    deploy/nginx/include/headers.conf deploy/nginx/include/https.conf deploy/nginx/errors/413.html
    tests/test_errors.py tests/test_logs.py tests/test_security.py tests/test_watch.py
""".split()


def test_a_0_1_0_project_keeps_its_edits_gets_the_new_files_and_serves(
    released: Path, venv_bin: Path, tmp_path: Path
) -> None:
    project = tv.copy_project(released, tmp_path / "demo-shop", vcs_ref=tv.RELEASED)
    assert not (project / PACKAGE / "logs.py").exists(), "0.1.0 had no logs.py"
    assert not (project / "uv.lock").exists()
    assert not (project / WORKFLOW).exists()
    # The user's own work, where 0.2.0 changed nothing near it (test_update.py covers
    # conflicts), and a pin added where 0.1.0's requirements.txt said to.
    tv.append(project / PACKAGE / "views.py", tv.USER_VIEW)
    tv.append(project / "wsgi.py", USER_WSGI)
    tv.edit(project / "README.md", r"^# Demo Shop$", f"# Demo Shop\n\n{tv.USER_README}")
    (project / PACKAGE / "static" / "style.css").write_text(tv.USER_STYLE)
    index = project / PACKAGE / "templates" / "index.html"
    tv.edit(index, r"^\s*<h1>.*</h1>$", USER_HEADING)
    tv.append(project / "requirements.txt", tv.USER_REQUIREMENT)
    tv.commit_all(project, "my changes")
    # The project has no script yet: the one it is about to get does the update.
    output = tv.update_script(project, "--body-file", str(tmp_path / "body.md"))
    assert (project / WORKFLOW).is_file(), "update_workflow's default reaches old projects"
    assert "update_workflow: true" in (project / ".copier-answers.yml").read_text()
    body = (tmp_path / "body.md").read_text()
    assert f"### {NEW} " in body and "### 0.1.0" not in body
    assert "Update pull requests" in body, "this CHANGELOG's entry for the new version"

    # The template rewrote requirements.txt: the user's line waits in a conflict block, on
    # their side, for them to move. No other file has one.
    assert tv.marker_files(project) == ["requirements.txt"], output
    assert tv.USER_REQUIREMENT in (project / "requirements.txt").read_text().splitlines()
    assert tv.USER_VIEW.strip() in (project / PACKAGE / "views.py").read_text()
    assert USER_WSGI in (project / "wsgi.py").read_text()
    assert tv.USER_README in (project / "README.md").read_text()
    # The page and stylesheet are the user's (_skip_if_exists): never rewritten.
    assert (project / PACKAGE / "static" / "style.css").read_text() == tv.USER_STYLE
    assert USER_HEADING in index.read_text()

    assert [name for name in NEW_FILES if not (project / name).is_file()] == []
    assert (project / "uv.lock").is_file()
    factory = (project / PACKAGE / "__init__.py").read_text()
    assert "logs.init_app(app)" in factory and "security.init_app(app)" in factory
    conf = (project / "gunicorn.conf.py").read_text()
    assert "logconfig_dict" in conf and "access_log_format" in conf
    assert "flask-wtf==" in (project / "requirements.txt").read_text()
    proxy = (project / "deploy/nginx/include/proxy.conf").read_text()
    assert "proxy_set_header X-Request-ID $request_id;" in proxy

    # The shell block under this version's "By hand" in CHANGELOG.md, run as printed,
    # moves the pin into the lock.
    changelog = (REPO / "CHANGELOG.md").read_text().split(f"## {NEW}", 1)[1]
    blocks = readme_blocks(changelog.split("\n## ", 1)[0].split("### By hand", 1)[1])
    assert blocks, "no shell block under By hand"
    commands = blocks[0].lines()
    assert commands[0].startswith("uv add ") and tv.USER_REQUIREMENT in commands[0]
    uv = require_tool("uv")
    env = venvs.uv_env(**tv.GIT_ENV)
    env["PATH"] = f"{Path(uv).parent}:{env['PATH']}"
    for command in commands:
        tv.run_shell(command, project, env)
    assert f'"{tv.USER_REQUIREMENT}"' in (project / "pyproject.toml").read_text()
    lock = (project / "uv.lock").read_text()
    assert re.search(r'^name = "requests"\nversion = "2\.32\.3"$', lock, flags=re.MULTILINE)
    assert f"{tv.USER_REQUIREMENT} \\" in (project / "requirements.txt").read_text().splitlines()
    assert tv.marker_files(project) == []
    tv.run_shell(f"{uv} lock --check", project, env)
    assert tv.git(project, "status", "--porcelain").strip() == "", "everything is committed"

    tv.succeeded(venvs.run_project_tests(project, venvs.run_env(venv_bin)))
    with serve(project, tmp_path / "logs", venvs.production_env(venv_bin)) as served:
        mine, missing = served.get("/mine"), served.get("/nowhere")
    assert (mine.status, mine.body) == (200, b"a view of my own")
    assert mine.headers["x-request-id"] and "content-security-policy" in mine.headers
    assert missing.status == 404 and b"request id" in missing.body
