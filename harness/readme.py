"""The shell blocks of a rendered README, as a reader copies them.

A block is a fenced ```sh (or ```bash, ```console) block; `section` picks the
ones under one heading. Each block splits into commands with the README line
they start on, continuation lines (`\\`) and open parentheses or quotes joined,
so that a failure can name the line a reader typed.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

FENCE = re.compile(r"^```(\w*)\s*$")
SHELLS = {"sh", "bash", "shell", "console"}


@dataclass(frozen=True)
class Command:
    line: int  # 1-based, in the README
    text: str


@dataclass(frozen=True)
class Block:
    heading: str  # the nearest heading above it
    line: int  # its opening fence's line
    commands: tuple[Command, ...]


def shell_blocks(readme: str, section: str | None = None) -> list[Block]:
    """Every shell block (under the heading that starts with `section`, if given)."""
    blocks: list[Block] = []
    heading, fence, body = "", 0, []  # fence: the open block's line, 0 outside one
    for number, line in enumerate(readme.splitlines(), 1):
        match = FENCE.match(line.strip())
        if fence:
            if line.strip() == "```":
                if section is None or heading.lstrip("# ").startswith(section):
                    blocks.append(Block(heading, fence, tuple(_commands(body, fence + 1))))
                fence = 0
            else:
                body.append(line)
        elif match and match[1] in SHELLS:
            fence, body = number, []
        elif line.startswith("#"):
            heading = line.strip()
    return blocks


def _commands(lines: list[str], first: int) -> list[Command]:
    commands: list[Command] = []
    pending: list[str] = []
    start = first
    for offset, line in enumerate(lines):
        if not pending:
            start = first + offset
            if not line.strip() or line.lstrip().startswith("#"):
                continue
        pending.append(line)
        text = "\n".join(pending)
        if line.endswith("\\") or not _complete(text):
            continue
        commands.append(Command(start, text))
        pending = []
    assert not pending, f"an unfinished command at README line {start}: {pending}"
    return commands


def _complete(text: str) -> bool:
    """Whether `text` is a whole shell command (quotes and parentheses closed)."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:  # an open quote
        return False
    joined = " ".join(words)
    return joined.count("(") <= joined.count(")")


def substitute(text: str, placeholders: Mapping[str, str]) -> str:
    """The text with each placeholder (a word such as YOUR-REPOSITORY) replaced."""
    for word, value in placeholders.items():
        text = re.sub(rf"(?<![\w-]){re.escape(word)}(?![\w-])", value, text)
    return text


def marked_script(commands: list[Command], placeholders: Mapping[str, str]) -> str:
    """One script running `commands` in order, saying on stderr which README
    line it starts before each, and stopping at the first that fails."""
    mark = "echo '@@README-LINE {}' >&2\n{}"
    steps = [mark.format(c.line, substitute(c.text, placeholders)) for c in commands]
    return "set -e\n" + "\n".join(steps) + "\n"


def failed_line(stderr: str) -> int | None:
    """The README line of the command a marked script stopped at."""
    marks = re.findall(r"^@@README-LINE (\d+)$", stderr, flags=re.MULTILINE)
    return int(marks[-1]) if marks else None
