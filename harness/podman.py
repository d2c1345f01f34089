"""podman with a private configuration, for the container tests (standard library only).

No Docker engine and no registry are reachable here: podman never reads the host's
/etc/containers, and builds that reach PyPI get the host's CA bundle (a TLS-intercepting
proxy's CA may be in it). Image layers are cached outside the clone (``cache_root()``).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

Completed = subprocess.CompletedProcess[str]

#: Where the CA bundle lives inside the Debian-based images built here.
CONTAINER_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

#: Container limits (soft = hard), lowered to our own hard limits. Without them rootful
#: podman asks runc for nofile=1048576, above this sandbox's hard limit and without
#: CAP_SYS_RESOURCE: "error setting rlimit type 7: operation not permitted".
ULIMIT_TARGETS = {"nofile": 20000, "nproc": 32768}

#: The network containers join unless told otherwise.
NETWORK_NAME = "copier-flask"


def cache_root() -> Path:
    """Caches that survive test runs, outside the clone (XDG's)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "copier-flask")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An flock shared by xdist workers and parallel runs (freed if its holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


class PodmanError(RuntimeError):
    """A command (podman, debootstrap, tar) failed; the message carries its output."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"{' '.join(proc.args)} failed with exit code {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout or ''}\n--- stderr ---\n{proc.stderr or ''}"
        )


def _run(cmd: list[str], timeout: float, check: bool = True, **options: Any) -> Completed:
    """Run ``cmd`` (``options``: env, input) with its output captured for the report."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **options)
    if check and proc.returncode != 0:
        raise PodmanError(proc)
    return proc


def run_podman(
    env: Mapping[str, str], *args: str, timeout: float = 600, check: bool = True, **options: Any
) -> Completed:
    """Run ``podman *args`` with ``env`` (``options``: input); PodmanError if it fails."""
    return _run(["podman", *args], timeout, check, env=env, **options)


def _state_dir(digest: str) -> Path:
    """Per-boot state of a storage (runroot, tmp_dir, libpod's database, which must move
    with them): after a reboot or a restored CI cache they claim what no longer exists.
    Short: conmon's sockets live under it."""
    if os.geteuid() == 0 and os.access("/run", os.W_OK):
        base = Path("/run")
    else:
        base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    boot = Path("/proc/sys/kernel/random/boot_id").read_text()[:8]
    return base / f"copier-flask-podman-{os.getuid()}" / f"{boot}-{digest}"


def _ulimits() -> list[str]:
    """ULIMIT_TARGETS within our hard limits (a child cannot get more than its parent)."""
    result = []
    for name, target in ULIMIT_TARGETS.items():
        hard = resource.getrlimit(getattr(resource, f"RLIMIT_{name.upper()}"))[1]
        value = target if hard == resource.RLIM_INFINITY else min(target, hard)
        result.append(f"{name}={value}:{value}")
    return result


def _network_backend() -> str:
    """netavark if installed, else CNI, set because podman's own guess reads the host's
    state; COPIER_FLASK_PODMAN_NETWORK_BACKEND ("netavark" or "cni") overrides it."""
    if override := os.environ.get("COPIER_FLASK_PODMAN_NETWORK_BACKEND"):
        return override
    places = ("/usr/libexec/podman", "/usr/lib/podman", "/usr/local/libexec/podman")
    return "netavark" if any(Path(place, "netavark").exists() for place in places) else "cni"


def _oci_runtime() -> str | None:
    """runc first: crun rejects the hybrid cgroup v1/v2 layout of some kernels."""
    return next((runtime for runtime in ("runc", "crun") if shutil.which(runtime)), None)


@functools.cache
def podman_available() -> str | None:
    """None when podman can run containers here, else why not (in podman info's words:
    broken storage drivers, runtimes or networks show up here, not in a build)."""
    missing = [tool for tool in ("podman", "debootstrap", "tar") if not shutil.which(tool)]
    missing += [] if _oci_runtime() else ["an OCI runtime (runc or crun)"]
    if missing:
        return f"missing tools: {', '.join(missing)} (run .ci/install-containers.sh)"
    if os.geteuid() != 0:  # rootless podman would also need subuid ranges, not set up here
        return "container tests need root (debootstrap and rootful podman)"
    with tempfile.TemporaryDirectory(prefix="podman-probe-") as tmp:
        try:
            runtime = ("info", "--format", "{{.Host.OCIRuntime.Name}}")
            run_podman(podman_env(Path(tmp)), *runtime, timeout=60)
        except (OSError, subprocess.TimeoutExpired, PodmanError) as exc:
            return f"podman info failed: {exc}"
    return None


def _write_network(config_dir: Path, backend: str, digest: str) -> None:
    """Our own default bridge network, with a name and a /24 of its own: podman's default
    (10.88.0.0/16) is the host podman's too, which hands out the same addresses, and a
    leftover bridge of the other backend on it captures the route (no outbound traffic)."""
    bridge = f"cf{backend[:3]}{digest[:6]}"  # at most 15 characters (IFNAMSIZ)
    prefix = f"10.{213 if backend == 'netavark' else 214}.{int(digest[:2], 16)}"
    ranges = {"subnet": f"{prefix}.0/24", "gateway": f"{prefix}.1"}
    if backend == "netavark":  # the format `podman network create` writes
        path = config_dir / f"{NETWORK_NAME}.json"
        network: dict[str, object] = {
            "name": NETWORK_NAME,
            "id": hashlib.sha256(NETWORK_NAME.encode()).hexdigest(),
            "driver": "bridge",
            "network_interface": bridge,
            "created": "2025-01-01T00:00:00Z",
            "subnets": [ranges],
            "ipv6_enabled": False,
            "internal": False,
            "dns_enabled": False,  # no aardvark-dns: the host's resolv.conf is used
            "ipam_options": {"driver": "host-local"},
        }
    else:
        path = config_dir / f"{NETWORK_NAME}.conflist"
        ipam = {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}], "ranges": [[ranges]]}
        bridge_plugin = dict(type="bridge", bridge=bridge, isGateway=True, ipMasq=True)
        network = {
            "cniVersion": "0.4.0",
            "name": NETWORK_NAME,
            "plugins": [
                {**bridge_plugin, "hairpinMode": True, "ipam": ipam, "capabilities": {"ips": True}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "firewall", "backend": ""},
                {"type": "tuning"},
            ],
        }
    text = json.dumps(network, indent=1)
    config_dir.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:  # atomically: others may read it now
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(text)
        os.replace(partial, path)


def _toml(sections: dict[str, dict[str, object]]) -> str:
    # JSON's strings and lists are TOML's; the section "" holds top-level keys.
    return "".join(
        (f"[{section}]\n" if section else "")
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
        for section, keys in sections.items()
    )


def podman_env(config_dir: Path) -> dict[str, str]:
    """Write a private podman configuration under ``config_dir``; os.environ with it.
    Images go to the cache, shared by concurrent podmans; TMPDIR, where builds stage
    whole layers, to ``config_dir``, off a small /tmp."""
    config_dir = Path(config_dir).resolve()
    graphroot = (cache_root() / "podman" / "storage").resolve()
    digest = hashlib.sha256(str(graphroot).encode()).hexdigest()[:8]  # of the storage
    state, tmpdir, backend = _state_dir(digest), config_dir / "tmp", _network_backend()
    for directory in (config_dir, graphroot, state, tmpdir):
        directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, dict[str, object]]] = {
        "storage.conf": {  # native overlay (root on ext4/xfs); nodev like the default
            "storage": dict(driver="overlay", graphroot=str(graphroot), runroot=str(state / "run")),
            "storage.options.overlay": {"mountopt": "nodev"},
        },
        # With CONTAINERS_CONF set only this file is read, on top of podman's defaults.
        "containers.conf": {
            # journald, the packaged default, needs a running journal
            "containers": {"default_ulimits": _ulimits(), "log_driver": "k8s-file"},
            "engine": {
                "runtime": _oci_runtime() or "runc",
                "cgroup_manager": "cgroupfs",  # no systemd here
                "events_logger": "file",
                "events_logfile_path": str(state / "events.log"),
                "tmp_dir": str(state / "tmp"),
                "static_dir": str(state / "libpod"),  # the libpod database
                "volume_path": str(state / "volumes"),
                # The default shm lock segment is shared with every rootful podman on
                # the host, and our per-boot refresh would free the others' locks.
                "lock_type": "file",
                "image_copy_tmp_dir": str(tmpdir),
            },
            "network": {
                "network_backend": backend,
                "network_config_dir": str(state / "networks"),
                "default_network": NETWORK_NAME,
            },
        },
        # No registry is reachable: a stray `FROM python:3.12-slim` fails fast and clearly.
        "registries.conf": {
            "": {"unqualified-search-registries": [], "short-name-mode": "permissive"}
        },
    }
    for name, sections in files.items():
        (config_dir / name).write_text(_toml(sections))
    _write_network(state / "networks", backend, digest)
    env = dict(os.environ, TMPDIR=str(tmpdir))
    env["CONTAINERS_CONF"] = str(config_dir / "containers.conf")
    env["CONTAINERS_STORAGE_CONF"] = str(config_dir / "storage.conf")
    env["CONTAINERS_REGISTRIES_CONF"] = str(config_dir / "registries.conf")
    _first_use_this_boot(state, env)
    return env


def _first_use_this_boot(state: Path, env: Mapping[str, str]) -> None:
    """Once per boot and storage, drop the containers of a crashed run or a reset machine:
    only in the storage ("external"), holding names and layers, and unused (every
    process comes here before its first container)."""
    marker = state / "initialised"
    if marker.exists():
        return
    with _file_lock(state.parent / f"{state.name}.lock"):
        if marker.exists():
            return
        states = "{{.ID}} {{.State}}"
        listing = run_podman(env, "ps", "--all", "--external", "--format", states, check=False)
        containers = [line.split() for line in listing.stdout.lower().splitlines()]
        orphans = [words[0] for words in containers if words[1:] == ["storage"]]
        if orphans:
            run_podman(env, "rm", "--force", *orphans, check=False, timeout=300)
        # State directories of earlier boots describe nothing that still runs.
        for sibling in state.parent.iterdir():
            if not sibling.name.startswith(state.name[:9]):  # "{boot id}-"
                if sibling.is_dir():
                    shutil.rmtree(sibling, ignore_errors=True)
                else:
                    sibling.unlink(missing_ok=True)
        marker.touch()


def ca_bundle_volume() -> str:
    """``-v`` mounting the host's CA bundle read-only: the usual overrides first (a
    proxy's CA is added to them), then the Debian/Ubuntu, Fedora and BSD places."""
    variables = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT")
    places = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"]
    for candidate in [*map(os.environ.get, variables), *places, "/etc/ssl/cert.pem"]:
        if candidate and Path(candidate).is_file():
            return f"{Path(candidate).resolve()}:{CONTAINER_CA_BUNDLE}:ro"
    raise FileNotFoundError("no CA bundle found on the host")
