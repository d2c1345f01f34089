"""A private nginx that runs a rendered project's config, and gixy to lint it.

The generated files are written for their real home: the project in /srv/<slug>,
the server's socket in /run/<slug>, ports 80 and 443 on every interface. `localize`
copies a project and rewrites exactly those (failing loudly if one is left, so a
changed template cannot silently test something else); `running_nginx` runs it in
the foreground with its own prefix, pid file, logs and temp folders, on 127.0.0.1.
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
from dataclasses import dataclass
from pathlib import Path

from harness.http import LOOPBACK, free_port, http_get
from harness.processes import Process, start, stop
from harness.tools import skip_or_fail
from harness.venvs import tool_venv
from harness.waiting import eventually

# Debian's nginx package: the site file relies on the distribution's nginx.conf
# for these, so the test wrapper includes them the same way.
MIME_TYPES = Path("/etc/nginx/mime.types")
DEBIAN_NGINX_CONF = Path("/etc/nginx/nginx.conf")
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
# gixy pins an old pyparsing, so it lives in a virtualenv of its own.
GIXY_PIN = "gixy==0.1.21"


def short_tempdir() -> Path:
    """A fresh folder with a short path: unix socket paths must fit 108 bytes."""
    return Path(tempfile.mkdtemp(prefix="cf-nginx-", dir="/tmp"))  # noqa: S108


@dataclass
class Site:
    """A rendered project's nginx config, rewritten to run here."""

    root: Path  # the project copy, standing in for /srv/<slug>
    prefix: Path  # nginx -p: pid file, logs, temp folders
    port: int
    main_conf: Path  # what `nginx -c` gets
    access_log: Path
    error_log: Path
    tls_port: int = 0  # what `listen 443` became


def _temp_paths(prefix: Path) -> str:
    return "".join(f"    {name}_temp_path {prefix / name};\n" for name in TEMP_DIRS)


def _leftovers(text: str, slug: str) -> list[str]:
    """Active (uncommented) lines that would still reach outside the test."""
    active = (line.split("#", 1)[0] for line in text.splitlines())
    return [
        line.strip()
        for line in active
        if any(outside in line for outside in (f"/srv/{slug}", f"/run/{slug}", "web:8000"))
        or (re.search(r"\blisten\b", line) and LOOPBACK not in line)
    ]


def localize(
    project: Path, work: Path, slug: str, *, upstream: str, port: int = 0, container: bool = False
) -> Site:
    """Copy `project` into `work` and rewrite its deploy/nginx files to run here
    (on `port`, or a free one).

    `upstream` replaces the app server's address (`unix:/path.sock` or `127.0.0.1:PORT`).
    With `container`, nginx runs the container's whole nginx.conf; otherwise a
    wrapper like a distribution's nginx.conf includes the host site file.
    """
    root, prefix = work / "app", work / "nginx"
    shutil.copytree(project, root, symlinks=True)
    for name in TEMP_DIRS:
        (prefix / name).mkdir(parents=True)
    logs = prefix / "access.log", prefix / "error.log"
    site = Site(root, prefix, port or free_port(), prefix / "nginx.conf", *logs, free_port())
    conf_dir = root / "deploy" / "nginx"
    socket = rf"unix:/run/{re.escape(slug)}/(?:gunicorn|granian)\.sock"
    server = rf"(?m)^(\s*server\s+)({socket}|web:8000)\b"
    for conf in conf_dir.rglob("*.conf"):
        text = conf.read_text().replace(f"/srv/{slug}", str(root))
        # Where site.conf looks for include/https.conf: the test's own prefix.
        text = text.replace(f"/etc/nginx/{slug}-https", str(prefix / f"{slug}-https"))
        text = re.sub(server, rf"\g<1>{upstream}", text)
        text = re.sub(r"\b(listen\s+)443\b", rf"\g<1>{LOOPBACK}:{site.tls_port}", text)
        text = re.sub(r"\b(listen\s+)80\b", rf"\g<1>{LOOPBACK}:{site.port}", text)
        # The site's access log (a host's file; the container links it to stdout).
        text = text.replace("/var/log/nginx/access.log", str(site.access_log))
        assert not _leftovers(text, slug), f"{conf} not localized: {_leftovers(text, slug)}"
        conf.write_text(text)
    if container:
        site.main_conf = conf_dir / "nginx.conf"
        # The container logs to stdout; the tests also want a file to read.
        head = f"http {{\n{_temp_paths(prefix)}    access_log {site.access_log};\n"
        text, found = re.subn(r"(?m)^http \{\n", head, site.main_conf.read_text())
        assert found == 1, "nginx.conf has no `http {` block"
        site.main_conf.write_text(text)
    else:
        site.main_conf.write_text(
            "# Written by harness/nginx.py: what a distribution's nginx.conf\n"
            "# gives the site file, with private paths.\n"
            "worker_processes 1;\n"
            f"error_log {site.error_log} info;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"    include {MIME_TYPES};\n"
            "    default_type application/octet-stream;\n"
            "    sendfile on;\n"
            f"    access_log {site.access_log};\n"
            f"{_temp_paths(prefix)}"
            f"    include {conf_dir / f'{slug}.conf'};\n"
            "}\n"
        )
    return site


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
    # nginx_command passes user and pid itself; everything else stays Debian's.
    text = re.sub(r"(?m)^(user|pid)\s[^;]*;\n", "", main.read_text())
    text = text.replace("http {\n", f"http {{\n{_temp_paths(site.prefix)}", 1)
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


def nginx_binary() -> str:
    """nginx from PATH or /usr/sbin (not on a normal user's PATH), else skip/fail."""
    found = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None or not MIME_TYPES.exists():
        skip_or_fail("nginx is not installed (apt-get install nginx)")
    return str(found)


def nginx_command(site: Site, *extra: str) -> list[str]:
    """nginx with the site's prefix, config and startup log; `extra` appended."""
    globals_ = f"daemon off; pid {site.prefix / 'nginx.pid'};"
    if os.geteuid() == 0:
        # Workers would run as `nobody`, who cannot read the test's private
        # temp folders: run them as the user running the tests.
        globals_ += f" user {pwd.getpwuid(os.geteuid()).pw_name};"
    paths = ["-p", f"{site.prefix}/", "-c", str(site.main_conf), "-e", str(site.error_log)]
    return [nginx_binary(), *paths, "-g", globals_, *extra]


def nginx_test(site: Site) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on the localized config."""
    return subprocess.run(nginx_command(site, "-t"), capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def running_nginx(site: Site, host: str, timeout: float = 10) -> Iterator[Process]:
    """nginx in the foreground, answering HTTP for `host` (any other name is
    dropped by the catch-all server); ready on any answer, a 502 too."""
    server = start(nginx_command(site), site.prefix, dict(os.environ), site.prefix / "nginx.out")
    try:

        def answering() -> bool:
            if server.returncode is not None:
                raise AssertionError(f"nginx exited: {server.output()}{site.error_log.read_text()}")
            return bool(http_get(site.port, "/healthz", {"Host": host}, timeout=2))

        eventually(answering, timeout, what="nginx answering")
        yield server
    finally:
        stop(server, timeout=10)  # SIGTERM: nginx's fast shutdown


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


def enable_tls(site: Site, slug: str, domain: str, cert: Path, key: Path) -> None:
    """Switch HTTPS on as the README tells a host to, on `site.tls_port`:
    include/https.conf where site.conf looks for it (with this certificate), and
    handshakes for other names refused (catch-all.conf's commented lines)."""
    include = site.root / "deploy" / "nginx" / "include"
    live = f"/etc/letsencrypt/live/{domain}"
    text = (include / "https.conf").read_text()
    text = text.replace(f"{live}/fullchain.pem", str(cert)).replace(f"{live}/privkey.pem", str(key))
    https = site.prefix / f"{slug}-https.conf"
    https.write_text(text)
    catch_all = include / "catch-all.conf"
    text = catch_all.read_text()
    for line in (f"listen {LOOPBACK}:{site.tls_port} ssl", "ssl_reject"):
        text, found = re.subn(rf"(?m)^(\s*)# ({re.escape(line)}[^\n]*)$", r"\1\2", text)
        assert found == 1, f"expected one commented line starting with {line!r}, found {found}"
    catch_all.write_text(text)
    for conf in (https, catch_all):
        assert not _leftovers(conf.read_text(), slug), f"{conf} not localized"


def gixy_issues(conf: Path) -> list[dict[str, str]]:
    """gixy's findings on `conf` (with its includes), as gixy's JSON records."""
    # Both configs include nginx's own mime.types, as deployed; gixy reads
    # every include and stops on a missing one, so it needs nginx installed.
    if not MIME_TYPES.exists():
        skip_or_fail(f"gixy needs nginx's {MIME_TYPES} (apt-get install nginx)")
    command = [str(tool_venv(GIXY_PIN) / "gixy"), "-f", "json", str(conf)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    # gixy skips includes it cannot find with a warning: that would hide issues.
    # (A pattern that matches nothing is no file: site.conf's HTTPS include.)
    missing = [line for line in result.stderr.splitlines() if "File not found" in line]
    assert [line for line in missing if "*" not in line] == [], result.stderr
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout or "[]")
