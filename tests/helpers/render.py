"""Rendering the template and looking at what it produced."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

# Rendered code that the tests run must run on this interpreter.
RUNNING_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

BASE_ANSWERS: dict[str, Any] = {
    "project_name": "Demo Shop",
    "author_name": "Test Author",
    "author_email": "author@example.com",
    "python_version": RUNNING_PYTHON,
}

SWITCHES = ("with_docker", "with_nginx", "with_procfile")

# Leftover Jinja: an unrendered expression or statement. (Flask templates in
# <package>/templates legitimately contain Jinja, so they are not scanned.)
JINJA_LEFTOVER = re.compile(r"\{\{\s*[a-z_]+[^}]*\}\}|\{%-?\s*(if|for|endif|endfor|raw)\b")


def render(copie: Any, **answers: Any) -> Path:
    """Render with BASE_ANSWERS + `answers`; fail with Copier's error if it did not work."""
    result = copie.copy(extra_answers={**BASE_ANSWERS, **answers})
    assert result.exit_code == 0, result.exception
    assert result.project_dir is not None
    return Path(result.project_dir)


def project_files(project: Path) -> list[Path]:
    """Every file of a rendered project, relative, sorted."""
    return sorted(p.relative_to(project) for p in project.rglob("*") if p.is_file())


def jinja_leftovers(project: Path, package: str) -> list[str]:
    """`file: match` for every unrendered Jinja marker outside the Flask templates."""
    found = []
    for rel in project_files(project):
        if rel.parts[:2] == (package, "templates") or rel.suffix in {".pyc"}:
            continue
        text = (project / rel).read_text(errors="replace")
        found += [f"{rel}: {m.group(0)}" for m in JINJA_LEFTOVER.finditer(text)]
        if rel.suffix == ".jinja":
            found.append(f"{rel}: file kept its .jinja suffix")
    return found
