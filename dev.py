#!/usr/bin/env python3
"""The template's two entry points, for a fresh clone with Python 3.10+ and git.

    python3 dev.py demo    render a project with the defaults and serve it with gunicorn
    python3 dev.py test    run the template's test suite (extra arguments go to pytest)
    python3 dev.py lock    regenerate every variant's uv.lock and requirements.txt (locks/)

Both build `.venv` from the `test` group in pyproject.toml first (again only
when pyproject.toml changes), so nothing needs installing by hand. As root on
Debian or Ubuntu, `test` first installs the system tools some tests use (nginx,
PostgreSQL, podman, ...) with .ci/install-system-tools.sh, the script CI uses;
elsewhere, or with COPIER_FLASK_SYSTEM_TOOLS=0, those tests skip with the reason.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent
VENV = REPO / ".venv"
BIN = VENV / "bin"
DEMO = REPO / "build" / "demo"
SYSTEM_TOOLS = REPO / ".ci" / "install-system-tools.sh"
# As in tests/helpers/tools.py: under CI a missing tool is a failure.
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def ensure_venv() -> None:
    """Create or refresh .venv so it matches pyproject.toml."""
    stamp = VENV / ".pyproject-sha256"
    wanted = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print("Setting up .venv (copier, pytest, ruff, ...)", flush=True)
    venv.EnvBuilder(clear=not stamp.exists(), with_pip=True).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # Dependency groups (PEP 735) need pip >= 25.1.
    quiet([*pip, "--upgrade", "pip>=25.1"])
    quiet([*pip, "--group", "test"])
    stamp.write_text(wanted)


def quiet(command: list[str]) -> None:
    """Run pip in the repo; show its output only when it fails."""
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def in_venv(*args: str) -> list[str]:
    return [str(BIN / "python"), *args]


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


def test(pytest_args: list[str]) -> int:
    """Run the suite on every core; CI=true turns tool-dependent skips into failures."""
    install_system_tools()
    return subprocess.run(in_venv("-m", "pytest", "-n", "auto", *pytest_args), cwd=REPO).returncode


DEMO_SCRIPT = """
import sys
from pathlib import Path
from tests.helpers.project_env import project_venv
print(project_venv(Path(sys.argv[1])))
"""


def demo(args: list[str]) -> int:
    """Render the defaults into build/demo and serve them with the generated gunicorn.conf.py."""
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.parent.mkdir(exist_ok=True)
    subprocess.run(
        in_venv("-m", "copier", "copy", "--trust", "--defaults", "--quiet", "--vcs-ref=HEAD")
        + [str(REPO), str(DEMO)],
        check=True,
    )
    print(f"Rendered the default project into {DEMO}")
    # The same shared environment the tests use: the project's pinned dependencies.
    env_bin = subprocess.run(
        in_venv("-c", DEMO_SCRIPT, str(DEMO)), cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    # Production mode (no FLASK_DEBUG), with the development secret copier wrote to .env.
    dotenv = dict(
        line.split("=", 1) for line in (DEMO / ".env").read_text().splitlines() if "=" in line
    )
    port = os.environ.get("PORT", "8000")
    env = {**os.environ, "FLASK_SECRET_KEY": dotenv["FLASK_SECRET_KEY"], "PORT": port}
    env.update(HOST="127.0.0.1", PATH=f"{env_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("FLASK_DEBUG", None)
    server = subprocess.Popen(
        [f"{env_bin}/gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=DEMO, env=env
    )
    try:
        health = wait_for(f"http://127.0.0.1:{port}/healthz", server)
        print(f"\n  Serving on http://127.0.0.1:{port}/  (health: {health})")
        print("  gunicorn with the generated gunicorn.conf.py, app from build/demo/wsgi.py\n")
        if "--once" in args:
            return 0
        print("Press Ctrl+C to stop.")
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.terminate()
        server.wait(timeout=35)
    return 0


def wait_for(url: str, server: subprocess.Popen[bytes], seconds: float = 30) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own URL)
                return response.read().decode().strip()
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {seconds:.0f}s")


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in {"demo", "test", "lock"}:
        print(__doc__)
        return 2
    ensure_venv()
    if argv[1] == "lock":
        return subprocess.run(in_venv("locks/update.py", *argv[2:]), cwd=REPO).returncode
    return demo(argv[2:]) if argv[1] == "demo" else test(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
