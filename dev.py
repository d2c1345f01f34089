#!/usr/bin/env python3
"""The template's three entry points, for a fresh clone with Python 3.10+ and git.

    python3 dev.py demo    render a project with the defaults and serve it with gunicorn
    python3 dev.py test    run the template's test suite (extra arguments go to pytest)
    python3 dev.py lock    regenerate every variant's uv.lock and requirements.txt (locks/)

Each first makes `.venv` from the `test` group in pyproject.toml, so nothing
needs installing by hand: uv (pinned in that group) installs the group into a
virtualenv cached outside the clone under the hash of its inputs
(pyproject.toml and this Python), and `.venv` links to it, so a fresh clone of
an unchanged pyproject.toml reuses it at once. As root on Debian or Ubuntu,
`test` first installs the system tools some tests use (nginx, PostgreSQL,
podman, ...) with .ci/install-system-tools.sh, the script CI uses; elsewhere,
or with COPIER_FLASK_SYSTEM_TOOLS=0, those tests skip with the reason.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import venv
from pathlib import Path
from typing import NoReturn

REPO = Path(__file__).resolve().parent
VENV = REPO / ".venv"
BIN = VENV / "bin"
DEMO = REPO / "build" / "demo"
SYSTEM_TOOLS = REPO / ".ci" / "install-system-tools.sh"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "copier-flask"
# As in harness/tools.py: under CI a missing tool is a failure.
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def ensure_venv() -> None:
    """Point .venv at a virtualenv with pyproject.toml's `test` group, built by uv
    once per (pyproject.toml, Python) and cached outside the clone."""
    pyproject = (REPO / "pyproject.toml").read_bytes()
    key = hashlib.sha256(pyproject + sys.version.encode()).hexdigest()[:16]
    target = CACHE / "tooling" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    # Another clone may be building the same one: wait for it, then reuse it.
    with open(target.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".complete").exists():
            print("Setting up .venv (copier, pytest, ruff, ...) with uv", flush=True)
            uv = bootstrap_uv(pyproject.decode())
            shutil.rmtree(target, ignore_errors=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
            quiet([uv, "venv", "--quiet", "--python", sys.executable, str(target)], env)
            python = str(target / "bin" / "python")
            quiet([uv, "pip", "install", "--quiet", "--python", python, "--group", "test"], env)
            (target / ".complete").touch()
    if VENV.is_symlink() and VENV.resolve() == target:
        return
    if VENV.is_symlink() or VENV.is_file():
        VENV.unlink()
    elif VENV.exists():  # a real folder, from an older dev.py
        shutil.rmtree(VENV)
    VENV.symlink_to(target, target_is_directory=True)


def bootstrap_uv(pyproject: str) -> str:
    """uv itself, at the version the test group pins, in a small cached venv."""
    pin = next(line.strip().strip('",') for line in pyproject.splitlines() if '"uv==' in line)
    home = CACHE / "bootstrap" / pin
    uv = home / "bin" / "uv"
    if not uv.exists():
        venv.EnvBuilder(clear=True, with_pip=True).create(home)
        pip = [str(home / "bin" / "python"), "-m", "pip", "install", "-q"]
        quiet([*pip, "--disable-pip-version-check", pin], dict(os.environ))
    return str(uv)


def quiet(command: list[str], env: dict[str, str]) -> None:
    """Run an installer in the repo; show its output only when it fails."""
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def in_venv(*args: str) -> list[str]:
    return [str(BIN / "python"), *args]


def become_in_venv(*args: str) -> NoReturn:
    """Replace this process with .venv's Python running `args`, in the repo. Not a child:
    on Ctrl+C a waiting parent kills its child after a quarter of a second, before pytest
    or the demo has stopped the servers it started (each in a session of its own)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(REPO)
    command = in_venv(*args)
    os.execv(command[0], command)  # noqa: S606


def install_system_tools() -> None:
    """Install the suite's system tools where this can be done without asking
    (root on Debian/Ubuntu); elsewhere say why not and carry on."""
    if os.environ.get("COPIER_FLASK_SYSTEM_TOOLS", "").lower() in {"0", "no", "false"}:
        print("COPIER_FLASK_SYSTEM_TOOLS=0: no system tools installed", flush=True)
        return
    debian = Path("/etc/debian_version").exists() and shutil.which("dpkg-query") is not None
    if not debian or not hasattr(os, "geteuid") or os.geteuid() != 0:
        print(
            "Not root on Debian/Ubuntu: system tools (nginx, PostgreSQL, podman, ...) are not"
            " installed; tests that need a missing one skip, saying which.",
            flush=True,
        )
        return
    done = subprocess.run(["bash", str(SYSTEM_TOOLS)], cwd=REPO)
    if done.returncode != 0:
        failed = f"{SYSTEM_TOOLS.relative_to(REPO)} failed (exit {done.returncode})"
        if IN_CI:
            sys.exit(failed)
        print(f"{failed}: tests that need a missing tool will skip", file=sys.stderr)


def test(pytest_args: list[str]) -> NoReturn:
    """Run the suite on every core; CI=true turns tool-dependent skips into failures."""
    install_system_tools()
    # loadgroup: the groups tests/conftest.py sets stay on one worker each.
    become_in_venv("-m", "pytest", "-n", "auto", "--dist", "loadgroup", *pytest_args)


def demo(args: list[str]) -> int:
    """Render the defaults into build/demo and serve them with the generated gunicorn.conf.py."""
    # The harness (and copier) live in .venv: become this script in there.
    if Path(sys.prefix).resolve() != VENV.resolve():
        become_in_venv(__file__, "demo", *args)
    from harness.serving import serve
    from harness.venvs import project_venv, run_env

    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.parent.mkdir(exist_ok=True)
    subprocess.run(
        in_venv("-m", "copier", "copy", "--trust", "--defaults", "--quiet", "--vcs-ref=HEAD")
        + [str(REPO), str(DEMO)],
        check=True,
    )
    print(f"Rendered the default project into {DEMO}")
    # Production mode (no FLASK_DEBUG), with the development secret copier wrote
    # to .env, and the same shared environment the tests use.
    dotenv = dict(
        line.split("=", 1) for line in (DEMO / ".env").read_text().splitlines() if "=" in line
    )
    env = run_env(project_venv(DEMO), FLASK_SECRET_KEY=dotenv["FLASK_SECRET_KEY"])
    port = int(os.environ.get("PORT", "8000"))
    logs = DEMO.parent / "demo-logs"
    with serve(DEMO, logs, env, port=port, timeout=30) as served:
        print(f"\n  Serving on {served.url}/  (health: {served.get('/healthz').text.strip()})")
        print("  gunicorn with the generated gunicorn.conf.py, app from build/demo/wsgi.py")
        print(f"  its log: {served.process.log}\n")
        if "--once" in args:
            return 0
        print("Press Ctrl+C to stop.")
        # gunicorn runs in a session of its own, which a terminal's Ctrl+C does not
        # reach: leaving the `with` block stops it. SIGTERM (kill, timeout) leaves it too.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            served.process.popen.wait()
        except KeyboardInterrupt:
            pass
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in {"demo", "test", "lock"}:
        print(__doc__)
        return 2
    ensure_venv()
    if argv[1] == "lock":
        become_in_venv("locks/update.py", *argv[2:])
    return demo(argv[2:]) if argv[1] == "demo" else test(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
