"""A fresh clone has no .env (git-ignored): the README's lines make one that compose
reads (issue "Every command a user is told to type works as printed")."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from dotenv import dotenv_values

from harness.images import podman_compose
from harness.readme import copy_as_user, readme_blocks, run_lines, user_bin, user_environment


def test_compose_in_a_fresh_clone_gets_its_env_from_the_readme(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    copy_as_user(project, database="postgresql")
    (project / ".env").unlink()
    env = user_environment(tmp_path / "home", user_bin(tmp_path / "bin", ["grep"]))
    readme = (project / "README.md").read_text()
    block = next(b for b in readme_blocks(readme) if ".env.example" in b.text)
    run_lines(block.lines(), project, env, "[postgresql] Containers")
    settings = dotenv_values(project / ".env")
    assert len(settings["FLASK_SECRET_KEY"] or "") == 64
    assert (project / ".env").read_text().count("FLASK_SECRET_KEY=") == 1
    password = settings["POSTGRES_PASSWORD"]
    assert password
    # Only what the user's shell has: compose must find every setting in .env.
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home")}
    compose = podman_compose(clean, project, "config", timeout=60)
    assert compose.returncode == 0, compose.stdout + compose.stderr
    web = yaml.safe_load(compose.stdout)["services"]["web"]
    assert password in web["environment"]["DATABASE_URL"]
