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
# <package>/templates legitimately contain Jinja, so they are not scanned; nor
# are GitHub Actions expressions, ${{ ... }}.)
JINJA_LEFTOVER = re.compile(r"(?<!\$)\{\{\s*[a-z_]+[^}]*\}\}|\{%-?\s*(if|for|endif|endfor|raw)\b")

# Rendered text must read as if written by hand (see text_problems).
MAX_LINE = 100
URL = re.compile(r"https?://\S+")
# Python keeps two blank lines around top-level definitions (PEP 8); Alembic's
# script.py.mako is a Python file too.
PYTHON_SUFFIXES = {".py", ".mako"}


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


def text_problems(project: Path) -> list[str]:
    """`file:line: what` for every mark a template left in rendered text: a
    line over MAX_LINE characters (unless it only holds a URL, or sits in a
    fenced code block), trailing whitespace, a doubled blank line outside
    Python, or blank lines at the end of a file."""
    found = []
    for rel in project_files(project):
        if rel.name == "uv.lock":  # written by uv, not by hand (nor by Jinja)
            continue
        try:
            text = (project / rel).read_text()
        except UnicodeDecodeError:  # a binary file (a .pyc)
            continue
        lines = text.split("\n")
        fenced = False
        for number, line in enumerate(lines, 1):
            where = f"{rel}:{number}:"
            if line.lstrip().startswith("```"):
                fenced = not fenced
            if line != line.rstrip():
                found.append(f"{where} trailing whitespace")
            only_a_url = URL.search(line) and not re.sub(r"[\s#<>()\[\]:*-]", "", URL.sub("", line))
            if len(line) > MAX_LINE and not fenced and not only_a_url:
                found.append(f"{where} {len(line)} characters")
            previous_blank = number > 1 and not lines[number - 2].strip()
            if rel.suffix not in PYTHON_SUFFIXES and previous_blank and not line.strip():
                found.append(f"{where} a second blank line")
        if text.endswith("\n\n"):
            found.append(f"{rel}: blank lines at the end")
    return found
