"""The template repos the update tests share, built once per session (per
pytest-xdist worker); tests only clone them."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.template_versions import build_release_versions, build_template_versions


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tags 1.0.0 (the working tree) and 2.0.0 (harness/template_versions.py)."""
    return build_template_versions(tmp_path_factory.mktemp("versions") / "copier-flask")


@pytest.fixture(scope="session")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tags 0.1.0 (as released) and pyproject.toml's version (the working tree)."""
    return build_release_versions(tmp_path_factory.mktemp("released") / "copier-flask")
