"""Rendering the template and looking at what it produced."""

from __future__ import annotations

import atexit
import functools
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2_ansible_filters import AnsibleCoreFiltersExtension

from harness import REPO

# Rendered code that the tests run must run on this interpreter.
RUNNING_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

BASE_ANSWERS: dict[str, Any] = {
    "project_name": "Demo Shop",
    "author_name": "Test Author",
    "author_email": "author@example.com",
    "python_version": RUNNING_PYTHON,
}

#: The presets in presets/, by name (course, production, ...).
PRESETS = sorted(path.stem for path in (REPO / "presets").glob("*.yml"))

SWITCHES = ("with_docker", "with_nginx", "with_procfile")

# Leftover Jinja: an unrendered expression or statement. (Flask templates in
# <package>/templates legitimately contain Jinja, so they are not scanned; nor
# are GitHub Actions expressions, ${{ ... }}.)
JINJA_LEFTOVER = re.compile(r"(?<!\$)\{\{\s*[a-z_]+[^}]*\}\}|\{%-?\s*(if|for|endif|endfor|raw)\b")


def render(copie: Any, **answers: Any) -> Path:
    """Render with BASE_ANSWERS + `answers`; fail with Copier's error if it did not work.

    From the working tree's snapshot (template_snapshot), so .copier-answers.yml
    records no _commit; the update tests, which need one, render template
    releases (harness/template_versions.py).
    """
    result = copie.copy(extra_answers={**BASE_ANSWERS, **answers}, template_dir=template_snapshot())
    assert result.exit_code == 0, result.exception
    assert result.project_dir is not None
    return Path(result.project_dir)


def render_preset(preset: str, destination: Path) -> Path:
    """The README's `copier copy --data-file presets/PRESET.yml`, as an instructor runs it
    (from template_snapshot), with this interpreter's Python (tests run the code)."""
    template = template_snapshot()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "copier", "copy", "--trust", "--defaults"),
            *("--data-file", str(template / "presets" / f"{preset}.yml")),
            *("--data", f"python_version={RUNNING_PYTHON}"),
            *(str(template), str(destination)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return destination


@functools.cache
def template_snapshot(destination: Path | None = None) -> Path:
    """The working tree (what `vcs_ref="HEAD"` renders, local edits included) as a plain folder
    that Copier reads in place, without the git clone it makes of a repository on every run;
    by default one temporary folder per process, removed at exit."""
    if destination is None:
        destination = Path(tempfile.mkdtemp(prefix="copier-flask-template-"))
        atexit.register(shutil.rmtree, destination, ignore_errors=True)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # not a file deleted in the working tree
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


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
    """`file:line: what` for every mark a template left in rendered text (it must read as
    written by hand): a line over 100 characters (unless it only holds a URL, or sits in a
    fenced code block), trailing whitespace, a doubled blank line outside Python, or blank
    lines at the end of a file."""
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
            bare = re.sub(r"https?://\S+", "", line)
            only_a_url = bare != line and not re.sub(r"[\s#<>()\[\]:*-]", "", bare)
            if len(line) > 100 and not fenced and not only_a_url:
                found.append(f"{where} {len(line)} characters")
            previous_blank = number > 1 and not lines[number - 2].strip()
            # Python keeps two blank lines around top-level definitions (PEP 8); so does
            # Alembic's script.py.mako.
            if rel.suffix not in {".py", ".mako"} and previous_blank and not line.strip():
                found.append(f"{where} a second blank line")
        if text.endswith("\n\n"):
            found.append(f"{rel}: blank lines at the end")
    return found


def k8s_manifests(project: Path) -> dict[str, dict[str, Any]]:
    """kind -> the manifest, for every file in deploy/k8s but the kustomization."""
    found = {}
    for path in sorted((project / "deploy/k8s").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            doc = yaml.safe_load(path.read_text())
            found[doc["kind"]] = doc | {"_file": path.name}
    return found


def validator(question: str) -> jinja2.Template:
    """A copier.yml question's validator as Copier renders it: plain text (no
    HTML to escape), importing from the template's root (includes/)."""
    env = jinja2.Environment(  # noqa: S701
        loader=jinja2.FileSystemLoader(REPO), extensions=[AnsibleCoreFiltersExtension]
    )
    questions = yaml.safe_load((REPO / "copier.yml").read_text())
    return env.from_string(questions[question]["validator"])
