"""The template repos the update tests clone, built once per session (per xdist worker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.template_versions import build_release_versions, build_template_versions


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_template_versions(tmp_path_factory.mktemp("versions") / "copier-flask")


@pytest.fixture(scope="session")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_release_versions(tmp_path_factory.mktemp("released") / "copier-flask")
