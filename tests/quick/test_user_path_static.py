"""What the text a new user reads says (issue "Every command a user is told to type
works as printed"): the commands and files, read without running them.
tests/live/test_user_path.py runs them."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from harness import REPO
from harness.readme import message_commands, readme_blocks, section
from harness.render import render
from hooks.migrations.report_update import report

COPIER = yaml.safe_load((REPO / "copier.yml").read_text())
SCRIPT = ".github/scripts/update_from_template.py"
VALUE_PLACEHOLDER = re.compile(r"=\.\.\.|\s\.\.\.(\s|$)|=<|YOUR_")


def test_the_messages_after_an_update_agree_with_it() -> None:
    assert "then commit" not in report([], [])
    after = COPIER["_message_after_update"]
    assert "Look for conflict markers" not in after and "name any file" in after


@pytest.mark.parametrize(
    "answers",
    [{}, {"database": "sqlite"}, {"database": "postgresql"}, {"server": "granian"}],
    ids=["defaults", "sqlite", "postgresql", "granian"],
)
def test_no_command_holds_a_value_placeholder(copie: Any, answers: dict[str, str]) -> None:
    project = render(copie, **answers)
    lines = [line for b in readme_blocks((project / "README.md").read_text()) for line in b.lines()]
    lines += message_commands(COPIER["_message_after_copy"])
    bad = [line for line in lines if VALUE_PLACEHOLDER.search(line)]
    assert not bad, bad


def test_python_is_python3_and_tools_install_on_debian(copie: Any) -> None:
    project = render(copie, database="sqlite")
    texts = {
        "README.md": (REPO / "README.md").read_text(),
        "generated README.md": (project / "README.md").read_text(),
        "after copy": COPIER["_message_after_copy"],
        SCRIPT: (project / SCRIPT).read_text(),
        ".env.example": (project / ".env.example").read_text(),
    }
    for name, text in texts.items():
        assert not re.search(r"(?<!pipx )(?<!uv tool )\bpip install (copier|uv)\b", text), name
        assert not re.search(r"(?<![\w.])(?<!uv run )python -c", text), name
    assert "pipx install uv" in texts["generated README.md"]
    assert "pipx install copier" in texts["README.md"]


def test_the_first_commit_comes_before_pre_commit(copie: Any) -> None:
    readme = (render(copie) / "README.md").read_text()
    for text in (section(readme, "Develop").text, COPIER["_message_after_copy"]):
        assert "git add -A && git commit" in text
        assert text.index("git commit") < text.index("pre-commit install")


def test_the_host_block_installs_what_it_uses_on_the_distributions_python(copie: Any) -> None:
    project = render(copie, database="sqlite", python_version="3.14")
    host = section((project / "README.md").read_text(), "Deploy on a Linux host")
    installs = [line for line in host.lines() if "apt" in line and "install" in line]
    assert installs and all(" -y " in line for line in installs), installs
    assert all(tool in installs[0].split() for tool in ("git", "curl", "nginx", "python3-venv"))
    assert "python3 -m venv" in host.text
    assert "python3.14" not in host.text, "Debian 12/13 and Ubuntu 24.04 have no python3.14-venv"
    assert "Debian 12" in COPIER["python_version"]["help"]


def test_the_sqlite_unit_gives_the_database_a_folder_and_migrates(copie: Any) -> None:
    project = render(copie, database="sqlite")
    unit = (project / "deploy" / "systemd" / "demo-shop.service").read_text()
    assert "StateDirectory=demo-shop" in unit
    assert "Environment=DATABASE_URL=sqlite:////var/lib/demo-shop/app.sqlite3" in unit
    assert "ExecStartPre=/srv/demo-shop/.venv/bin/flask db upgrade" in unit
    assert "ProtectSystem=strict" in unit


def test_the_granian_unit_reloads(copie: Any) -> None:
    project = render(copie, server="granian")
    unit = (project / "deploy" / "systemd" / "demo-shop.service").read_text()
    assert "ExecReload=/bin/kill -s HUP $MAINPID" in unit
    assert "systemctl reload" in (project / "README.md").read_text()


def test_docker_run_is_read_only(copie: Any) -> None:
    project = render(copie, database="sqlite")
    block = section((project / "README.md").read_text(), "Containers")
    run = next(line for line in block.lines() if line.startswith("docker run"))
    assert "--read-only" in run and "--tmpfs /tmp" in run
    assert "/app/instance" in run, "SQLite writes its folder: a volume there"


def test_the_instructor_block_tags_the_fork_and_returns() -> None:
    readme = (REPO / "README.md").read_text()
    first = next(b for b in readme_blocks(readme) if "cp presets/course.yml" in b.text)
    version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert version and f"git tag {version[1]}" in first.text
    assert first.lines()[-1] == "cd ..", "block 2 runs from the folder block 1 started in"
    assert "tag" in readme.split("## Use it for a real project", 1)[1].split("###", 1)[0]
