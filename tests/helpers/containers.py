"""Run real podman containers from the template's test suite.

There is no Docker engine and no reachable container registry on the machines
this suite runs on, so everything here is local:

* podman runs with a private configuration (``podman_env``) so the tests never
  depend on, or disturb, the host's ``/etc/containers`` setup;
* the Python base image is bootstrapped from the Debian mirror apt already uses
  (``ensure_base_image``) instead of being pulled from Docker Hub;
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
import platform
import resource
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

# -- knobs ---------------------------------------------------------------------

#: Debian suite of the base image. Its python3 is 3.11, so projects under test
#: must be rendered with python_version 3.11 (BASE_PYTHON).
DEBIAN_SUITE = "bookworm"
BASE_PYTHON = "3.11"

#: Packages on top of debootstrap's minbase: what the official python image
#: offers (python, venv) plus CA certificates for HTTPS. pip is not Debian's
#: python3-pip: ensurepip installs it into /usr/local, as the official image
#: has it, so that a Dockerfile can `pip uninstall` it (Debian's copy has no
#: RECORD file, which pip needs to uninstall).
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")

#: The image config the official python image has and an imported tarball
#: lacks (``podman import`` creates an image without ENV or CMD).
BASE_IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)

#: What debian:*-slim leaves out (debuerreotype's "slimify" list).
SLIM_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/groff/*",
    "/usr/share/info/*",
    "/usr/share/linda/*",
    "/usr/share/lintian/overrides/*",
    "/usr/share/locale/*",
    "/usr/share/man/*",
)

#: Bump when the recipe below changes in a way the cache key cannot see.
BASE_RECIPE_VERSION = 3

#: Debian's testing suite, for the Pythons Debian 12 lacks (python_version
#: answers above BASE_PYTHON). One root holds them all; ``ensure_python_image``
#: makes one image per Python from it, named like the official image.
TESTING_SUITE = "testing"
TESTING_PYTHONS = ("3.14", "3.15")
TESTING_PACKAGES = (*(f"python{version}-venv" for version in TESTING_PYTHONS), "ca-certificates")

#: What each suite's root holds on top of minbase.
SUITE_PACKAGES = {DEBIAN_SUITE: BASE_PACKAGES, TESTING_SUITE: TESTING_PACKAGES}

#: Used when apt's sources name no mirror for DEBIAN_SUITE (e.g. Ubuntu hosts).
FALLBACK_MIRROR = "http://deb.debian.org/debian"

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


# -- base image ---------------------------------------------------------------------


def _apt_source_entries() -> Iterator[tuple[list[str], list[str]]]:
    """Yield (uris, suites) for each enabled binary source apt knows about."""
    sources_dir = Path("/etc/apt/sources.list.d")
    one_line = [Path("/etc/apt/sources.list")]
    deb822: list[Path] = []
    if sources_dir.is_dir():
        # apt itself only reads these two suffixes (e.g. *.disabled is ignored).
        one_line += sorted(sources_dir.glob("*.list"))
        deb822 += sorted(sources_dir.glob("*.sources"))

    for path in one_line:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split("#", 1)[0].split()
            if not words or words[0] != "deb":
                continue
            words = words[1:]
            if words and words[0].startswith("["):
                # options such as [signed-by=... arch=amd64] may span words
                while words and not words[0].endswith("]"):
                    words = words[1:]
                words = words[1:]
            if len(words) >= 2:
                yield [words[0]], [words[1]]

    for path in deb822:
        try:
            text = path.read_text()
        except OSError:
            continue
        for stanza in text.split("\n\n"):
            fields: dict[str, str] = {}
            key = None
            for line in stanza.splitlines():
                if line.startswith("#") or not line.strip():
                    continue
                if line[0].isspace() and key:
                    fields[key] += " " + line.strip()  # continuation line
                    continue
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            yield fields.get("uris", "").split(), fields.get("suites", "").split()


def debian_mirror(suite: str = DEBIAN_SUITE) -> str:
    """The Debian mirror apt on this host already uses for ``suite``.

    apt's mirror is known to be reachable (and may be a local or snapshot
    mirror); deb.debian.org is the fallback for hosts that are not Debian.
    """
    for uris, suites in _apt_source_entries():
        if suite in suites:
            for uri in uris:
                if uri.startswith(("http://", "https://", "file:/")):
                    return uri
    return FALLBACK_MIRROR


def _dpkg_arch() -> str:
    if shutil.which("dpkg"):
        out = subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if out:
            return out
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def base_image_key(suite: str = DEBIAN_SUITE) -> str:
    """Cache key of the base image recipe (not of the mirror: same content)."""
    packages = sorted(SUITE_PACKAGES[suite])
    recipe = json.dumps([BASE_RECIPE_VERSION, suite, packages, BASE_IMAGE_CHANGES, _dpkg_arch()])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def base_image_ref(suite: str = DEBIAN_SUITE) -> str:
    """Local reference of the base image (``localhost/`` = never pulled)."""
    return f"localhost/copier-flask-python:{suite}-{base_image_key(suite)}"


def _tarball_prefix(suite: str) -> str:
    # Debian 12's keeps the name it always had, so existing caches stay valid.
    return "base-rootfs-" if suite == DEBIAN_SUITE else f"base-rootfs-{suite}-"


def base_rootfs_tarball(suite: str = DEBIAN_SUITE) -> Path:
    return cache_root() / f"{_tarball_prefix(suite)}{base_image_key(suite)}.tar"


def _run_checked(cmd: list[str], timeout: float) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(_format_failure(proc, " ".join(cmd)))


def _make_python_like_official_image(rootfs: Path, suite: str = DEBIAN_SUITE) -> None:
    """Adjust a debootstrapped rootfs to behave like the python:3.x image."""
    # PEP 668: Debian marks its python "externally managed", which makes
    # `pip install` (no venv) fail in Dockerfiles written for python:3.x.
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    # python:3.x has `python` on PATH; Debian only python3.
    local_bin = rootfs / "usr/local/bin"
    local_bin.mkdir(parents=True, exist_ok=True)
    link = local_bin / "python"
    if not link.is_symlink() and not link.exists():
        link.symlink_to("/usr/bin/python3")  # absolute: resolved inside the container
    # pip in /usr/local, installed by pip as the official image has it (Debian
    # disables ensurepip for its python), from the wheels python3-venv ships:
    # no network, and a RECORD file, so that `pip uninstall` works.
    # Debian 12's python3 as before; in testing every Python gets its own pip
    # and, like python:3.12 and later, no setuptools.
    if suite == DEBIAN_SUITE:
        pips = {"python3": "pip setuptools"}
    else:
        pips = {f"python{version}": "pip" for version in TESTING_PYTHONS}
    for python, packages in pips.items():
        install_pip = (
            "set -- /usr/share/python-wheels/pip-*.whl"
            f' && {python} "$1/pip" install --no-index'
            " --find-links=/usr/share/python-wheels --root-user-action=ignore"
            f" --disable-pip-version-check --no-cache-dir {packages}"
        )
        _run_checked(["chroot", str(rootfs), "sh", "-c", install_pip], timeout=300)

    # Keep the image small like debian:*-slim (which python:*-slim builds
    # on): no docs except copyright notices, no man pages, no translations,
    # now and for packages a Dockerfile installs later (dpkg path-exclude).
    dpkg_cfg = rootfs / "etc/dpkg/dpkg.cfg.d"
    dpkg_cfg.mkdir(parents=True, exist_ok=True)
    (dpkg_cfg / "copier-flask-slim").write_text(
        "".join(f"path-exclude {pattern}\n" for pattern in SLIM_EXCLUDES)
        + "path-include /usr/share/doc/*/copyright\n"
    )
    for pattern in SLIM_EXCLUDES:
        for path in rootfs.glob(pattern.lstrip("/")):
            if path.name == "copyright":
                continue
            if path.is_dir() and not path.is_symlink():
                # keep the copyright file (the only thing kept under doc/)
                for child in path.iterdir():
                    if child.name != "copyright":
                        _remove(child)
                if not any(path.iterdir()):
                    path.rmdir()
            else:
                path.unlink()

    # The host's resolver and name must not leak into the image; podman
    # bind-mounts its own /etc/resolv.conf and /etc/hostname anyway.
    for name in ("etc/resolv.conf", "etc/hostname"):
        path = rootfs / name
        if path.is_file() and not path.is_symlink():
            path.write_text("")

    # Package caches and indexes are useless in the image (Dockerfiles that
    # apt-get install run apt-get update first anyway).
    for pattern in (
        "var/cache/apt/archives/*.deb",
        "var/cache/apt/archives/partial/*",
        "var/cache/apt/*.bin",
        "var/lib/apt/lists/*_*",
        "var/log/apt/*",
        "var/log/*.log",
        "var/cache/debconf/*-old",
        "var/lib/dpkg/*-old",
    ):
        for path in rootfs.glob(pattern):
            _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _build_base_tarball(tarball: Path, suite: str = DEBIAN_SUITE) -> None:
    """debootstrap a minimal Debian ``suite`` with Python and tar it to ``tarball``."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    # Build next to the cache (same filesystem) and rename at the end, so an
    # interrupted run never leaves a truncated tarball that looks complete.
    with tempfile.TemporaryDirectory(prefix="base-rootfs-", dir=tarball.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(SUITE_PACKAGES[suite])}",
            f"--arch={_dpkg_arch()}",
        ]
        keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
        if keyring.is_file():
            cmd.append(f"--keyring={keyring}")
        # testing comes from the mirror that serves Debian 12 (apt names no testing).
        cmd += [suite, str(rootfs), debian_mirror()]
        _run_checked(cmd, timeout=1800)
        _make_python_like_official_image(rootfs, suite)
        partial = Path(tmp) / "rootfs.tar"
        # --numeric-owner: the host's user names must not remap the image's
        # ids. /dev, /proc, /sys are provided by the runtime; debootstrap's
        # device nodes there would only break unprivileged extraction.
        _run_checked(
            [
                "tar",
                "--numeric-owner",
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "-C",
                str(rootfs),
                "-cf",
                str(partial),
                ".",
            ],
            timeout=600,
        )
        os.replace(partial, tarball)
    # Tarballs of older recipes would otherwise pile up (150+ MB each).
    for stale in tarball.parent.glob(f"{_tarball_prefix(suite)}{'?' * 12}.tar"):
        if stale != tarball:
            stale.unlink(missing_ok=True)


def _image_exists(env: Mapping[str, str], ref: str) -> bool:
    return run_podman(env, "image", "exists", ref, check=False, timeout=120).returncode == 0


def ensure_base_tarball(suite: str = DEBIAN_SUITE) -> Path:
    """The cached rootfs tarball of ``suite``; debootstrapped first if missing.

    The tarball lives outside the clone (``cache_root()``) and is made once:
    about a minute of debootstrap, then reused by every run and worker (a file
    lock makes the others wait for the one that builds it). Delete it to pick
    up what the suite publishes since (for testing: new Python point releases).
    """
    tarball = base_rootfs_tarball(suite)
    if tarball.is_file():
        return tarball
    with _file_lock(cache_root() / f"base-{base_image_key(suite)}.lock"):
        if not tarball.is_file():
            _build_base_tarball(tarball, suite)
    return tarball


def ensure_base_image(env: Mapping[str, str], suite: str = DEBIAN_SUITE) -> str:
    """Make sure the Python base image exists in ``env``'s storage; return its ref.

    Use it as ``--build-arg PYTHON_IMAGE=<ref>``. Costs: debootstrap (about a
    minute, once per cache), ``podman import`` (seconds, once per storage),
    then nothing. A file lock serialises pytest-xdist workers so only one of
    them bootstraps while the others wait and reuse its result.
    To refresh (e.g. for Debian security updates) delete the tarball and
    ``podman rmi`` the image, or bump BASE_RECIPE_VERSION.
    """
    ref = base_image_ref(suite)
    if _image_exists(env, ref):  # fast path, no lock needed to read
        return ref
    tarball = ensure_base_tarball(suite)
    with _file_lock(cache_root() / f"base-{base_image_key(suite)}.lock"):
        if _image_exists(env, ref):  # another worker made it meanwhile
            return ref
        changes = [arg for change in BASE_IMAGE_CHANGES for arg in ("--change", change)]
        run_podman(env, "import", *changes, str(tarball), ref, timeout=600)
    return ref


def official_python_image(python: str) -> str:
    """The image the generated Dockerfile names for ``python`` (its FROM line)."""
    return f"docker.io/library/python:{python}-slim-trixie"


def ensure_python_image(env: Mapping[str, str], python: str) -> str:
    """A stand-in for python:``python``-slim-trixie from Debian testing; its ref.

    The testing base with ``python``, ``python3`` and ``pip`` on PATH meaning
    that Python, as in the official image. Built once per storage (a few
    seconds, no network). Also tagged with the official name, so a Dockerfile
    that names it builds with ``--pull=never`` and no registry: that tag is
    shared by the storage's users, so take it from here again right before a
    build and check the Python of what was built.
    """
    if python not in TESTING_PYTHONS:
        raise ValueError(f"Debian testing offers Python {', '.join(TESTING_PYTHONS)}, not {python}")
    base = ensure_base_image(env, TESTING_SUITE)
    ref = f"localhost/copier-flask-python:{python}-{base_image_key(TESTING_SUITE)}"
    with _file_lock(cache_root() / f"python-{python}-image.lock"):
        if not _image_exists(env, ref):
            context = Path(env["TMPDIR"]) / f"python-{python}-{os.getpid()}"
            context.mkdir(parents=True, exist_ok=True)
            links = " && ".join(
                f"ln -sf {target} /usr/local/bin/{name}"
                for name, target in (
                    ("python", f"/usr/bin/python{python}"),
                    ("python3", f"/usr/bin/python{python}"),
                    ("pip", f"pip{python}"),
                    ("pip3", f"pip{python}"),
                )
            )
            (context / "Containerfile").write_text(f"FROM {base}\nRUN {links}\n")
            run_podman(env, "build", "--pull=never", "--format", "docker", "-t", ref, str(context))
            shutil.rmtree(context, ignore_errors=True)
        run_podman(env, "tag", ref, official_python_image(python))
    return ref


# -- helpers for tests that run containers ---------------------------------------------


def wait_for_http(url: str, timeout: float = 30.0) -> tuple[int, bytes]:
    """GET ``url`` until it answers (any HTTP status); return (status, body).

    A just-started container accepts on the published port before the app
    inside listens, so connection resets and refusals are retried.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - test URL
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            last_error = exc
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s: {last_error}")
