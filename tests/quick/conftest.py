"""The quick tier's renders: each set of answers is rendered once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import REPO
from harness.render import BASE_ANSWERS, render

QUESTIONS = yaml.safe_load((REPO / "copier.yml").read_text())
# An answer equal to its default renders the same project as no answer.
DEFAULTS = {
    name: spec["default"]
    for name, spec in QUESTIONS.items()
    if name[0] != "_" and "{{" not in str(spec["default"])
} | BASE_ANSWERS


@pytest.fixture(scope="session")
def rendered(copie_session: Any, default_project: Path) -> Callable[..., Path]:
    """`rendered(**answers)`: the project for these answers, shared by every test
    of the session: read it, or copy it before changing it."""
    projects: dict[tuple[tuple[str, Any], ...], Path] = {(): default_project}

    def get(**answers: Any) -> Path:
        key = tuple(sorted((k, v) for k, v in answers.items() if DEFAULTS.get(k) != v))
        if key not in projects:
            projects[key] = render(copie_session, **answers)
        return projects[key]

    return get
