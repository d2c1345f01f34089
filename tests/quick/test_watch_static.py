"""The HTTPS override for the compose stack, read without running it
(tests/live/test_watch.py serves it)."""

from __future__ import annotations

from pathlib import Path

from harness.tools import check_jsonschema


def test_compose_https_matches_the_compose_spec(default_project: Path) -> None:
    result = check_jsonschema(default_project, "vendor.compose-spec", "compose.https.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
