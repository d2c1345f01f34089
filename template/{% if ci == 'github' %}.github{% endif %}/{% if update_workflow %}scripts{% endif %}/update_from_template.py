"""Update this project from its Copier template on a branch of its own, for review.

The weekly workflow (.github/workflows/template-update.yml) runs this script, and
so can you, from the project's root with everything committed:

    python3 .github/scripts/update_from_template.py

It asks Copier whether the template has a newer version. If it has, the script
creates the branch template-update/VERSION, runs `copier update --trust
--defaults` there and commits the result, conflicts included: nothing is lost,
and the pull request shows them. It writes the pull request's text: the files
with conflicts and the template's CHANGELOG entries between the two versions.
The branch you started on is never changed.

Standard library only, plus git and Copier (`pipx install copier`, or
`uv tool install copier`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BRANCH_PREFIX = "template-update/"
# GitHub refuses pull request texts over 65,536 characters.
BODY_LIMIT = 60_000
# Markers a CHANGELOG heading starts with: "## 1.2.0" or "## [1.2.0] - 2026-01-31".
HEADING = re.compile(r"^## \[?v?(\d+(?:\.\d+)*)")


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command in the project; its output as text, an error if it fails."""
    result = subprocess.run(command, capture_output=True, text=True)  # noqa: S603
    if check and result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return result


def git(*args: str) -> str:
    return run("git", *args).stdout


def copier(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Copier from this interpreter when it has it, else the `copier` on PATH."""
    if importlib.util.find_spec("copier"):
        return run(sys.executable, "-m", "copier", *args, check=check)
    found = shutil.which("copier")
    if found is None:
        sys.exit("Copier is not installed: pipx install copier (or: uv tool install copier)")
    return run(found, *args, check=check)


def answer(name: str) -> str:
    """One value of .copier-answers.yml (plain `key: value` lines, as Copier writes them)."""
    text = Path(".copier-answers.yml").read_text(encoding="utf-8")
    found = re.search(rf"^{name}: *(.*)$", text, re.MULTILINE)
    return found[1].strip().strip("'\"") if found else ""


def version_key(version: str) -> tuple[int, ...]:
    """1.10.0 sorts after 1.9.0; a suffix (.post3, -2-gabc123) does not count."""
    release = re.match(r"v?(\d+(?:\.\d+)*)", version)
    numbers = [int(part) for part in release[1].split(".")] if release else [0]
    return tuple(numbers + [0] * (4 - len(numbers)))


def conflicted_files() -> list[str]:
    """Files git holds as unmerged (inline markers) and rejected hunks (*.rej)."""
    found = set(git("diff", "--name-only", "--diff-filter=U").splitlines())
    for extra in ([], ["--ignored"]):  # a project may git-ignore *.rej
        rejected = git("ls-files", "--others", *extra, "--exclude-standard", "*.rej")
        found.update(rejected.splitlines())
    return sorted(found)


def template_changelog(src_path: str, ref: str) -> str | None:
    """The template's CHANGELOG.md at `ref`, or None if it has none."""
    url = src_path.removeprefix("git+")
    for short, host in (("gh:", "https://github.com/"), ("gl:", "https://gitlab.com/")):
        if url.startswith(short):
            url = host + url.removeprefix(short)
    with tempfile.TemporaryDirectory() as clone:
        if run("git", "clone", "--quiet", "--no-checkout", url, clone, check=False).returncode:
            return None
        shown = run("git", "-C", clone, "show", f"{ref}:CHANGELOG.md", check=False)
        return shown.stdout if shown.returncode == 0 else None


def changes_between(changelog: str, old: str, new: str) -> str:
    """The CHANGELOG sections for versions after `old`, up to and including `new`,
    their headings one level down so that they nest in the pull request's text."""
    kept: list[str] = []
    keep = False
    for line in changelog.splitlines():
        heading = HEADING.match(line)
        if heading:
            keep = version_key(old) < version_key(heading[1]) <= version_key(new)
        if keep:
            kept.append("#" + line if line.startswith("##") else line)
    return "\n".join(kept).strip()


def pull_request_body(old: str, new: str, conflicts: list[str], changed: list[str]) -> str:
    lines = [
        f"Updates this project from template version {old} to {new} with "
        "`copier update --trust --defaults` (`.github/scripts/update_from_template.py`).",
        "",
    ]
    if conflicts:
        lines += [
            f"## Conflicts ({len(conflicts)})",
            "",
            "You and the template changed the same lines in these files. Each holds both "
            "versions, yours between `<<<<<<< before updating` and `=======`, the template's "
            "before `>>>>>>> after updating`; a `.rej` file holds a change that did not fit:",
            "",
            *[f"- `{name}`" for name in conflicts],
            "",
            "Resolve them on this branch: `git fetch origin && git switch "
            f"{BRANCH_PREFIX}{new}`, edit each file to what it should be, delete the marker "
            "lines (and the `.rej` files), run the tests, commit and push.",
            "",
        ]
    else:
        lines += ["## Conflicts", "", "None: every change merged cleanly.", ""]
    lines += [f"## Files changed ({len(changed)})", "", *[f"- `{name}`" for name in changed], ""]
    changelog = template_changelog(answer("_src_path"), answer("_commit"))
    entries = changes_between(changelog, old, new) if changelog else ""
    lines += [
        "## What changed in the template",
        "",
        entries or "The template's CHANGELOG.md has no entries for these versions.",
        "",
        "If the update went wrong, close this pull request and delete its branch; "
        "`copier recopy --trust --defaults --overwrite` renders the template afresh with your "
        "answers, for a clean look at what it would give you today.",
    ]
    body = "\n".join(lines) + "\n"
    if len(body) > BODY_LIMIT:
        body = body[:BODY_LIMIT] + "\n\n(Cut here: the CHANGELOG has the rest.)\n"
    return body


def write_outputs(**outputs: str) -> None:
    """Values for the workflow's next steps, when GitHub Actions runs this."""
    if "GITHUB_OUTPUT" in os.environ:
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as file:
            file.writelines(f"{key}={value}\n" for key, value in outputs.items())


def update(body_file: Path, remote: str | None, copier_args: list[str]) -> int:
    if git("status", "--porcelain"):
        sys.exit("Commit or stash your changes first: Copier only updates a clean work tree.")
    status = json.loads(copier("check-update", "--output-format=json").stdout)
    old, new = status["current_version"], status["latest_version"]
    if not status["update_available"]:
        print(f"Up to date: template version {old} is the newest.")
        write_outputs(branch="")
        return 0
    branch = BRANCH_PREFIX + new
    if remote and git("ls-remote", "--heads", remote, f"refs/heads/{branch}"):
        print(f"{branch} already exists on {remote}: review its pull request, or delete it.")
        write_outputs(branch="")
        return 0

    start = git("rev-parse", "--abbrev-ref", "HEAD").strip()
    git("switch", "--quiet", "-c", branch)
    print(f"Updating this project from template version {old} to {new}, on {branch}:", flush=True)
    # --quiet: Copier's own messages would tell you to commit, which this
    # script does; the template's report (conflicts, removed files) still prints.
    result = copier("update", "--trust", "--defaults", "--quiet", *copier_args, check=False)
    print(result.stdout + result.stderr, end="")
    if result.returncode != 0:
        # The tree was clean: this removes only what the failed update wrote.
        git("reset", "--quiet", "--hard")
        git("clean", "--quiet", "-fd")
        git("switch", "--quiet", start)
        git("branch", "--quiet", "-D", branch)
        sys.exit(f"copier update failed (exit {result.returncode}); {start} is unchanged.")

    conflicts = conflicted_files()
    git("add", "--all")
    rejected = [name for name in conflicts if name.endswith(".rej")]
    if rejected:
        git("add", "--force", *rejected)
    changed = git("diff", "--cached", "--name-only", "--no-renames").splitlines()
    new = answer("_commit") or new
    title = f"Update from the template: {old} → {new}"
    message = title
    if conflicts:
        message += "\n\nConflicts to resolve:\n" + "".join(f"  {name}\n" for name in conflicts)
    # --no-verify: hooks that refuse conflict markers would stop the commit that
    # carries them to the pull request, where they are reviewed and resolved.
    git("commit", "--quiet", "--no-verify", "--allow-empty", "-m", message)

    body_file.parent.mkdir(parents=True, exist_ok=True)
    body_file.write_text(pull_request_body(old, new, conflicts, changed), encoding="utf-8")
    print(f"\nCommitted on {branch}: {len(changed)} file(s) changed, {len(conflicts)} conflict(s).")
    print(f"Pull request text: {body_file}")
    print(f"Review with `git diff {start}...{branch}`; merge it into {start} when it is right.")
    print(
        f"Not what you want? `git switch {start} && git branch -D {branch}` drops it; "
        "`copier recopy --trust --defaults --overwrite` renders the template afresh."
    )
    write_outputs(branch=branch, title=title, conflicts=str(len(conflicts)))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--body-file",
        type=Path,
        default=Path(".git", "TEMPLATE_UPDATE.md"),
        help="where to write the pull request's text (default: .git/TEMPLATE_UPDATE.md)",
    )
    parser.add_argument(
        "--remote", help="do nothing if this remote already has the update's branch"
    )
    parser.add_argument(
        "copier_args",
        nargs="*",
        help="after --, more options for copier update (e.g. -- --data with_docker=true)",
    )
    args = parser.parse_args()
    return update(args.body_file, args.remote, args.copier_args)


if __name__ == "__main__":
    sys.exit(main())
