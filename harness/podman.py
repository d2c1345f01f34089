"""podman, with a private configuration, for the container tests.

There is no Docker engine and no reachable container registry on the machines
this suite runs on, so everything here is local:

* podman runs with a private configuration (``podman_env``) so the tests never
  depend on, or disturb, the host's ``/etc/containers`` setup;
* the base images come from harness/provisioning.py, not from a registry;
* ``docker build`` steps that reach PyPI get the host's CA bundle mounted
  (``host_ca_bundle``), because TLS egress may be intercepted by a proxy whose
  CA only the host trusts.

Image layers live in a cache outside the clone (``cache_root()``) so that a
second test run, or a CI rerun that restores ``~/.cache``, is fast. Everything
that only makes sense for one boot (mount state, the libpod container
database, locks) lives in a per-boot directory, see ``_state_dir``.

Standard library only: this module is imported before any project dependency
is known to be installed.
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

# -- knobs ---------------------------------------------------------------------

#: Where the CA bundle lives inside the Debian-based images we build.
CONTAINER_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

#: Container limits (soft = hard), capped at the caller's hard limits by
#: default_ulimits(). Without them rootful podman asks runc for
#: nofile=1048576, above this sandbox's hard limit (20000) and without
#: CAP_SYS_RESOURCE to raise it: every container fails to start with
#: "error setting rlimit type 7: operation not permitted".
ULIMIT_TARGETS = {"nofile": 20000, "nproc": 32768}


# -- small utilities -------------------------------------------------------------


def cache_root() -> Path:
    """Directory for caches that should survive test runs (not the clone).

    ``COPIER_FLASK_CACHE`` overrides it; otherwise the XDG cache directory.
    """
    override = os.environ.get("COPIER_FLASK_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "copier-flask"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock, shared by pytest-xdist workers and parallel runs.

    flock is released by the kernel if the holder dies, so a crashed worker
    never leaves a stale lock behind (unlike a lock *file* that must exist).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _boot_id() -> str:
    """An id that changes on every boot (falls back to a constant)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return "noboot"


def _state_dir(graphroot: Path) -> Path:
    """Per-boot directory for podman's run-time state of a given graphroot.

    Podman's runroot (mount bookkeeping), tmp_dir and libpod database describe
    *running* things; reused after a reboot (or after CI restores a cached
    ~/.cache on a fresh machine) they claim containers and mounts that no
    longer exist. They therefore live outside the persistent cache, keyed by
    the boot id; libpod also refuses a database whose recorded runroot/tmp_dir
    differ from the current ones, so the database must move with them.
    The path also hashes the graphroot so that two storages never share state,
    and stays short because conmon's sockets live under it.
    """
    if os.geteuid() == 0 and os.access("/run", os.W_OK):
        base = Path("/run")
    elif os.environ.get("XDG_RUNTIME_DIR"):
        base = Path(os.environ["XDG_RUNTIME_DIR"])
    else:
        base = Path(tempfile.gettempdir())
    return (
        base / f"copier-flask-podman-{os.getuid()}" / f"{_boot_id()}-{_storage_digest(graphroot)}"
    )


def _storage_digest(graphroot: Path) -> str:
    return hashlib.sha256(str(graphroot.resolve()).encode()).hexdigest()[:8]


def default_ulimits() -> tuple[str, ...]:
    """``default_ulimits`` for containers.conf: ULIMIT_TARGETS within our limits.

    A process cannot hand its children more than its own hard limit, so
    the targets are lowered to it when the host is stricter.
    """
    limits = {"nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC}
    result = []
    for name, target in ULIMIT_TARGETS.items():
        hard = resource.getrlimit(limits[name])[1]
        value = target if hard == resource.RLIM_INFINITY else min(target, hard)
        result.append(f"{name}={value}:{value}")
    return tuple(result)


def _toml_str(value: str | Path) -> str:
    # JSON string escaping is valid TOML basic-string escaping for paths.
    return json.dumps(str(value))


def _toml_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def _format_failure(proc: subprocess.CompletedProcess[str], what: str) -> str:
    return (
        f"{what} failed with exit code {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout or ''}\n--- stderr ---\n{proc.stderr or ''}"
    )


# -- availability ---------------------------------------------------------------


def _network_backend() -> str:
    """The network stack podman should use: netavark if installed, else CNI.

    Set explicitly because podman's auto-detection looks at the host's CNI
    config and existing containers, which a private config should not depend on.
    COPIER_FLASK_PODMAN_NETWORK_BACKEND ("netavark" or "cni") overrides it.
    """
    override = os.environ.get("COPIER_FLASK_PODMAN_NETWORK_BACKEND")
    if override:
        return override
    for directory in ("/usr/libexec/podman", "/usr/lib/podman", "/usr/local/libexec/podman"):
        if Path(directory, "netavark").exists():
            return "netavark"
    return "cni"


def _oci_runtime() -> str | None:
    """runc first: crun rejects the hybrid cgroup v1/v2 layout of some kernels."""
    for runtime in ("runc", "crun"):
        if shutil.which(runtime):
            return runtime
    return None


@functools.cache
def podman_available() -> str | None:
    """Return None when podman can run containers here, else the reason why not.

    Beyond "is the binary there", this asks podman itself (``podman info``)
    with the private configuration, which catches broken storage drivers,
    missing runtimes and missing network stacks up front, with podman's own
    error message, instead of in the middle of a build.
    """
    missing = [tool for tool in ("podman", "debootstrap", "tar") if not shutil.which(tool)]
    if missing:
        return f"missing tools: {', '.join(missing)} (run .ci/install-containers.sh)"
    if _oci_runtime() is None:
        return "no OCI runtime (runc or crun) found (run .ci/install-containers.sh)"
    if os.geteuid() != 0:
        # debootstrap (the base image) needs root; rootless podman would also
        # need subuid/subgid ranges this module does not set up.
        return "container tests need root (debootstrap and rootful podman)"
    with tempfile.TemporaryDirectory(prefix="podman-probe-") as tmp:
        env = podman_env(Path(tmp))
        try:
            proc = subprocess.run(
                ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"podman info failed: {exc}"
    if proc.returncode != 0:
        return _format_failure(proc, "podman info")
    return None


# -- configuration ----------------------------------------------------------------

#: Name of the network containers join unless told otherwise (our default).
NETWORK_NAME = "copier-flask"


def _write_if_changed(path: Path, text: str) -> None:
    """Write atomically and only on change: other workers may read it now."""
    if path.is_file() and path.read_text() == text:
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


def _write_network(config_dir: Path, backend: str, graphroot: Path) -> None:
    """Define our own default bridge network in ``config_dir``.

    Podman's built-in default network is bridge podman0 (netavark) or
    cni-podman0 (CNI) on 10.88.0.0/16 -- the same bridge and subnet the
    host's own podman uses, with a different IP allocation database (ours
    is private): two instances would hand out the same addresses. Worse, a
    leftover bridge of the *other* backend with that subnet captures the
    route and containers lose all outbound traffic (seen here: pip could not
    resolve pypi.org after switching CNI -> netavark). So: a bridge name and
    a /24 of our own, derived from the storage and the backend.
    COPIER_FLASK_PODMAN_SUBNET ("10.213.7.0/24") overrides the subnet.
    """
    digest = _storage_digest(graphroot)
    bridge = f"cf{backend[:3]}{digest[:6]}"  # at most 15 characters (IFNAMSIZ)
    subnet = os.environ.get("COPIER_FLASK_PODMAN_SUBNET") or (
        f"10.{213 if backend == 'netavark' else 214}.{int(digest[:2], 16)}.0/24"
    )
    prefix = subnet.rsplit(".", 1)[0]
    gateway = f"{prefix}.1"
    config_dir.mkdir(parents=True, exist_ok=True)
    if backend == "netavark":
        # The format `podman network create` writes (containers/common).
        network = {
            "name": NETWORK_NAME,
            "id": hashlib.sha256(NETWORK_NAME.encode()).hexdigest(),
            "driver": "bridge",
            "network_interface": bridge,
            "created": "2025-01-01T00:00:00Z",
            "subnets": [{"subnet": subnet, "gateway": gateway}],
            "ipv6_enabled": False,
            "internal": False,
            "dns_enabled": False,  # no aardvark-dns: the host's resolv.conf is used
            "ipam_options": {"driver": "host-local"},
        }
        _write_if_changed(config_dir / f"{NETWORK_NAME}.json", json.dumps(network, indent=1))
    else:
        conflist = {
            "cniVersion": "0.4.0",
            "name": NETWORK_NAME,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "ranges": [[{"subnet": subnet, "gateway": gateway}]],
                    },
                    "capabilities": {"ips": True},
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "firewall", "backend": ""},
                {"type": "tuning"},
            ],
        }
        _write_if_changed(config_dir / f"{NETWORK_NAME}.conflist", json.dumps(conflist, indent=1))


def default_storage_dir() -> Path:
    """The shared, persistent image store (reused across runs and workers)."""
    return cache_root() / "podman" / "storage"


def podman_env(config_dir: Path, *, storage_dir: Path | None = None) -> dict[str, str]:
    """Write a private podman configuration under ``config_dir``; return its env.

    ``config_dir`` gets containers.conf, storage.conf, registries.conf and a
    TMPDIR (podman builds stage whole layers there, so keep it off /tmp when
    /tmp is small). Images go to ``storage_dir``, by default the persistent
    cache ``default_storage_dir()``: containers/storage locks its own files,
    so concurrent podman processes (pytest-xdist workers) may share it.

    The returned dict is a copy of os.environ plus the overrides; pass it as
    ``env=`` to subprocess (or to ``run_podman``).
    """
    config_dir = Path(config_dir).resolve()
    graphroot = Path(storage_dir or default_storage_dir()).resolve()
    state = _state_dir(graphroot)
    tmpdir = config_dir / "tmp"
    for directory in (config_dir, graphroot, state, tmpdir):
        directory.mkdir(parents=True, exist_ok=True)

    # storage.conf: native overlay (root on ext4/xfs); nodev like the default.
    storage_conf = config_dir / "storage.conf"
    storage_conf.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f"graphroot = {_toml_str(graphroot)}\n"
        f"runroot = {_toml_str(state / 'run')}\n"
        "\n[storage.options.overlay]\n"
        'mountopt = "nodev"\n'
    )

    # containers.conf: only this file is read when CONTAINERS_CONF is set, on
    # top of podman's built-in defaults.
    runtime = _oci_runtime() or "runc"
    backend = _network_backend()
    containers_conf = config_dir / "containers.conf"
    containers_conf.write_text(
        "[containers]\n"
        f"default_ulimits = {_toml_list(default_ulimits())}\n"
        # journald (the packaged default) needs a running journal; k8s-file
        # keeps `podman logs` working everywhere.
        'log_driver = "k8s-file"\n'
        "\n[engine]\n"
        f"runtime = {_toml_str(runtime)}\n"
        # no systemd here: cgroupfs; and events to a file, not the journal.
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f"events_logfile_path = {_toml_str(state / 'events.log')}\n"
        # per-boot state, see _state_dir(); the libpod DB lives in static_dir.
        f"tmp_dir = {_toml_str(state / 'tmp')}\n"
        f"static_dir = {_toml_str(state / 'libpod')}\n"
        f"volume_path = {_toml_str(state / 'volumes')}\n"
        # file locks under tmp_dir: the default shm segment (/libpod_lock) is
        # shared with every other rootful podman on the host, and our
        # per-boot "refresh" would free the other instances' locks.
        'lock_type = "file"\n'
        f"image_copy_tmp_dir = {_toml_str(tmpdir)}\n"
        "\n[network]\n"
        f"network_backend = {_toml_str(backend)}\n"
        # keep network definitions out of /etc/cni/net.d and /etc/containers.
        f"network_config_dir = {_toml_str(state / 'networks')}\n"
        f"default_network = {_toml_str(NETWORK_NAME)}\n"
    )
    _write_network(state / "networks", backend, graphroot)

    # registries.conf: no registry is reachable, so never search one for
    # short names; a stray `FROM python:3.12-slim` then fails fast and clearly.
    registries_conf = config_dir / "registries.conf"
    registries_conf.write_text(
        'unqualified-search-registries = []\nshort-name-mode = "permissive"\n'
    )

    env = dict(os.environ)
    env.update(
        CONTAINERS_CONF=str(containers_conf),
        CONTAINERS_STORAGE_CONF=str(storage_conf),
        CONTAINERS_REGISTRIES_CONF=str(registries_conf),
        TMPDIR=str(tmpdir),
    )
    _first_use_this_boot(state, env)
    return env


def _first_use_this_boot(state: Path, env: Mapping[str, str]) -> None:
    """Once per boot and storage: drop what earlier boots left behind.

    The persistent storage may hold containers from a run that crashed or a
    machine that was reset (CI caches): the fresh per-boot libpod database
    does not know them, they only exist in storage ("external"), keep their
    names taken and their layers on disk. Nothing of this boot can be using
    them yet: every process calls podman_env before creating a container, and
    the lock makes the others wait here until the cleanup is done.
    """
    marker = state / "initialised"
    if marker.exists():
        return
    with _file_lock(state.parent / f"{state.name}.lock"):
        if marker.exists():
            return
        listing = run_podman(
            env, "ps", "--all", "--external", "--format", "{{.ID}} {{.State}}", check=False
        )
        orphans = [
            line.split()[0]
            for line in listing.stdout.splitlines()
            if [word.lower() for word in line.split()[1:]] == ["storage"]
        ]
        if orphans:
            run_podman(env, "rm", "--force", *orphans, check=False, timeout=300)
        # State directories of earlier boots describe nothing that still runs.
        boot = _boot_id()
        for sibling in state.parent.iterdir():
            if not sibling.name.startswith(f"{boot}-"):
                if sibling.is_dir():
                    shutil.rmtree(sibling, ignore_errors=True)
                else:
                    sibling.unlink(missing_ok=True)
        marker.touch()


# -- running podman ----------------------------------------------------------------


class PodmanError(RuntimeError):
    """A podman command failed; the message carries its stdout and stderr."""

    def __init__(self, proc: subprocess.CompletedProcess[str], args: list[str]) -> None:
        super().__init__(_format_failure(proc, " ".join(args)))
        self.proc = proc


def run_podman(
    env: Mapping[str, str],
    *args: str,
    timeout: float = 600,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``podman *args`` with ``env``; raise PodmanError on failure if check.

    Output is captured as text so a failing build shows its log in the test
    report instead of vanishing.
    """
    cmd = ["podman", *args]
    proc = subprocess.run(
        cmd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
    )
    if check and proc.returncode != 0:
        raise PodmanError(proc, cmd)
    return proc


# -- CA bundle --------------------------------------------------------------------


def host_ca_bundle() -> str:
    """Path of the CA bundle the host trusts (mount it into builds reaching PyPI).

    Honours the usual overrides first (a TLS-intercepting proxy's CA is
    typically added to them), then the Debian/Ubuntu and Fedora locations.
    """
    candidates = [
        os.environ.get("SSL_CERT_FILE"),
        os.environ.get("REQUESTS_CA_BUNDLE"),
        os.environ.get("PIP_CERT"),
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return str(Path(candidate).resolve())
    raise FileNotFoundError("no CA bundle found on the host")


def ca_bundle_volume() -> str:
    """``-v`` argument mounting the host CA bundle read-only into a build."""
    return f"{host_ca_bundle()}:{CONTAINER_CA_BUNDLE}:ro"
