"""A private nginx that runs a rendered project's config, and gixy to lint it.

The generated files are written for their real home: the project in
/srv/<slug>, gunicorn's socket in /run/<slug>, port 80 on every interface.
`localize` copies a rendered project and rewrites exactly those three things
(failing loudly if one is missing, so a changed template cannot silently test
something else), then `running_nginx` starts nginx in the foreground with its
own prefix, pid file, logs and temp folders, listening on 127.0.0.1 only.

Standard library only, besides pytest for skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.http import LOOPBACK, free_port, http_get
from harness.processes import Process, start, stop
from harness.tools import skip_or_fail
from harness.venvs import tool_venv
from harness.waiting import eventually

# Debian's nginx package; the site file relies on the distribution's
# nginx.conf for these, so the test wrapper includes them the same way.
MIME_TYPES = Path("/etc/nginx/mime.types")
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
# gixy pins an old pyparsing, so it lives in a virtualenv of its own.
GIXY_PIN = "gixy==0.1.21"


def nginx_binary() -> str:
    """nginx from PATH or /usr/sbin (not on a normal user's PATH), else skip/fail."""
    found = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None or not MIME_TYPES.exists():
        skip_or_fail("nginx is not installed (apt-get install nginx)")
    return str(found)


def short_tempdir() -> Path:
    """A fresh folder with a short path: unix socket paths must fit 108 bytes."""
    return Path(tempfile.mkdtemp(prefix="cf-nginx-", dir="/tmp"))  # noqa: S108


# -- the generated config, made to run here -----------------------------------


@dataclass
class Site:
    """A rendered project's nginx config, rewritten to run in `work`."""

    root: Path  # the project copy, standing in for /srv/<slug>
    prefix: Path  # nginx -p: pid file, logs, temp folders
    port: int
    main_conf: Path  # what `nginx -c` gets
    access_log: Path
    error_log: Path
    tls_port: int = 0  # what `listen 443` became
    pid_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.pid_file = self.prefix / "nginx.pid"


def _rewrite(text: str, slug: str, root: Path, port: int, upstream: str, tls_port: int = 0) -> str:
    """Point the config at `root`, `upstream` and 127.0.0.1:`port` (443: `tls_port`)."""
    text = text.replace(f"/srv/{slug}", str(root))
    # Where site.conf looks for include/https.conf: the test's own prefix.
    text = text.replace(f"/etc/nginx/{slug}-https", str(root.parent / "nginx" / f"{slug}-https"))
    text = re.sub(
        rf"(?m)^(\s*server\s+)(unix:/run/{re.escape(slug)}/(?:gunicorn|granian)\.sock|web:8000)\b",
        rf"\g<1>{upstream}",
        text,
    )
    text = re.sub(r"\b(listen\s+)443\b", rf"\g<1>{LOOPBACK}:{tls_port}", text)
    return re.sub(r"\b(listen\s+)80\b", rf"\g<1>{LOOPBACK}:{port}", text)


def _leftovers(text: str, slug: str) -> list[str]:
    """Active (uncommented) lines that would still reach outside the test."""
    active = [line.split("#", 1)[0] for line in text.splitlines()]
    return [
        line.strip()
        for line in active
        if f"/srv/{slug}" in line
        or f"/run/{slug}" in line
        or "web:8000" in line
        or (re.search(r"\blisten\b", line) and LOOPBACK not in line)
    ]


def localize(
    project: Path, work: Path, slug: str, *, port: int, upstream: str, container: bool = False
) -> Site:
    """Copy `project` into `work` and rewrite its deploy/nginx files to run here.

    `upstream` replaces gunicorn's address (`unix:/path.sock` or `127.0.0.1:PORT`).
    With `container`, nginx runs the container's whole nginx.conf (plus temp
    folders of its own); otherwise a wrapper like a distribution's nginx.conf
    includes the host site file.
    """
    root = work / "app"
    shutil.copytree(project, root, symlinks=True)
    prefix = work / "nginx"
    for name in TEMP_DIRS:
        (prefix / name).mkdir(parents=True)
    access_log, error_log = prefix / "access.log", prefix / "error.log"
    conf_dir = root / "deploy" / "nginx"
    tls_port = free_port()
    for conf in conf_dir.rglob("*.conf"):
        text = _rewrite(conf.read_text(), slug, root, port, upstream, tls_port)
        # The site's access log (a host's file; the container links it to stdout).
        text = text.replace("/var/log/nginx/access.log", str(access_log))
        assert not _leftovers(text, slug), f"{conf} not localized: {_leftovers(text, slug)}"
        conf.write_text(text)

    temp_paths = "".join(f"    {n}_temp_path {prefix / n};\n" for n in TEMP_DIRS)
    if container:
        main = conf_dir / "nginx.conf"
        text = main.read_text()
        # The container logs to stdout; the tests also want a file to read.
        text, found = re.subn(
            r"(?m)^http \{\n", f"http {{\n{temp_paths}    access_log {access_log};\n", text
        )
        assert found == 1, "nginx.conf has no `http {` block"
        main.write_text(text)
    else:
        main = prefix / "nginx.conf"
        main.write_text(
            "# Written by harness/nginx.py: what a distribution's nginx.conf\n"
            "# gives the site file, with private paths.\n"
            "worker_processes 1;\n"
            f"error_log {error_log} info;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"    include {MIME_TYPES};\n"
            "    default_type application/octet-stream;\n"
            "    sendfile on;\n"
            f"    access_log {access_log};\n"
            f"{temp_paths}"
            f"    include {conf_dir / f'{slug}.conf'};\n"
            "}\n"
        )
    return Site(root, prefix, port, main, access_log, error_log, tls_port)


DEBIAN_NGINX_CONF = Path("/etc/nginx/nginx.conf")


def use_debian_main_conf(site: Site, slug: str, setup: str = "") -> None:
    """Run the site under a copy of Debian's own /etc/nginx/nginx.conf instead of
    the wrapper, with the site file linked into its sites-enabled as on a host.

    `setup`: shell lines from the README that edit /etc/nginx, run on the copy
    first (with /etc/nginx and /srv/<slug> pointed at the test's folders).
    """
    if not DEBIAN_NGINX_CONF.exists():
        skip_or_fail(f"{DEBIAN_NGINX_CONF} is missing (apt-get install nginx)")
    etc = site.prefix / "etc"
    for folder in ("modules-enabled", "sites-enabled"):
        (etc / folder).mkdir(parents=True)
    main = etc / "nginx.conf"
    shutil.copy(DEBIAN_NGINX_CONF, main)
    conf = site.root / "deploy" / "nginx" / f"{slug}.conf"
    (etc / "sites-enabled" / conf.name).symlink_to(conf)
    if setup:
        script = setup.replace("/etc/nginx/", f"{etc}/").replace(f"/srv/{slug}", str(site.root))
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, f"{script}\n{done.stderr}"
    text = main.read_text()
    # nginx_command passes user and pid itself; everything else stays Debian's.
    text = re.sub(r"(?m)^(user|pid)\s[^;]*;\n", "", text)
    temp_paths = "".join(f"    {n}_temp_path {site.prefix / n};\n" for n in TEMP_DIRS)
    text = text.replace("http {\n", f"http {{\n{temp_paths}", 1)
    for system, private in {
        "/var/log/nginx/error.log": site.error_log,
        "/var/log/nginx/access.log": site.access_log,
        "/etc/nginx/modules-enabled/": etc / "modules-enabled/",
        "/etc/nginx/sites-enabled/": etc / "sites-enabled/",
        "/etc/nginx/conf.d/": etc / "conf.d/",
    }.items():
        text = text.replace(system, f"{private}/" if system.endswith("/") else str(private))
    main.write_text(text)
    site.main_conf = main


def nginx_command(site: Site, *extra: str) -> list[str]:
    """nginx with the site's prefix, config and startup log; `extra` appended."""
    globals_ = f"daemon off; pid {site.pid_file};"
    if os.geteuid() == 0:
        # Workers would run as `nobody`, who cannot read the test's private
        # temp folders: run them as the user running the tests.
        globals_ += f" user {pwd.getpwuid(os.geteuid()).pw_name};"
    return [
        nginx_binary(),
        "-p",
        f"{site.prefix}/",
        "-c",
        str(site.main_conf),
        "-e",
        str(site.error_log),
        "-g",
        globals_,
        *extra,
    ]


def nginx_test(site: Site) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on the localized config."""
    return subprocess.run(
        nginx_command(site, "-t"), capture_output=True, text=True, timeout=30, check=False
    )


@contextlib.contextmanager
def running_nginx(site: Site, host: str, timeout: float = 10) -> Iterator[Process]:
    """nginx in the foreground, answering HTTP for `host`; stopped on exit.

    Ready means any HTTP answer (a 502 too, when no app server is meant to run).
    It needs the right Host header: any other name is dropped by the catch-all
    server, which is the point.
    """
    server = start(nginx_command(site), site.prefix, dict(os.environ), site.prefix / "nginx.out")
    try:

        def answering() -> bool:
            if server.returncode is not None:
                raise AssertionError(f"nginx exited: {server.output()}{site.error_log.read_text()}")
            return bool(http_get(site.port, "/healthz", {"Host": host}, timeout=2))

        eventually(answering, timeout, what="nginx answering")
        yield server
    finally:
        # SIGTERM is nginx's fast shutdown; stop() kills the group if it hangs.
        stop(server, timeout=10)


def self_signed_cert(directory: Path, name: str) -> tuple[Path, Path]:
    """A throwaway certificate and key for `name` (openssl, valid two days)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        skip_or_fail("openssl is not installed")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [str(openssl), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def _uncomment(text: str, start: str) -> str:
    """Switch on the one commented line that begins with `start`."""
    text, found = re.subn(rf"(?m)^(\s*)# ({re.escape(start)}[^\n]*)$", r"\1\2", text)
    assert found == 1, f"expected one commented line starting with {start!r}, found {found}"
    return text


def enable_tls(site: Site, slug: str, domain: str, tls_port: int, cert: Path, key: Path) -> None:
    """Switch HTTPS on as the README tells a host to: include/https.conf where
    site.conf looks for it (here a copy with this test's certificate, on
    `tls_port`), and handshakes for other names refused (catch-all.conf)."""
    include = site.root / "deploy" / "nginx" / "include"
    listen = f"{LOOPBACK}:{site.tls_port}"
    text = (include / "https.conf").read_text().replace(listen, f"{LOOPBACK}:{tls_port}")
    live = f"/etc/letsencrypt/live/{domain}"
    text = text.replace(f"{live}/fullchain.pem", str(cert)).replace(f"{live}/privkey.pem", str(key))
    (site.prefix / f"{slug}-https.conf").write_text(text)

    catch_all = include / "catch-all.conf"
    text = _uncomment(
        _uncomment(catch_all.read_text(), f"listen {listen} ssl"), "ssl_reject_handshake"
    )
    catch_all.write_text(text.replace(listen, f"{LOOPBACK}:{tls_port}"))
    for conf in (site.prefix / f"{slug}-https.conf", catch_all):
        left = _leftovers(conf.read_text(), slug)
        assert not left, f"{conf} not localized: {left}"


# -- gixy, in a cached virtualenv of its own -------------------------------------


def gixy_binary() -> str:
    """gixy from a virtualenv under ~/.cache/copier-flask/gixy, built once."""
    return str(tool_venv(GIXY_PIN) / "gixy")


def gixy_issues(conf: Path) -> list[dict[str, str]]:
    """gixy's findings on `conf` (with its includes), as gixy's JSON records."""
    # Both configs include nginx's own mime.types, as deployed; gixy reads
    # every include and stops on a missing one, so it needs nginx installed.
    if not MIME_TYPES.exists():
        skip_or_fail(f"gixy needs nginx's {MIME_TYPES} (apt-get install nginx)")
    result = subprocess.run(
        [gixy_binary(), "-f", "json", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # gixy skips includes it cannot find with a warning: that would hide issues.
    # (A pattern that matches nothing is no file: site.conf's HTTPS include.)
    missing = [line for line in result.stderr.splitlines() if "File not found" in line]
    assert [line for line in missing if "*" not in line] == [], result.stderr
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout or "[]")
