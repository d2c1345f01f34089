"""What a generated README and Copier's messages tell a user to type, run as printed.

A README's ```sh blocks (and the indented commands of Copier's messages) are
split into lines; each line runs literally in bash, in the project, in a clean
environment: PATH holds only the tools the text says to install, plus python3
and git; HOME is an empty folder (with git's identity, which every git user has
set); the machine's network settings pass through (its CA bundle and proxies),
nothing else. Placeholders come from one table, PLACEHOLDERS. A line that
starts a server runs in the background, is probed over loopback, then stopped
by its own PID. A failure names the variant, the block and the line.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import copier

from harness import REPO
from harness.http import Response, free_port
from harness.render import BASE_ANSWERS
from harness.serving import Served, serve
from harness.tools import require_tool

# The machine's network settings (DESIGN §6): the CA bundle and proxies.
PASS_THROUGH = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
)

# Every placeholder a reader replaces, and what the tests type instead. Values
# that depend on the run (a path) are filled in by the caller.
PLACEHOLDERS: dict[str, str] = {
    "NAME": "humanize",  # `uv add NAME`: a small package no variant depends on
}

# A line that starts a server (see serving), and one whose server reads the
# development .env (FLASK_DEBUG=1) that Copier's task writes.
SERVER_LINE = re.compile(r"flask run|gunicorn |run_granian\.py|honcho start web|waitress-serve")
READS_DOTENV = re.compile(r"flask run|honcho |--env-file \.env")


@dataclass(frozen=True)
class Block:
    section: str
    language: str
    text: str

    def lines(self) -> list[str]:
        """Its commands: continuation lines joined, blank and comment-only lines dropped."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [
            line.strip()
            for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]


def readme_blocks(markdown: str, language: str = "sh") -> list[Block]:
    """Every fenced block of `language` (indented ones in a list item too), with
    the `##` section it sits in."""
    found = []
    section = ""
    fence = re.compile(rf"^( *)```{language}\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)
    position = 0
    for match in fence.finditer(markdown):
        headings = re.findall(r"^## (.+)$", markdown[position : match.start()], re.MULTILINE)
        section = headings[-1] if headings else section
        position = match.start()
        found.append(Block(section, language, textwrap.dedent(match[2])))
    return found


def section(markdown: str, name: str) -> Block:
    """The first block of section `name`."""
    blocks = [b for b in readme_blocks(markdown) if b.section == name]
    assert blocks, f"no sh block in section {name!r}"
    return blocks[0]


def message_commands(message: str) -> list[str]:
    """The commands in one of Copier's messages: its indented lines, comments removed."""
    return [
        line.split("  #")[0].strip()
        for line in message.splitlines()
        if line.startswith("  ") and line.strip() and not line.strip().startswith("#")
    ]


def substitute(line: str, placeholders: Mapping[str, str]) -> str:
    """`line` with each placeholder (a whole word) replaced from the table."""
    for name, value in placeholders.items():
        line = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", value, line)
    return line


def copy_as_user(destination: Path, **answers: Any) -> str:
    """`copier copy --trust` of the working tree with BASE_ANSWERS + `answers`, its
    task included (it writes the development .env); the message Copier printed."""
    printed = io.StringIO()
    with redirect_stderr(printed):  # where Copier prints its messages
        copier.run_copy(
            str(REPO),
            destination,
            data={**BASE_ANSWERS, **answers},
            vcs_ref="HEAD",
            unsafe=True,
            defaults=True,
        )
    return printed.getvalue()


def user_bin(folder: Path, tools: list[str]) -> Path:
    """A folder of links to `tools` (as the text says to install them), plus
    python3 and git: the PATH a new user has."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in [*tools, "python3", "git", "bash", "env"]:
        target = Path(require_tool(name)) if name not in ("python3",) else Path("/usr/bin/python3")
        link = folder / name
        if not link.exists():
            link.symlink_to(target)
    return folder


def user_environment(home: Path, bindir: Path, **extra: str) -> dict[str, str]:
    """A clean environment: `bindir` and the system's folders without any
    Python but python3 (Debian has no `python`), an empty HOME with git's
    identity, the network settings, and uv's shared cache so that packages
    are not downloaded again for every test."""
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text("[user]\n\tname = A User\n\temail = user@example.com\n")
    env = {name: os.environ[name] for name in PASS_THROUGH if name in os.environ}
    env |= {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(home),
        "UV_CACHE_DIR": str(Path.home() / ".cache" / "uv"),
        "LANG": "C.UTF-8",
    }
    return env | extra


@dataclass
class LineResult:
    line: str
    returncode: int
    output: str


def run_line(line: str, cwd: Path, env: Mapping[str, str], timeout: float = 600) -> LineResult:
    """One line in bash, as typed at a prompt."""
    result = subprocess.run(
        [shutil.which("bash", path=env["PATH"]) or "/bin/bash", "-c", line],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return LineResult(line, result.returncode, result.stdout + result.stderr)


def run_lines(lines: list[str], cwd: Path, env: Mapping[str, str], where: str) -> None:
    """Each line in order (run_line); fail at the first that fails, naming it."""
    for line in lines:
        result = run_line(line, cwd, env)
        assert result.returncode == 0, f"{where}, line: {line}\n{result.output}"


@contextmanager
def serving(line: str, cwd: Path, env: Mapping[str, str], logs: Path) -> Iterator[Served]:
    """A server line in the background on a free loopback port, until it answers
    /healthz; stopped by its PID on exit (bash execs the server). The port is
    the only setting the tier adds: FLASK_RUN_PORT for `flask run`, else PORT
    and HOST (harness.serving.serve sets those for every command)."""
    port = free_port()
    settings = {"FLASK_RUN_PORT": str(port)} if "flask run" in line else {}
    # `exec` goes before the last command of `a && b`, after its VAR=value prefix.
    before, and_, last = line.rpartition("&& ")
    assignments, command = re.match(r"((?:\w+=\S+\s+)*)(.*)", last, re.DOTALL).groups()  # type: ignore[union-attr]
    script = ["bash", "-c", f"{before}{and_}{assignments}exec {command}"]
    with serve(cwd, logs, {**env, **settings}, command=script, port=port, timeout=120) as served:
        yield served


# ---- a whole README, one terminal session ----------------------------------------------

# Commands this machine cannot run, by their first word, and why: these lines
# are counted as skipped, never as passed.
CANNOT_RUN_HERE = {
    "sudo": "installs system packages: the tier's PATH holds what it installs (uv)",
    "docker": "no Docker engine here (the container tier builds and runs the image with podman)",
    "kubectl": "no Kubernetes cluster here (the container tier plays the manifests with podman)",
    "copier": "needs a tagged template (the update tier runs these against tagged versions)",
    "apt": "installs system packages as root (here: certbot, which needs a public name)",
}
# Whole sections this tier leaves to another one, and why.
SECTIONS_RUN_ELSEWHERE = {
    "Deploy on a Linux host": "needs a systemd host (tests/as_printed/test_host_deploy.py)",
    "Update from the template": "needs a tagged template (the update tier runs it)",
    "Kubernetes": CANNOT_RUN_HERE["kubectl"],
}


@dataclass
class Session:
    """One terminal: the variables and folder each line leaves for the next."""

    cwd: Path
    env: dict[str, str]
    logs: Path
    lines_run: int = 0
    skipped: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def run(self, line: str, timeout: float = 600) -> LineResult:
        """`line` in bash; exports and `cd` carry over to the next line."""
        state = self.logs / "state"
        script = f'{line}\n__rc=$?\nenv -0 > "{state}.env"; pwd > "{state}.pwd"\nexit $__rc\n'
        result = run_line(script, self.cwd, self.env, timeout)
        result.line = line
        if (state.with_suffix(".env")).exists():
            pairs = (state.with_suffix(".env")).read_bytes().split(b"\0")
            env = dict(p.decode().split("=", 1) for p in pairs if b"=" in p)
            env.pop("__rc", None)
            env.pop("OLDPWD", None)
            env.pop("PWD", None)
            env.pop("SHLVL", None)
            env.pop("_", None)
            self.env = env
            self.cwd = Path((state.with_suffix(".pwd")).read_text().strip())
        self.lines_run += 1
        return result


def probe(server: Served, with_database: bool, development: bool) -> list[str]:
    """What a user looks at once a server runs; the problems found. A write to
    the example API is open in development; in production, with no API_TOKEN
    set (the README says to set one), it is refused naming that setting."""
    problems = []
    for path in ("/healthz", "/", *(["/items"] if with_database else [])):
        status = server.get(path).status
        if status != 200:
            problems.append(f"GET {path}: {status}")
    if with_database:
        created = create_item(server)
        expected = 201 if development else 403
        if created.status != expected or not (development or b"API_TOKEN" in created.body):
            problems.append(
                f"POST /items: {created.status}, not {expected}: {created.body[:200]!r}"
            )
    return problems


def create_item(server: Served) -> Response:
    """POST /items, as the README's example does."""
    return server.request(
        "POST", "/items", b'{"name": "tea"}', {"Content-Type": "application/json"}
    )


def run_block(
    session: Session,
    name: str,
    lines: list[str],
    placeholders: Mapping[str, str],
    with_database: bool,
) -> None:
    """Every line of one block, in order; failures are recorded, not raised, so
    that one run reports every broken line of a README."""
    cannot: str | None = None
    for printed in lines:
        tool = printed.split()[0]
        if tool in CANNOT_RUN_HERE or cannot:
            reason = CANNOT_RUN_HERE.get(tool) or f"follows a line that cannot run here: {cannot}"
            session.skipped.append(f"{name}: {printed} ({reason})")
            # What follows a docker or kubectl line uses what it made; after an
            # install line the tier has what it installs.
            if tool != "sudo" and not cannot:
                cannot = printed
            continue
        line = substitute(printed, placeholders)
        if SERVER_LINE.search(line) and not line.startswith("cd "):
            session.lines_run += 1
            try:
                with serving(line, session.cwd, session.env, session.logs) as server:
                    problems = probe(server, with_database, bool(READS_DOTENV.search(line)))
            except AssertionError as exc:
                problems = [str(exc)[-1500:]]
            session.failures += [f"{name}, line: {printed}: {p}" for p in problems]
            continue
        result = session.run(line)
        if result.returncode != 0:
            session.failures.append(
                f"{name}, line: {printed}: exit {result.returncode}\n{result.output[-1500:]}"
            )


# ---- a block run in one shell elsewhere (a systemd host) -----------------------------


def marked_script(lines: list[str], placeholders: Mapping[str, str]) -> str:
    """One script running `lines` in order, stopping at the first that fails,
    and saying on stderr which line it starts before each (failed_line)."""
    steps = [
        f"echo {shlex.quote('@@line ' + line)} >&2" + "\n" + substitute(line, placeholders)
        for line in lines
    ]
    return "set -e\n" + "\n".join(steps) + "\n"


def failed_line(stderr: str) -> str | None:
    """The printed line a marked script stopped at."""
    marks = re.findall(r"^@@line (.*)$", stderr, flags=re.MULTILINE)
    return marks[-1] if marks else None
