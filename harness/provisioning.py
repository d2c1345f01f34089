"""The base images the container tests build on, made here instead of pulled.

No container registry is reachable, so the Python base image is bootstrapped
with debootstrap from the Debian mirror apt already uses, made to behave like
the official python image, tarred into the cache outside the clone (about a
minute, once) and imported into podman's storage (seconds, once per storage).
The nginx stand-in is Debian's nginx on that base. Each is built once per
machine under a file lock that pytest-xdist workers share.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from harness.podman import _file_lock, _format_failure, cache_root, run_podman

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

#: A stand-in for the official nginx image (no registry is reachable here):
#: Debian's nginx on the same base, started the way nginx:*-alpine starts.
NGINX_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \\
    && apt-get install -y --no-install-recommends nginx-light wget \\
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \\
    && ln -sf /dev/stdout /var/log/nginx/access.log \\
    && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
"""


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

    Project builds give it the name of their Dockerfile's FROM lines
    (images.stand_in_for_from_lines); a Dockerfile of a test's own can take it
    as a build argument. Costs: debootstrap (about a
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


def ensure_nginx_image(env: Mapping[str, str]) -> str:
    """A local nginx image that behaves like the official one; its reference."""
    return ensure_derived_image(env, "nginx", NGINX_DOCKERFILE)


def ensure_derived_image(
    env: Mapping[str, str], name: str, dockerfile: str, suite: str = DEBIAN_SUITE
) -> str:
    """An image built from `dockerfile` on the base image (its BASE_IMAGE build
    argument), once per storage and recipe; its reference. apt inside the build
    reaches the base image's Debian mirror. A file lock keeps pytest-xdist
    workers from racing.
    """
    recipe = hashlib.sha256(dockerfile.encode()).hexdigest()[:8]
    ref = f"localhost/copier-flask-{name}:{suite}-{base_image_key(suite)}-{recipe}"
    if _image_exists(env, ref):
        return ref
    with _file_lock(cache_root() / f"{name}-{suite}-image.lock"):
        if _image_exists(env, ref):
            return ref
        context = Path(env["TMPDIR"]) / f"{name}-image-{uuid.uuid4().hex[:8]}"
        context.mkdir(parents=True)
        (context / "Dockerfile").write_text(dockerfile)
        base = ensure_base_image(env, suite)
        build = ["build", "--format", "docker", "--build-arg", f"BASE_IMAGE={base}"]
        run_podman(env, *build, "-t", ref, str(context), timeout=900)
    return ref
