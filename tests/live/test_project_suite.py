"""A rendered project passes its own test suite, as rendered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness.render import render
from harness.venvs import run_project_tests

VARIANTS = {
    "defaults": {},
    "bare": {"with_docker": False, "with_nginx": False, "with_procfile": False, "ci": "none"},
    "other-names": {"project_name": "Inventory API", "package_name": "inventory"},
}


@pytest.mark.parametrize("answers", VARIANTS.values(), ids=VARIANTS.keys())
def test_rendered_project_passes_its_own_tests(
    copie: Any, answers: dict[str, Any], run_env: Callable[..., dict[str, str]]
) -> None:
    project = render(copie, **answers)
    result = run_project_tests(project, run_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
