"""The base images the container tests build on, made here: no registry is reachable.

debootstrap from the mirror apt uses, adjusted to behave like the official python image,
tarred into the cache once per machine, imported into podman's storage once per storage;
each under a file lock that pytest-xdist workers share.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

from harness.podman import _file_lock, _run, cache_root, run_podman

#: Debian 12: its python3 is 3.11, so projects built on it are rendered for BASE_PYTHON.
DEBIAN_SUITE = "bookworm"
BASE_PYTHON = "3.11"

#: On top of debootstrap's minbase: what the official python image offers, and CA
#: certificates. pip comes from ensurepip into /usr/local as in the official image, not
#: Debian's python3-pip, whose lack of a RECORD file breaks a Dockerfile's `pip uninstall`.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")

#: The config the official image has and `podman import` does not give (no ENV, no CMD).
BASE_IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)

#: What debian:*-slim leaves out (debuerreotype's "slimify" list).
SLIM_EXCLUDES = tuple(
    f"/usr/share/{folder}/*"
    for folder in ("doc", "groff", "info", "linda", "lintian/overrides", "locale", "man")
)

#: Bump when the recipe below changes in a way the cache key cannot see.
BASE_RECIPE_VERSION = 3

#: Debian testing, for the Pythons Debian 12 lacks: one root holds them all, and
#: ``ensure_python_image`` makes one image per Python from it.
TESTING_SUITE = "testing"
TESTING_PYTHONS = ("3.14", "3.15")
TESTING_PACKAGES = (*(f"python{version}-venv" for version in TESTING_PYTHONS), "ca-certificates")
SUITE_PACKAGES = {DEBIAN_SUITE: BASE_PACKAGES, TESTING_SUITE: TESTING_PACKAGES}

#: A stand-in for the official nginx image: Debian's nginx on the same base, started
#: the way nginx:*-alpine starts.
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


def debian_mirror() -> str:
    """The mirror apt on this host uses for Debian 12: reachable, maybe a local one
    (apt reads its sources, whatever their format; --no-release-info: before any update)."""
    targets = ["apt-get", "--no-release-info", "indextargets", "--format", "$(REPO_URI) $(RELEASE)"]
    listing = shutil.which("apt-get") and _run(targets, 60, check=False).stdout
    for words in (line.split() for line in (listing or "").splitlines()):
        if words[1:] == [DEBIAN_SUITE] and words[0].startswith(("http://", "https://", "file:/")):
            return words[0]
    return "http://deb.debian.org/debian"  # apt names none (e.g. Ubuntu hosts)


def _dpkg_arch() -> str:
    dpkg, machine = shutil.which("dpkg"), platform.machine()
    arch = dpkg and _run([dpkg, "--print-architecture"], 60, check=False).stdout.strip()
    return arch or {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def base_image_key(suite: str = DEBIAN_SUITE) -> str:
    """Cache key of the base image recipe (not of the mirror: same content)."""
    packages = sorted(SUITE_PACKAGES[suite])
    recipe = json.dumps([BASE_RECIPE_VERSION, suite, packages, BASE_IMAGE_CHANGES, _dpkg_arch()])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def _tarball_prefix(suite: str) -> str:
    # Debian 12's keeps the name it always had, so existing caches stay valid.
    return "base-rootfs-" if suite == DEBIAN_SUITE else f"base-rootfs-{suite}-"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _make_python_like_official_image(rootfs: Path, suite: str) -> None:
    """Adjust a debootstrapped rootfs to behave like the python:3.x-slim image."""
    # PEP 668's marker makes a Dockerfile's `pip install` (no venv) fail.
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    link = rootfs / "usr/local/bin/python"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink() and not link.exists():
        link.symlink_to("/usr/bin/python3")  # absolute: resolved inside the container
    # pip in /usr/local from the wheels python3-venv ships (Debian disables ensurepip):
    # no network, and a RECORD file for `pip uninstall`. In testing each Python gets its
    # own pip and, like python:3.12 and later, no setuptools.
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
        _run(["chroot", str(rootfs), "sh", "-c", install_pip], timeout=300)
    # Slim like debian:*-slim, now and for what a Dockerfile installs later (dpkg's
    # path-exclude): no docs but the copyright notices, no man pages, no translations.
    dpkg_cfg = rootfs / "etc/dpkg/dpkg.cfg.d"
    dpkg_cfg.mkdir(parents=True, exist_ok=True)
    (dpkg_cfg / "copier-flask-slim").write_text(
        "".join(f"path-exclude {pattern}\n" for pattern in SLIM_EXCLUDES)
        + "path-include /usr/share/doc/*/copyright\n"
    )
    for pattern in SLIM_EXCLUDES:
        for path in rootfs.glob(pattern.lstrip("/")):
            if path.is_dir() and not path.is_symlink() and path.name != "copyright":
                for child in path.iterdir():
                    if child.name != "copyright":
                        _remove(child)
                if not any(path.iterdir()):
                    path.rmdir()
            elif path.name != "copyright":
                path.unlink()
    # The host's resolver and name must not leak in (podman mounts its own anyway).
    for name in ("etc/resolv.conf", "etc/hostname"):
        path = rootfs / name
        if path.is_file() and not path.is_symlink():
            path.write_text("")
    # Package caches and indexes (a Dockerfile's apt-get runs apt-get update first).
    for pattern in (
        "var/cache/apt/archives/*.deb var/cache/apt/archives/partial/* var/cache/apt/*.bin"
        " var/lib/apt/lists/*_* var/log/apt/* var/log/*.log var/cache/debconf/*-old"
        " var/lib/dpkg/*-old"
    ).split():
        for path in rootfs.glob(pattern):
            _remove(path)


def _build_base_tarball(tarball: Path, suite: str) -> None:
    """debootstrap a minimal Debian ``suite`` with Python and tar it to ``tarball``."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the cache and renamed at the end: never a truncated tarball.
    with tempfile.TemporaryDirectory(prefix="base-rootfs-", dir=tarball.parent) as tmp:
        rootfs, partial = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(SUITE_PACKAGES[suite])}"]
        cmd.append(f"--arch={_dpkg_arch()}")
        keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
        if keyring.is_file():
            cmd.append(f"--keyring={keyring}")
        # testing comes from the mirror that serves Debian 12 (apt names no testing).
        _run([*cmd, suite, str(rootfs), debian_mirror()], timeout=1800)
        _make_python_like_official_image(rootfs, suite)
        # --numeric-owner: the host's user names must not remap the image's ids. The
        # runtime provides /dev, /proc and /sys; device nodes would break extraction.
        tar = ["tar", "--numeric-owner", "--exclude=./dev/*", "--exclude=./proc/*"]
        _run([*tar, "--exclude=./sys/*", "-C", str(rootfs), "-cf", str(partial), "."], 600)
        os.replace(partial, tarball)
    # Tarballs of older recipes would otherwise pile up.
    for stale in tarball.parent.glob(f"{_tarball_prefix(suite)}{'?' * 12}.tar"):
        if stale != tarball:
            stale.unlink(missing_ok=True)


def _image_once(env: Mapping[str, str], ref: str, lock: str, make: Callable[[], object]) -> str:
    """``ref``, made by ``make`` unless ``env``'s storage has it, under a file lock: another
    worker may be making it meanwhile."""

    def exists() -> bool:
        return run_podman(env, "image", "exists", ref, check=False, timeout=120).returncode == 0

    if not exists():
        with _file_lock(cache_root() / lock):
            if not exists():
                make()
    return ref


def _build(env: Mapping[str, str], ref: str, dockerfile: str, *args: str) -> None:
    """`podman build` of a one-file context in podman's TMPDIR."""
    context = Path(env["TMPDIR"]) / f"image-{uuid.uuid4().hex[:8]}"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(dockerfile)
    try:
        run_podman(env, "build", "--format", "docker", *args, "-t", ref, str(context), timeout=900)
    finally:
        shutil.rmtree(context, ignore_errors=True)


def ensure_base_image(env: Mapping[str, str], suite: str = DEBIAN_SUITE) -> str:
    """The Python base image of ``suite`` in ``env``'s storage; its ref. To refresh it
    (security updates, testing's new Pythons) delete the tarball and ``podman rmi`` it."""
    key = base_image_key(suite)
    ref = f"localhost/copier-flask-python:{suite}-{key}"
    tarball = cache_root() / f"{_tarball_prefix(suite)}{key}.tar"

    def make() -> None:
        if not tarball.is_file():
            _build_base_tarball(tarball, suite)
        changes = [arg for change in BASE_IMAGE_CHANGES for arg in ("--change", change)]
        run_podman(env, "import", *changes, str(tarball), ref, timeout=600)

    return _image_once(env, ref, f"base-{key}.lock", make)


def ensure_python_image(env: Mapping[str, str], python: str) -> str:
    """A stand-in for python:``python``-slim-trixie from Debian testing; its ref."""
    if python not in TESTING_PYTHONS:
        raise ValueError(f"Debian testing offers Python {', '.join(TESTING_PYTHONS)}, not {python}")
    base = ensure_base_image(env, TESTING_SUITE)
    ref = f"localhost/copier-flask-python:{python}-{base_image_key(TESTING_SUITE)}"
    targets = dict.fromkeys(("python", "python3"), f"/usr/bin/python{python}")
    targets |= dict.fromkeys(("pip", "pip3"), f"pip{python}")
    links = " && ".join(f"ln -sf {to} /usr/local/bin/{name}" for name, to in targets.items())
    build = partial(_build, env, ref, f"FROM {base}\nRUN {links}\n", "--pull=never")
    return _image_once(env, ref, f"python-{python}-image.lock", build)


def ensure_nginx_image(env: Mapping[str, str]) -> str:
    """A local nginx image that behaves like the official one; its reference."""
    return ensure_derived_image(env, "nginx", NGINX_DOCKERFILE)


def ensure_derived_image(
    env: Mapping[str, str], name: str, dockerfile: str, suite: str = DEBIAN_SUITE
) -> str:
    """An image built from `dockerfile` on the base image (its BASE_IMAGE build argument),
    once per storage and recipe; its reference. apt reaches the base image's mirror."""
    recipe = hashlib.sha256(dockerfile.encode()).hexdigest()[:8]
    ref = f"localhost/copier-flask-{name}:{suite}-{base_image_key(suite)}-{recipe}"
    base = f"BASE_IMAGE={ensure_base_image(env, suite)}"
    build = partial(_build, env, ref, dockerfile, "--build-arg", base)
    return _image_once(env, ref, f"{name}-{suite}-image.lock", build)
