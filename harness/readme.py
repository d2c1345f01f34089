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

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.http import free_port, http_get, http_request
from harness.processes import Process, start, stop
from harness.tools import require_tool
from harness.waiting import eventually

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

# A line that starts a server, and the variables that keep it on a free
# loopback port (the only settings the tier adds to what the text sets).
SERVER_LINE = re.compile(r"flask run|gunicorn |run_granian\.py|honcho start web|waitress-serve")


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
    """Every fenced block of `language`, with the `##` section it sits in."""
    found = []
    section = ""
    fence = re.compile(rf"^```{language}\n(.*?)^```$", re.MULTILINE | re.DOTALL)
    position = 0
    for match in fence.finditer(markdown):
        headings = re.findall(r"^## (.+)$", markdown[position : match.start()], re.MULTILINE)
        section = headings[-1] if headings else section
        position = match.start()
        found.append(Block(section, language, match[1]))
    return found


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


@contextmanager
def serving(
    line: str, cwd: Path, env: Mapping[str, str], log: Path, port: int, ready_path: str = "/healthz"
) -> Iterator[Process]:
    """A server line in the background (bash execs it, so its PID is the
    server's), answering on 127.0.0.1:`port`; stopped by that PID on exit."""
    # `exec` goes after any VAR=value prefix, so bash itself becomes the server.
    assignments, command = re.match(r"((?:\w+=\S+\s+)*)(.*)", line, re.DOTALL).groups()  # type: ignore[union-attr]
    server = start(["bash", "-c", f"{assignments}exec {command}"], cwd, env, log)
    try:

        def answering() -> bool:
            server.assert_alive()
            return bool(http_get(port, ready_path, timeout=2))

        eventually(answering, 120, what=f"{line} answering {ready_path}")
        yield server
    finally:
        stop(server)


def where(variant: str, block: Block, line: str) -> str:
    """How a failure names what failed."""
    return f"[{variant}] README section {block.section!r}, line: {line}"


# ---- a whole README, one terminal session ----------------------------------------------

# Commands this machine cannot run, by their first word, and why: these lines
# are counted as skipped, never as passed.
CANNOT_RUN_HERE = {
    "sudo": "installs system packages: the tier's PATH holds what it installs (uv)",
    "docker": "no Docker engine here (the container tier builds and runs the image with podman)",
    "kubectl": "no Kubernetes cluster here (the container tier plays the manifests with podman)",
    "copier": "needs a tagged template (the update tier runs these against tagged versions)",
}
# Whole sections this tier leaves to another one, and why.
SECTIONS_RUN_ELSEWHERE = {
    "Deploy on a Linux host": "needs a systemd host (not built yet)",
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


def probe(port: int, with_database: bool) -> list[str]:
    """What a user looks at once a server runs; the problems found."""
    problems = []
    for path in ("/healthz", "/"):
        status = http_get(port, path).status
        if status != 200:
            problems.append(f"GET {path}: {status}")
    if with_database:
        status = http_get(port, "/items").status
        if status != 200:
            problems.append(f"GET /items: {status}")
        created = http_request(
            port, "POST", "/items", b'{"name": "tea"}', {"Content-Type": "application/json"}
        )
        if created.status != 201:
            problems.append(f"POST /items: {created.status} {created.body[:200]!r}")
    return problems


def server_settings(line: str, port: int) -> dict[str, str]:
    """The loopback port for a server line: the only settings the tier adds."""
    if "flask run" in line:
        return {"FLASK_RUN_PORT": str(port)}
    return {"PORT": str(port), "HOST": "127.0.0.1"}


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
            port = free_port()
            log = session.logs / f"server-{session.lines_run}.log"
            session.lines_run += 1
            env = session.env | server_settings(line, port)
            try:
                with serving(line, session.cwd, env, log, port, "/healthz"):
                    problems = probe(port, with_database)
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
