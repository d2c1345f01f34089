"""What the text a new user reads says (issue "Every command a user is told to type
works as printed"): the commands and files, read without running them.
tests/live/test_user_path.py runs them."""

from __future__ import annotations

import re
from typing import Any

import yaml

from harness import REPO
from harness.readme import message_commands, readme_blocks, section
from hooks.migrations.report_update import report

COPIER = yaml.safe_load((REPO / "copier.yml").read_text())
SCRIPT = ".github/scripts/update_from_template.py"
VALUE_PLACEHOLDER = re.compile(r"=\.\.\.|\s\.\.\.(\s|$)|=<|YOUR_")


def test_the_messages_after_an_update_agree_with_it() -> None:
    assert "then commit" not in report([], [])
    after = COPIER["_message_after_update"]
    assert "Look for conflict markers" not in after and "name any file" in after


def test_no_command_holds_a_value_placeholder(rendered: Any) -> None:
    after_copy = message_commands(COPIER["_message_after_copy"])
    for answers in [{}, {"database": "sqlite"}, {"database": "postgresql"}, {"server": "granian"}]:
        readme = (rendered(**answers) / "README.md").read_text()
        lines = [line for block in readme_blocks(readme) for line in block.lines()]
        bad = [line for line in [*lines, *after_copy] if VALUE_PLACEHOLDER.search(line)]
        assert not bad, (answers, bad)


def test_python3_the_first_commit_and_the_debian_host_in_the_texts(rendered: Any) -> None:
    project = rendered(database="sqlite")
    readme = (project / "README.md").read_text()
    texts = {
        "README.md": (REPO / "README.md").read_text(),
        "generated README.md": readme,
        "after copy": COPIER["_message_after_copy"],
        SCRIPT: (project / SCRIPT).read_text(),
        ".env.example": (project / ".env.example").read_text(),
    }
    for name, text in texts.items():
        assert not re.search(r"(?<!pipx )(?<!uv tool )\bpip install (copier|uv)\b", text), name
        assert not re.search(r"(?<![\w.])(?<!uv run )python -c", text), name
    assert "pipx install uv" in texts["generated README.md"]
    assert "pipx install copier" in texts["README.md"]

    # The first commit comes before pre-commit.
    develop = section((rendered() / "README.md").read_text(), "Develop").text
    for text in (develop, COPIER["_message_after_copy"]):
        assert "git add -A && git commit" in text
        assert text.index("git commit") < text.index("pre-commit install")

    # `docker run` is read-only, with a volume where SQLite writes.
    containers = section(readme, "Containers").lines()
    run = next(line for line in containers if line.startswith("docker run"))
    assert "--read-only" in run and "--tmpfs /tmp" in run
    assert "/app/instance" in run, "SQLite writes its folder: a volume there"

    # The SQLite unit gives the database a folder and migrates.
    unit = (project / "deploy" / "systemd" / "demo-shop.service").read_text()
    assert "StateDirectory=demo-shop" in unit
    assert "Environment=DATABASE_URL=sqlite:////var/lib/demo-shop/app.sqlite3" in unit
    assert "ExecStartPre=/srv/demo-shop/.venv/bin/flask db upgrade" in unit
    assert "ProtectSystem=strict" in unit

    # The host block installs what it uses, on the distribution's python3.
    host = section(
        (rendered(database="sqlite", python_version="3.14") / "README.md").read_text(),
        "Deploy on a Linux host",
    )
    installs = [line for line in host.lines() if "apt" in line and "install" in line]
    assert installs and all(" -y " in line for line in installs), installs
    assert all(tool in installs[0].split() for tool in ("git", "curl", "nginx", "python3-venv"))
    assert "python3 -m venv" in host.text
    assert "python3.14" not in host.text, "Debian 12/13 and Ubuntu 24.04 have no python3.14-venv"
    assert "Debian 12" in COPIER["python_version"]["help"]


def test_the_granian_unit_reloads(rendered: Any) -> None:
    project = rendered(server="granian")
    unit = (project / "deploy" / "systemd" / "demo-shop.service").read_text()
    assert "ExecReload=/bin/kill -s HUP $MAINPID" in unit
    assert "systemctl reload" in (project / "README.md").read_text()


def test_the_instructor_block_tags_the_fork_and_returns() -> None:
    readme = (REPO / "README.md").read_text()
    first = next(b for b in readme_blocks(readme) if "cp presets/course.yml" in b.text)
    version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert version and f"git tag {version[1]}" in first.text
    assert first.lines()[-1] == "cd ..", "block 2 runs from the folder block 1 started in"
    assert "tag" in readme.split("## Use it for a real project", 1)[1].split("###", 1)[0]
