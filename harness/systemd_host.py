"""A fresh Debian host with systemd as PID 1, in a podman container.

The generated README's "Deploy on a Linux host" block is written for a real
server: apt, systemd units, `systemctl`, `journalctl`, nginx on port 80. podman
boots `/sbin/init` in a container (`--systemd=always`) from the suite's own
Debian base plus systemd, so the block can run there as printed, as root.
Port 80 is published on 127.0.0.1 only. The container is removed when the
`with` block ends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.http import free_port
from harness.podman import ca_bundle_volume, cache_root, run_podman
from harness.provisioning import ensure_derived_image
from harness.waiting import eventually

#: What every Debian server install has that debootstrap's minbase lacks: an
#: init system, a bus for systemctl, and procps (/bin/kill, which units use in
#: ExecReload). Everything else the README installs itself.
SYSTEMD_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \\
    && apt-get install -y --no-install-recommends systemd systemd-sysv dbus procps \\
    && apt-get install -y --download-only nginx git curl python3-venv postgresql
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
"""
# The last line only downloads: the packages the README's host block installs
# wait in apt's cache, so each run installs them for real without fetching
# them again (a changed list still works: apt fetches what is missing).

#: Debian testing from this machine's mirror is a snapshot whose Release file
#: has expired, which apt refuses; a real host's mirror is current. Only the
#: stand-in host is told to accept it, before the README's own `apt-get update`.
ACCEPT_SNAPSHOT = (
    "RUN echo 'Acquire::Check-Valid-Until \"false\";' > /etc/apt/apt.conf.d/99snapshot\n"
)

#: systemd 258 and newer refuse to run on cgroup v1, and podman gives a
#: container v1 where the kernel runs the hybrid layout (DESIGN.md §3). In its
#: own cgroup namespace the container may mount the unified (v2) hierarchy over
#: /sys/fs/cgroup before systemd starts; where it already is v2, nothing changes.
BOOT = (
    '[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]'
    " || mount -t cgroup2 cgroup2 /sys/fs/cgroup; exec /sbin/init"
)

#: The variables a clean shell keeps from the machine: its CA bundle and proxies
#: (outgoing TLS goes through a CA only the host's bundle holds), nothing else.
NETWORK_SETTINGS = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)


@dataclass
class Host:
    """A booted host: `sh` runs a script in it as root, in a login-like shell."""

    name: str
    port: int  # 127.0.0.1:port reaches the host's port 80
    env: Mapping[str, str]  # podman's

    def sh(self, script: str, *, timeout: float = 600, check: bool = True) -> Result:
        """`script` under `bash -e`, with root's clean environment (PATH, HOME,
        the machine's network settings)."""
        settings = [f"--env={name}" for name in NETWORK_SETTINGS if name in self.env]
        proc = run_podman(
            self.env,
            "exec",
            *settings,
            "--env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env=HOME=/root",
            "--env=LANG=C.UTF-8",
            "--workdir=/root",
            self.name,
            "bash",
            "-e",
            "-c",
            script,
            timeout=timeout,
            check=False,
        )
        result = Result(script, proc.returncode, proc.stdout, proc.stderr)
        if check:
            assert proc.returncode == 0, result.report()
        return result

    def copy_in(self, source: Path, target: str) -> None:
        run_podman(self.env, "cp", str(source), f"{self.name}:{target}")


@dataclass
class Result:
    script: str
    returncode: int
    stdout: str
    stderr: str

    def report(self) -> str:
        return (
            f"exit {self.returncode} from:\n{self.script}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def ensure_systemd_image(env: Mapping[str, str], suite: str = "bookworm") -> str:
    """The base image of `suite` plus systemd, built once per storage."""
    recipe = SYSTEMD_DOCKERFILE
    if suite == "testing":
        recipe = recipe.replace("RUN apt-get update", ACCEPT_SNAPSHOT + "RUN apt-get update", 1)
    return ensure_derived_image(env, "systemd-host", recipe, suite)


@contextmanager
def booted_host(env: Mapping[str, str], image: str) -> Iterator[Host]:
    """A container running systemd, up (`running` or `degraded`), removed on exit."""
    name = f"copier-flask-host-{uuid.uuid4().hex[:10]}"
    port = free_port()
    run_podman(
        env,
        "run",
        "-d",
        "--systemd=always",
        # What BOOT's mount needs: its own cgroup namespace, and the right to mount.
        "--cgroupns=private",
        "--cap-add=SYS_ADMIN",
        "--entrypoint",
        json.dumps(["/bin/sh", "-c", BOOT]),
        "--name",
        name,
        "--hostname",
        "host",
        "-p",
        f"127.0.0.1:{port}:80",
        # PyPI through the host's CA bundle (see DESIGN.md); apt's mirror is http.
        "-v",
        ca_bundle_volume(),
        # pip's own cache, kept between runs as on a machine that installed before.
        "-v",
        f"{pip_cache()}:/root/.cache/pip",
        image,
        timeout=120,
    )
    host = Host(name, port, env)
    try:

        def system_up() -> str | None:
            state = host.sh("systemctl is-system-running || true", timeout=30).stdout.strip()
            return state if state in {"running", "degraded"} else None

        eventually(system_up, 60, what=f"systemd up in {name}", interval=0.5)
        yield host
    finally:
        run_podman(env, "rm", "--force", "--time", "10", name, check=False, timeout=120)


def pip_cache() -> Path:
    """Where the hosts' pip keeps its downloads, outside the clone."""
    folder = cache_root() / "systemd-host-pip"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def journal(host: Host, unit: str) -> str:
    """What `journalctl -u unit` shows, as the README tells its reader to look."""
    return host.sh(f"journalctl --no-pager -u {unit}", timeout=60).stdout
