"""Say what a `copier update` left for the user: conflicts, and removed files.

Copier merges the template's changes into the project. Where the user and the
template changed the same lines it leaves conflict markers (or `*.rej` files
with `--conflict rej`) and records the files as unmerged in git, but does not
name them; files the new version no longer has (or that belong to an option
turned off) it deletes, even edited ones. A `_migrations` entry without a
version runs this after every update, so the command's output names both.
Read-only; standard library only, plus the git that `copier update` needs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def git_lines(root: Path, *args: str) -> list[str]:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    return [line for line in result.stdout.splitlines() if line]


def conflicts(root: Path) -> list[str]:
    """Unmerged files (inline markers) and rejected hunks (`*.rej`), sorted."""
    found = set(git_lines(root, "diff", "--name-only", "--diff-filter=U"))
    # Untracked and git-ignored ones both: a project may ignore `*.rej`.
    for extra in ([], ["--ignored"]):
        found.update(git_lines(root, "ls-files", "--others", *extra, "--exclude-standard", "*.rej"))
    return sorted(found)


def removed(root: Path) -> list[str]:
    """Committed files the update deleted from the work tree."""
    return git_lines(root, "diff", "--name-only", "--diff-filter=D")


def report(conflicted: list[str], deleted: list[str]) -> str:
    lines = []
    if conflicted:
        lines.append(
            f"copier update: {len(conflicted)} file(s) with conflicts. Where you and the "
            "template changed the same lines, they hold both versions between <<<<<<< before "
            "updating and >>>>>>> after updating; a .rej file holds a change that could not be "
            "applied. Resolve each and `git add` it:"
        )
        lines += [f"  {name}" for name in conflicted]
    if deleted:
        lines.append(
            f"copier update: {len(deleted)} file(s) removed (the template dropped or moved "
            "them, or an option is off); your last commit still has them: "
            "git restore --source=HEAD -- FILE"
        )
        lines += [f"  {name}" for name in deleted]
    if not conflicted:
        lines.append("copier update: no conflicts.")
    # What to do next is Copier's message after the update, which the update
    # script leaves out (it commits the result itself).
    return "\n".join(lines)


def main() -> int:
    root = Path.cwd()
    print(report(conflicts(root), removed(root)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
