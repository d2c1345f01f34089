"""The stack's edges, proven live on loopback: what a flood, a long URL, odd
headers, deep JSON, the example API's writes or a header auditor meet, and how
answers may be cached.

The host install runs under a copy of Debian's own nginx.conf, edited by the
generated README's own lines (harness/nginx.py: use_debian_main_conf).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.clients import raw_request, sample_requests
from harness.http import LOOPBACK, Response
from harness.processes import start
from harness.render import render
from harness.serving import Served, serve
from harness.tools import require_tool
from harness.venvs import API_TOKEN, BEARER, production_env, project_venv, tool_venv
from harness.waiting import eventually

SETTINGS = {"WEB_CONCURRENCY": "2", "GUNICORN_MAX_REQUESTS": "0", "LOG_FORMAT": "json"}
JSON = {"Content-Type": "application/json"}
WITH_TOKEN = JSON | BEARER  # production_env sets API_TOKEN
FLOOD = 2000  # slow connections, as in the audit (slowhttptest -c 2000 -H)
DRHEADER_PIN, SHCHECK_PIN = "drheader==2.0.0", "shcheck==1.7"


@pytest.fixture(scope="module")
def project(copie_session: Any) -> Path:
    return render(copie_session, database="sqlite")


@pytest.fixture(scope="module")
def env(project: Path) -> dict[str, str]:
    return production_env(project_venv(project), **SETTINGS)


def readme_nginx_setup(project: Path) -> str:
    """The README's lines that edit nginx's main settings, as printed."""
    readme = (project / "README.md").read_text()
    found = re.search(r"(?ms)^# nginx's main settings.*?\n(sed .*?)\nnginx -t", readme)
    assert found, "the README's host block has no main-settings step"
    return found.group(1)


def on_host(project: Path, env: dict[str, str], work: Path, setup: str) -> Any:
    """The project behind nginx under Debian's nginx.conf, after the lines `setup`."""
    return serve(project, work, env, behind_nginx=True, debian_setup=setup)


@pytest.fixture(scope="module")
def host(
    project: Path, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The host install as the README leaves it, under Debian's nginx.conf."""
    with on_host(project, env, tmp_path_factory.mktemp("host"), readme_nginx_setup(project)) as s:
        # The README's migration step, in the folder the server runs from.
        migrate = subprocess.run(
            ["flask", "db", "upgrade"], cwd=s.cwd, env=dict(s.env), capture_output=True, timeout=60
        )
        assert migrate.returncode == 0, migrate.stderr
        yield s


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
    served: Served, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> Response:
    return served.request(method, path, body or None, headers, timeout=10)


def logged(served: Served, rid: str) -> list[str]:
    """The app server's log lines naming request `rid`, once its access line is
    there (gunicorn writes it after the answer, as the request's last line)."""
    served.wait_for_log(rf"{rid}.*gunicorn\.access|gunicorn\.access.*{rid}", regex=True)
    return [line for line in served.output().splitlines() if rid in line]


# -- a flood of slow connections --------------------------------------------------------


def open_connections(port: int) -> int:
    """Established TCP connections to 127.0.0.1:`port` (the kernel's table)."""
    table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    fields = (line.split() for line in table)
    return sum(1 for f in fields if f[1] == f"0100007F:{port:04X}" and f[3] == "01")


def flood(served: Served, tmp: Path) -> tuple[int, int, float, int]:
    """2000 slowloris connections at once; meanwhile plain GETs on fresh
    connections. Returns (probes, refused or failed, slowest answer in s,
    connections nginx held when the probes began)."""
    url = f"http://{LOOPBACK}:{served.port}/healthz"
    attack = start(
        [require_tool("slowhttptest"), "-c", str(FLOOD), "-H", "-r", str(FLOOD), "-i", "2",
         "-l", "12", "-u", url, "-p", "2"],
        tmp, {}, tmp / f"slowhttptest-{served.port}.log",
    )  # fmt: skip
    try:
        # Until the connections are open (nginx cuts each off 10 s after it
        # opened, client_header_timeout), or as many as nginx will take.
        with contextlib.suppress(AssertionError):
            eventually(
                lambda: open_connections(served.port) >= FLOOD * 0.9, 5, what="the flood's sockets"
            )
        held = open_connections(served.port)
        samples = sample_requests(served.port, served.host or "", seconds=5, timeout=2, pause=0.2)
    finally:
        attack.popen.kill()
        attack.wait(timeout=10)
    return samples.total, samples.failed, samples.percentile(100), held


def test_a_2000_connection_flood_locks_nobody_out_of_the_host_install(
    project: Path, env: dict[str, str], tmp_path: Path
) -> None:
    stock = Path("/etc/nginx/nginx.conf").read_text()
    assert "worker_connections 768;" in stock, "not Debian's stock nginx.conf"
    results = {}
    for name, setup in (("before", ""), ("after", readme_nginx_setup(project))):
        with on_host(project, env, tmp_path / name, setup) as served:
            results[name] = flood(served, tmp_path)
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
def test_no_version_on_answers_before_a_site_is_chosen(host: Served, raw: bytes) -> None:
    answer = raw_request(host.port, raw, whole=True)
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
    host: Served, raw: bytes, status: bytes
) -> None:
    answer = raw_request(host.port, raw + f"Host: {host.host}\r\n\r\n".encode(), whole=True)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 " + status), answer[:300]
    if re.search(rb"(?im)^transfer-encoding: chunked", head):
        body = dechunk(body)
    found = re.search(rb"(?im)^x-request-id: ([0-9a-f]{32})\r?$", head)
    assert found and b"<code>" + found.group(1) + b"</code>" in body, answer[:400]
    assert b"nginx" not in body, "the site's page, not nginx's"


# -- deep JSON -------------------------------------------------------------------------


def test_json_nested_too_deeply_is_a_400_with_one_log_line(host: Served) -> None:
    answer = request(host, "POST", "/items", WITH_TOKEN, b"[" * 50_000)
    assert answer.status == 400 and json.loads(answer.body)["status"] == 400, answer.body[:200]
    lines = logged(host, answer.headers["x-request-id"])
    assert len(lines) == 1 and "Traceback" not in host.output(), lines


# -- the example API's writes --------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(JSON, id="no-token"),
        pytest.param({**JSON, "Authorization": "Bearer " + "x" * len(API_TOKEN)}, id="wrong-token"),
        pytest.param({**JSON, "Authorization": API_TOKEN}, id="no-scheme"),
    ],
)
def test_production_writes_without_the_token_get_401(host: Served, headers: dict[str, str]) -> None:
    refused = request(host, "POST", "/items", headers, b'{"name": "tea"}')
    assert refused.status == 401 and refused.headers["www-authenticate"] == "Bearer", refused
    assert "API_TOKEN" in json.loads(refused.body)["error"]
    assert request(host, "DELETE", "/items/1", headers).status == 401


def test_production_writes_with_the_token_go_through(host: Served) -> None:
    created = request(host, "POST", "/items", WITH_TOKEN, b'{"name": "tea"}')
    assert created.status == 201, created.body
    item = json.loads(created.body)
    assert item in json.loads(request(host, "GET", "/items").body)["items"]  # reads: no token
    assert request(host, "DELETE", created.headers["location"], WITH_TOKEN).status == 204


def test_production_without_api_token_refuses_every_write(
    project: Path, env: dict[str, str], tmp_path: Path
) -> None:
    unset = {k: v for k, v in env.items() if k != "API_TOKEN"}
    with serve(project, tmp_path, unset) as alone:  # refused before the database is used
        for method, path in (("POST", "/items"), ("DELETE", "/items/1")):
            refused = request(alone, method, path, WITH_TOKEN, b'{"name": "tea"}')
            assert refused.status == 403, (method, refused.body)
            assert "API_TOKEN" in json.loads(refused.body)["error"]


# -- requests past gunicorn's defaults --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "path", "headers"),
    [
        ("5 kB URL (gunicorn's default: 414)", "/" + "a" * 5000, {}),
        ("120 headers (gunicorn's default: 431)", "/nowhere", {f"X-H{i}": "1" for i in range(120)}),
    ],
)
def test_requests_past_gunicorns_defaults_get_the_sites_own_pages(
    host: Served, name: str, path: str, headers: dict[str, str]
) -> None:
    answer = request(host, "GET", path, headers)
    assert b"gunicorn" not in answer.body.lower(), (name, answer.status, answer.body[:300])
    assert b'<link rel="stylesheet" href="/static/style.css?v=' in answer.body, name
    assert answer.headers["x-request-id"].encode() in answer.body, name


def test_a_control_character_in_a_header_gets_the_sites_page(host: Served) -> None:
    # nginx passes it on; gunicorn refuses it (400) with the app's page (gunicorn_hooks.py).
    odd = f"GET / HTTP/1.1\r\nHost: {host.host}\r\nX-Odd: a\x01b\r\nConnection: close\r\n\r\n"
    answer = raw_request(host.port, odd.encode(), whole=True)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert b"gunicorn" not in answer.lower() and b"style.css?v=" in body, answer[:300]
    found = re.search(rb"(?im)^x-request-id: ([0-9a-f]{32})\r?$", head)
    assert found and found.group(1) in body, answer[:300]
    host.wait_for_log(found.group(1).decode())  # the refusal is logged with its id


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


def drheader_rules(bindir: Path) -> dict[str, Any]:
    site = next((bindir.parent / "lib").glob("python*/site-packages/drheader"))
    rules = yaml.safe_load((site / "resources" / "rules.yml").read_text())
    return rules | DEPARTURES


@pytest.mark.parametrize("path", ["/", "/nowhere", "/healthz"])
def test_a_header_auditor_finds_nothing_missing(host: Served, tmp_path: Path, path: str) -> None:
    bindir = tool_venv(DRHEADER_PIN)
    (tmp_path / "headers.json").write_text(json.dumps(request(host, "GET", path).headers))
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(drheader_rules(bindir)))
    audit = subprocess.run(
        [bindir / "drheader", "compare", "single", "-o", "json", "-rf", "rules.yml",
         "headers.json"],
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
def test_shcheck_finds_nothing_missing_but_our_departures(host: Served, path: str) -> None:
    shcheck = tool_venv(SHCHECK_PIN) / "shcheck.py"
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


def test_pages_set_no_cookie_and_static_urls_are_kept_a_year_through_nginx(host: Served) -> None:
    for path in ("/", "/nowhere"):
        page = request(host, "GET", path)
        assert "set-cookie" not in page.headers and page.headers["cache-control"] == "no-cache", (
            path
        )
    static = request(host, "GET", stylesheet(page.body))
    assert static.status == 200
    assert static.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert request(host, "GET", "/static/style.css").headers["cache-control"] == "no-cache"


def test_without_nginx_static_files_are_cached_and_gzipped(
    project: Path, env: dict[str, str], tmp_path: Path
) -> None:
    copy = tmp_path / "project"
    shutil.copytree(project, copy)
    # A stylesheet big enough to compress (the generated one is a few lines).
    css = next(copy.glob("*/static/style.css"))
    css.write_text(css.read_text() + "\n".join(f".c{i} {{ color: red; }}" for i in range(200)))
    with serve(copy, tmp_path / "logs", env) as alone:
        page = request(alone, "GET", "/")
        assert "set-cookie" not in page.headers and page.headers["cache-control"] == "no-cache"
        static = request(alone, "GET", stylesheet(page.body), {"Accept-Encoding": "gzip"})
    assert static.status == 200 and static.headers["content-encoding"] == "gzip"
    assert static.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert gzip.decompress(static.body) == css.read_bytes()


# -- logs -------------------------------------------------------------------------------


def test_json_access_lines_have_a_field_for_each_part(host: Served) -> None:
    rid = request(host, "GET", "/nowhere?page=2").headers["x-request-id"]
    lines = [json.loads(line) for line in logged(host, rid)]
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert len(access) == 1, lines
    fields = {key: access[0][key] for key in ("method", "path", "status", "request_id")}
    assert fields == {"method": "GET", "path": "/nowhere?page=2", "status": 404, "request_id": rid}
    assert access[0]["bytes"] > 0 and access[0]["duration_ms"] >= 0
