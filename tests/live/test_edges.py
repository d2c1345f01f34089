"""The stack's edges, proven live on loopback: what a flood, a long URL, odd
headers, deep JSON or a header auditor meet, and how answers may be cached.

The host install runs under a copy of Debian's own nginx.conf, edited by the
generated README's own lines (tests/helpers/nginx.py: use_debian_main_conf).
"""

from __future__ import annotations

import fcntl
import gzip
import http.client
import json
import re
import shutil
import socket
import subprocess
import time
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.nginx import sample_requests
from tests.helpers.project_env import CACHE, project_venv
from tests.helpers.render import render
from tests.helpers.servers import LOOPBACK
from tests.helpers.stack import Stack, gunicorn_stack, nginx_stack, project_env
from tests.helpers.tools import require_tool, skip_or_fail

pytestmark = pytest.mark.nginx

APP = ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
SETTINGS = {"WEB_CONCURRENCY": "2", "GUNICORN_MAX_REQUESTS": "0", "LOG_FORMAT": "json"}
FLOOD = 2000  # slow connections, as in the audit (slowhttptest -c 2000 -H)
DRHEADER_PIN, SHCHECK_PIN = "drheader==2.0.0", "shcheck==1.7"


@pytest.fixture(scope="module")
def project(copie_session: Any) -> Path:
    return render(copie_session, database="sqlite")


@pytest.fixture(scope="module")
def venv_bin(project: Path) -> Path:
    return project_venv(project)


def readme_nginx_setup(project: Path) -> str:
    """The README's lines that edit nginx's main settings, as printed."""
    readme = (project / "README.md").read_text()
    found = re.search(r"(?ms)^# nginx's main settings.*?\n(sed .*?)\nnginx -t", readme)
    assert found, "the README's host block has no main-settings step"
    return found.group(1)


def serve(project: Path, venv_bin: Path, work: Path, setup: str | None) -> Any:
    return nginx_stack(APP, project, project_env(venv_bin, **SETTINGS), work, debian_setup=setup)


@pytest.fixture(scope="module")
def host(
    project: Path, venv_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The host install as the README leaves it, under Debian's nginx.conf."""
    work = tmp_path_factory.mktemp("host")
    with serve(project, venv_bin, work, readme_nginx_setup(project)) as stack:
        yield stack


def raw_answer(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send raw bytes; everything the server answers until it closes (b"" for none)."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return answer


def dechunk(body: bytes) -> bytes:
    """A chunked body (Transfer-Encoding: chunked) as one."""
    whole = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        length = int(size.split(b";")[0], 16)
        if length == 0:
            break
        whole, body = whole + body[:length], body[length + 2 :]
    return whole


def request(
    stack: Stack, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, stack.port, timeout=10)
    conn.request(
        method, path, body=body or None, headers={"Host": stack.host or "", **(headers or {})}
    )
    response = conn.getresponse()
    answer = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    conn.close()
    return answer


# -- a flood of slow connections --------------------------------------------------------


def open_connections(port: int) -> int:
    """Established TCP connections to 127.0.0.1:`port` (the kernel's table)."""
    table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    fields = (line.split() for line in table)
    return sum(1 for f in fields if f[1] == f"0100007F:{port:04X}" and f[3] == "01")


def flood(stack: Stack, tmp: Path) -> tuple[int, int, float, int]:
    """2000 slowloris connections at once; meanwhile plain GETs on fresh
    connections. Returns (probes, refused or failed, slowest answer in s,
    connections nginx held when the probes began)."""
    slowhttptest = require_tool("slowhttptest")
    url = f"http://{LOOPBACK}:{stack.port}/healthz"
    attack = subprocess.Popen(
        [slowhttptest, "-c", str(FLOOD), "-H", "-r", str(FLOOD), "-i", "2", "-l", "12",
         "-u", url, "-p", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp, start_new_session=True,
    )  # fmt: skip
    try:
        # Until the connections are open (nginx cuts each off 10 s after it
        # opened, client_header_timeout), or as many as nginx will take.
        held, end = 0, time.monotonic() + 5
        while held < FLOOD * 0.9 and time.monotonic() < end:
            time.sleep(0.5)
            held = open_connections(stack.port)
        samples = sample_requests(stack.port, stack.host or "", seconds=5, timeout=2, pause=0.2)
    finally:
        attack.kill()
        attack.wait(timeout=10)
    return samples.total, samples.failed, samples.percentile(100), held


def test_a_2000_connection_flood_locks_nobody_out_of_the_host_install(
    project: Path, venv_bin: Path, tmp_path: Path
) -> None:
    stock = Path("/etc/nginx/nginx.conf").read_text()
    assert "worker_connections 768;" in stock, "not Debian's stock nginx.conf"
    results = {}
    for name, setup in (("before", ""), ("after", readme_nginx_setup(project))):
        with serve(project, venv_bin, tmp_path / name, setup) as stack:
            results[name] = flood(stack, tmp_path)
    for name, (total, failed, slowest, held) in results.items():
        print(
            f"FLOOD {name}: {held} slow connections held; {failed} of {total} plain requests"
            f" refused, slowest answer {slowest:.3f} s"
        )
    total, failed, slowest, held = results["after"]
    # The flood really held its connections while the plain requests went through.
    assert held >= FLOOD * 0.9 and total >= 20, results
    assert failed == 0 and slowest < 1.0, results


# -- no version on any answer -----------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: \r\n\r\n", id="empty-host"),
        pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", id="9kB-uri"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n", id="9kB-hdr"),
        pytest.param(b"GARBAGE\r\n\r\n", id="bad-request-line"),
    ],
)
def test_no_version_on_answers_before_a_site_is_chosen(host: Stack, raw: bytes) -> None:
    answer = raw_answer(host.port, raw)
    assert b"nginx/" not in answer, answer[:300]
    if answer:  # an answer, not 444's closed connection
        assert re.search(rb"(?im)^server: nginx\r$", answer), answer[:300]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n", b"414", id="9kB-uri"),
        pytest.param(b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n", b"400", id="9kB-hdr"),
        pytest.param(b"GET / HTTP/1.1\r\nX\x01: a\r\nBad header\r\n", b"400", id="malformed"),
    ],
)
def test_requests_past_nginxs_limits_get_the_sites_page_with_the_id(
    host: Stack, raw: bytes, status: bytes
) -> None:
    answer = raw_answer(host.port, raw + f"Host: {host.host}\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 " + status), answer[:300]
    if re.search(rb"(?im)^transfer-encoding: chunked", head):
        body = dechunk(body)
    found = re.search(rb"(?im)^x-request-id: ([0-9a-f]{32})\r?$", head)
    assert found and b"<code>" + found.group(1) + b"</code>" in body, answer[:400]
    assert b"nginx" not in body, "the site's page, not nginx's"


# -- deep JSON -------------------------------------------------------------------------


def test_json_nested_too_deeply_is_a_400_with_one_log_line(host: Stack) -> None:
    status, headers, body = request(
        host, "POST", "/items", {"Content-Type": "application/json"}, b"[" * 50_000
    )
    assert status == 400 and json.loads(body)["status"] == 400, body[:200]
    rid = headers["x-request-id"]
    time.sleep(0.5)  # gunicorn writes its access line after the answer
    lines = [line for line in host.gunicorn.output().splitlines() if rid in line]
    assert len(lines) == 1 and "Traceback" not in host.gunicorn.output(), lines


# -- requests past gunicorn's defaults --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "path", "headers"),
    [
        ("5 kB URL (gunicorn's default: 414)", "/" + "a" * 5000, {}),
        ("120 headers (gunicorn's default: 431)", "/nowhere", {f"X-H{i}": "1" for i in range(120)}),
    ],
)
def test_requests_past_gunicorns_defaults_get_the_sites_own_pages(
    host: Stack, name: str, path: str, headers: dict[str, str]
) -> None:
    status, answer_headers, body = request(host, "GET", path, headers)
    assert b"gunicorn" not in body.lower(), (name, status, body[:300])
    assert b'<link rel="stylesheet" href="/static/style.css?v=' in body, (name, body[:300])
    assert answer_headers["x-request-id"].encode() in body, name


def test_a_control_character_in_a_header_gets_the_sites_page(host: Stack) -> None:
    # nginx passes it on; gunicorn refuses it (400) with the app's page (gunicorn_hooks.py).
    answer = raw_answer(
        host.port, f"GET / HTTP/1.1\r\nHost: {host.host}\r\nX-Odd: a\x01b\r\n\r\n".encode()
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert b"gunicorn" not in answer.lower() and b"style.css?v=" in body, answer[:300]
    found = re.search(rb"(?im)^x-request-id: ([0-9a-f]{32})\r?$", head)
    assert found and found.group(1) in body, answer[:300]
    time.sleep(0.5)
    assert found.group(1).decode() in host.gunicorn.output(), "the refusal is logged with its id"


# -- a header auditor -------------------------------------------------------------------

# drheader's own rules (drheader/resources/rules.yml), minus the ones we depart
# from on purpose, each with its reason. Every other finding fails the test.
DEPARTURES = {
    # Pages that use no session may be stored, and must be revalidated ("no-cache");
    # "no-store" would forbid every cache. Pages with a session are "private, no-cache".
    "Cache-Control": {"Required": True, "Value-Any-Of": ["no-cache", "private"]},
    # An HTTP/1.0 header that Cache-Control replaces.
    "Pragma": {"Required": False},
    # Cross-origin isolation (SharedArrayBuffer) is not something a Flask site
    # needs, and require-corp blocks every image or font from elsewhere.
    "Cross-Origin-Embedder-Policy": {"Required": False},
    # HSTS is sent over HTTPS only (this audit runs over plain HTTP), and without
    # includeSubDomains: the app cannot know that every subdomain has HTTPS.
    "Strict-Transport-Security": {"Required": False},
    # Obsolete: Content-Security-Policy's frame-ancestors 'none' replaces it in
    # every current browser; nginx still sends it on the files it serves.
    "X-Frame-Options": {"Required": False},
    # Obsolete: no current browser has the XSS auditor this header configured.
    "X-XSS-Protection": {"Required": False},
    # "Server: nginx", without a version (server_tokens off): open-source nginx
    # cannot drop the header itself.
    "Server": {"Required": True, "Value": "nginx"},
}


def auditor(command: str, pin: str) -> str:
    """`command` from a virtualenv of its own under ~/.cache/copier-flask (its pins are its own)."""
    target = CACHE / pin.split("==")[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    marker = target / ".complete"
    with open(f"{target}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (marker.exists() and marker.read_text() == pin):
            venv.EnvBuilder(clear=True, with_pip=True).create(target)
            pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q", pin]
            try:
                subprocess.run(pip, check=True, timeout=300, capture_output=True)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                skip_or_fail(f"could not install {pin}: {exc}")
            marker.write_text(pin)
    return str(target / "bin" / command)


def drheader_rules(binary: str) -> dict[str, Any]:
    site = next((Path(binary).parent.parent / "lib").glob("python*/site-packages/drheader"))
    rules = yaml.safe_load((site / "resources" / "rules.yml").read_text())
    return rules | DEPARTURES


@pytest.mark.parametrize("path", ["/", "/nowhere", "/healthz"])
def test_a_header_auditor_finds_nothing_missing(host: Stack, tmp_path: Path, path: str) -> None:
    binary = auditor("drheader", DRHEADER_PIN)
    _, headers, _ = request(host, "GET", path)
    (tmp_path / "headers.json").write_text(json.dumps(headers))
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(drheader_rules(binary)))
    audit = subprocess.run(
        [binary, "compare", "single", "-o", "json", "-rf", "rules.yml", "headers.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    print(f"drheader on {path}:\n{audit.stdout}{audit.stderr}")
    # Its exit code counts findings; the JSON says which.
    findings = json.loads(audit.stdout or "null")
    assert findings == [], findings


# shcheck's "missing" headers that we leave out on purpose (the reasons of the
# same names above, for the ones both auditors know).
SHCHECK_DEPARTURES = {
    "X-XSS-Protection",
    "X-Frame-Options",  # the app's pages: CSP frame-ancestors; nginx sends it on its own files
    "Cross-Origin-Embedder-Policy",
    # Would stop other origins from loading the site's files, including the site
    # itself when a CDN serves its static files from another domain; nothing the
    # pages load is secret to other sites.
    "Cross-Origin-Resource-Policy",
    # For Flash and Acrobat's cross-domain policy files: the site has none.
    "X-Permitted-Cross-Domain-Policies",
    # Certificate Transparency is enforced by browsers on their own; Chrome dropped the header.
    "Expect-CT",
}


@pytest.mark.parametrize("path", ["/", "/nowhere"])
def test_shcheck_finds_nothing_missing_but_our_departures(host: Stack, path: str) -> None:
    shcheck = auditor("shcheck.py", SHCHECK_PIN)
    url = f"http://{LOOPBACK}:{host.port}{path}"
    audit = subprocess.run(
        [shcheck, "-j", "-g", "-i", "-k", "-a", f"Host: {host.host}", url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    print(f"shcheck on {path}:\n{audit.stdout}{audit.stderr}")
    (report,) = json.loads(audit.stdout).values()
    assert set(report["missing"]) <= SHCHECK_DEPARTURES, report
    # It reports the Server header as a disclosure: it names nginx, never its version.
    assert report.get("information_disclosure", {}) in ({}, {"Server": "nginx"}), report


# -- caching ----------------------------------------------------------------------------


def stylesheet(body: bytes) -> str:
    found = re.search(rb'href="(/static/style\.css\?v=[0-9a-f]+)"', body)
    assert found, body[:300]
    return found.group(1).decode()


def test_pages_set_no_cookie_and_static_urls_are_kept_a_year_through_nginx(host: Stack) -> None:
    for path in ("/", "/nowhere"):
        _, headers, body = request(host, "GET", path)
        assert "set-cookie" not in headers and headers["cache-control"] == "no-cache", path
    status, headers, _ = request(host, "GET", stylesheet(body))
    assert status == 200
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    _, headers, _ = request(host, "GET", "/static/style.css")
    assert headers["cache-control"] == "no-cache"


def test_without_nginx_static_files_are_cached_and_gzipped(
    project: Path, venv_bin: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "project"
    shutil.copytree(project, copy)
    # A stylesheet big enough to compress (the generated one is a few lines).
    css = next(copy.glob("*/static/style.css"))
    css.write_text(css.read_text() + "\n".join(f".c{i} {{ color: red; }}" for i in range(200)))
    env = project_env(venv_bin, **SETTINGS)
    with gunicorn_stack(APP, copy, env, tmp_path / "logs") as alone:
        _, headers, body = request(alone, "GET", "/")
        assert "set-cookie" not in headers and headers["cache-control"] == "no-cache"
        url = stylesheet(body)
        status, headers, zipped = request(alone, "GET", url, {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert gzip.decompress(zipped) == css.read_bytes()


# -- logs -------------------------------------------------------------------------------


def test_json_access_lines_have_a_field_for_each_part(host: Stack) -> None:
    _, headers, _ = request(host, "GET", "/nowhere?page=2")
    rid = headers["x-request-id"]
    time.sleep(0.5)
    lines = [json.loads(line) for line in host.gunicorn.output().splitlines() if rid in line]
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert len(access) == 1, lines
    fields = {key: access[0][key] for key in ("method", "path", "status", "request_id")}
    assert fields == {"method": "GET", "path": "/nowhere?page=2", "status": 404, "request_id": rid}
    assert access[0]["bytes"] > 0 and access[0]["duration_ms"] >= 0
