"""The presets render with `copier copy --data-file` as the README says: the answers they
set, the files they promise, lint-clean. (tests/live/test_presets.py boots them.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness import REPO
from harness.render import PRESETS, RUNNING_PYTHON, render_preset
from harness.tools import run_tool

# What each preset promises: (files present, files absent).
COMMON = {"wsgi.py", "gunicorn.conf.py", "Procfile", ".github/workflows/ci.yml",
          ".github/workflows/template-update.yml"}  # fmt: skip
PROMISED = {
    "course": (
        COMMON | {"tests/test_views.py", ".github/scripts/update_from_template.py"},
        {"Dockerfile", "compose.yaml", "deploy", "migrations"},
    ),
    "production": (
        COMMON | {"Dockerfile", "compose.yaml", "deploy/nginx/include/site.conf",
                  "deploy/k8s/deployment.yaml", "deploy/systemd", "migrations/env.py"},
        set(),
    ),
}  # fmt: skip


def preset_answers(preset: str) -> dict[str, object]:
    return yaml.safe_load((REPO / "presets" / f"{preset}.yml").read_text())


def test_every_preset_is_listed_here_and_only_sets_questions() -> None:
    assert PRESETS == sorted(PROMISED), "a new preset needs its promises in PROMISED"
    questions = {k for k in yaml.safe_load((REPO / "copier.yml").read_text()) if k[0] != "_"}
    for name in PRESETS:
        preset = preset_answers(name)
        assert set(preset) <= questions, f"{name}: {set(preset) - questions} are not questions"


@pytest.mark.parametrize("name", PRESETS)
def test_preset_answers_are_recorded_and_promised_files_lint_clean(
    name: str, tmp_path: Path
) -> None:
    # In a folder named after the preset.
    rendered = render_preset(name, tmp_path / name)
    preset = preset_answers(name)
    answers = yaml.safe_load((rendered / ".copier-answers.yml").read_text())
    assert {key: answers.get(key) for key in preset} == preset
    assert answers["python_version"] == RUNNING_PYTHON, "--data wins over --data-file"
    present, absent = PROMISED[name]
    assert [name for name in sorted(present) if not (rendered / name).exists()] == []
    assert [name for name in sorted(absent) if (rendered / name).exists()] == []
    for command in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        result = run_tool("ruff", *command, cwd=rendered)
        assert result.returncode == 0, result.stdout + result.stderr
