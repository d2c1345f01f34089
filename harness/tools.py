"""Finding external tools, and what to do when one is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip locally; under CI a missing tool is a failure, never a silent skip."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """The path of `name` next to this interpreter or on PATH, else skip/fail."""
    here = Path(sys.executable).parent / name
    path = str(here) if here.exists() else shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} is not installed")
    return str(path)


def run_tool(
    name: str, *args: str, timeout: float = 120, **options: Any
) -> subprocess.CompletedProcess[str]:
    """The tool `name` (see require_tool) run with `args`, its output captured as text."""
    command = [require_tool(name), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **options)
