"""Carry the user's edits of a file the template moved to the file's new place.

    python move_path.py OLD NEW      (paths relative to the project root, the cwd)

A template version that moves OLD to NEW lists this in `_migrations`. Copier
alone sees "OLD was deleted, NEW was added": it deletes the user's edited OLD
(git history keeps it) and writes a fresh NEW. Running after Copier's merge,
this script merges the edits back in, three ways, as Copier does for files that
stay put: ours = OLD as last committed, base = OLD as the old template version
rendered it, theirs = NEW as the new version renders it. Lines both changed
get Copier's own conflict markers and the file is marked unmerged in git.

OLD and NEW may name answers, as `{project_slug}`: OLD is filled from the
answers before the update, NEW from those after (Copier records both).

Nothing is lost whatever happens: the update started from a clean, committed
tree, so OLD stays in git history (`git show HEAD:OLD`). Idempotent: it acts
only when OLD is gone and NEW is new; run again, a clean merge merges to the
same result and a conflicted one is left alone.
Standard library only, plus the git that `copier update` needs; the base is
rendered by the Copier that runs the script (`VERSION_FROM` is the old
version); without it, the merge is two-way (every difference is a conflict).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ANSWERS_FILE = ".copier-answers.yml"
# Copier's own labels: users (and report_update.py) meet one kind of marker.
LABELS = ["before updating", "last update", "after updating"]
MARKER = b"<<<<<<< before updating"
# A top-level `key: value` line of the answers file: enough YAML for the
# answers a path can use (slugs and package names are validated plain words).
ANSWER_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*): *(.*?) *$")
# The template's root: this file is <template>/hooks/migrations/move_path.py.
TEMPLATE = Path(__file__).resolve().parents[2]


def git(root: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=root, input=stdin, capture_output=True, check=False)


def committed(root: Path, rel: str) -> bytes | None:
    """`rel` as in the last commit, or None if it was not there."""
    shown = git(root, "show", f"HEAD:./{rel}")
    return shown.stdout if shown.returncode == 0 else None


def load_answers(text: str) -> dict[str, Any]:
    """The answers file's content; with PyYAML (Copier's interpreter has it) in full."""
    try:
        import yaml  # optional: Copier's interpreter has it, a bare python may not
    except ImportError:
        return {m[1]: m[2].strip("'\"") for m in map(ANSWER_LINE.match, text.splitlines()) if m}
    return dict(yaml.safe_load(text) or {})


def fill(path: str, answers: dict[str, Any]) -> str:
    """`path` with each `{answer}` replaced; refuses paths that leave the project."""
    try:
        filled = path.format_map(answers)
    except KeyError as missing:
        raise SystemExit(f"move_path: {ANSWERS_FILE} has no answer {missing}") from None
    if Path(filled).is_absolute() or ".." in Path(filled).parts:
        raise SystemExit(f"move_path: {filled!r} is not a path inside the project")
    return filled


def render_base(answers: dict[str, Any], old_rel: str) -> bytes | None:
    """OLD as the old template version rendered it, or None if that cannot be had."""
    version = os.environ.get("VERSION_FROM")  # set by Copier for migrations
    try:
        import copier  # optional, as above
    except ImportError:
        return None
    if not version:
        return None
    data = {k: v for k, v in answers.items() if not k.startswith("_")}
    with tempfile.TemporaryDirectory(prefix="move_path.") as tmp:
        try:
            copier.run_copy(
                str(TEMPLATE),
                tmp,
                data=data,
                vcs_ref=version,
                defaults=True,
                quiet=True,
                skip_tasks=True,  # its tasks already ran when the project was made
                unsafe=True,  # the same template the user trusted for this update
                overwrite=True,
            )
        except Exception as error:  # any failure: merge two ways rather than stop
            # Copier has already written the update; failing now would leave
            # the user's edits only in git history, so carry on without a base.
            print(f"move_path: could not render version {version} ({error})", flush=True)
            return None
        base = Path(tmp, old_rel)
        return base.read_bytes() if base.is_file() else None


def merge(ours: bytes, base: bytes, theirs: bytes) -> tuple[bytes, bool]:
    """git merge-file's result and whether it has conflicts."""
    with tempfile.TemporaryDirectory(prefix="move_path.") as tmp:
        files = [Path(tmp, name) for name in ("ours", "base", "theirs")]
        files[0].write_bytes(ours)
        files[1].write_bytes(base)
        files[2].write_bytes(theirs)
        labels = [arg for label in LABELS for arg in ("-L", label)]
        result = subprocess.run(
            ["git", "merge-file", "-p", *labels, *map(str, files)],
            capture_output=True,
            check=False,
        )
    if result.returncode < 0 or result.returncode > 127:
        raise SystemExit(f"move_path: git merge-file failed: {result.stderr.decode()}")
    return result.stdout, result.returncode > 0


def mark_unmerged(root: Path, rel: str, ours: bytes, base: bytes, theirs: bytes) -> None:
    """Record `rel` as a conflict in git's index, as Copier does for its own, so
    `git status` lists it and `git commit` waits until it is resolved."""
    mode = "100755" if os.access(root / rel, os.X_OK) else "100644"
    entries = []
    for stage, content in ((1, base), (2, ours), (3, theirs)):
        sha = git(root, "hash-object", "-w", "--stdin", stdin=content).stdout.decode().strip()
        entries.append(f"{mode} {sha} {stage}\t{rel}")
    index = git(root, "update-index", "--index-info", stdin="\n".join(entries).encode())
    if index.returncode:
        raise SystemExit(f"move_path: git update-index failed: {index.stderr.decode()}")


def carry(root: Path, old_arg: str, new_arg: str) -> str:
    """Merge the user's OLD into the template's NEW; say what was done."""
    before = committed(root, ANSWERS_FILE)
    old_answers = load_answers(before.decode()) if before else {}
    old_rel = fill(old_arg, old_answers)
    new_rel = fill(new_arg, load_answers((root / ANSWERS_FILE).read_text()))
    new = root / new_rel
    ours = committed(root, old_rel)
    if ours is None:
        return f"move_path: nothing to do, the project had no {old_rel}"
    if (root / old_rel).exists():
        return f"move_path: nothing to do, {old_rel} is still there (the template kept it)"
    if not new.is_file():
        return f"move_path: nothing to do, the template has no {new_rel} for this project"
    if committed(root, new_rel) is not None:
        return (
            f"move_path: {new_rel} existed before the update, so Copier merged into it; "
            f"your {old_rel} is in git history: git show HEAD:./{old_rel}"
        )
    theirs = new.read_bytes()
    if MARKER in theirs:
        return f"move_path: nothing to do, {new_rel} already holds a merge"
    base = render_base(old_answers, old_rel)
    if base == ours:
        return f"move_path: {old_rel} moved to {new_rel}; you had not changed it"
    merged, conflicted = merge(ours, base or b"", theirs)
    new.write_bytes(merged)
    how = "three-way" if base is not None else "two-way (no base: every difference conflicts)"
    if conflicted:
        mark_unmerged(root, new_rel, ours, base or b"", theirs)
        return (
            f"move_path: {old_rel} moved to {new_rel}; merged your edits ({how}), "
            "with conflicts to resolve"
        )
    return f"move_path: {old_rel} moved to {new_rel}; merged your edits ({how})"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {Path(argv[0]).name} OLD NEW", file=sys.stderr)
        return 2
    print(carry(Path.cwd(), argv[1], argv[2]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
