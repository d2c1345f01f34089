"""The pages in a real browser: headless Chromium through the project's nginx.

selenium drives Debian's chromium through chromium-driver. The browser
resolves the site's domain to 127.0.0.1 (--host-resolver-rules), so nginx
gets the Host it serves. For `/`, a 404 and a 500 it checks that the
Content-Security-Policy blocked nothing and the console stayed clean, and
that style.css applied; a screenshot of each is kept in build/browser/. A
page with an inline style proves the check sees a violation when there is one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import REPO
from harness.browser import chromium
from harness.chaos import probe_copy
from harness.serving import Served, serve
from harness.venvs import production_env

SCREENSHOTS = REPO / "build" / "browser"


@pytest.fixture(scope="module")
def stack(
    default_project: Path, venv_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The probe app (harness/apps/probe_wsgi.py: a crash, an inline style)
    behind the project's nginx config."""
    project = probe_copy(default_project, tmp_path_factory.mktemp("browser") / "project")
    env = production_env(venv_bin, WEB_CONCURRENCY="2")
    work = tmp_path_factory.mktemp("browser-stack")
    with serve(project, work, env, app="probe_wsgi:app", behind_nginx=True) as served:
        yield served


@pytest.fixture(scope="module")
def browser(stack: Served) -> Iterator[Any]:
    with chromium(
        "--window-size=1000,700",
        f"--host-resolver-rules=MAP {stack.host} 127.0.0.1",
        capabilities={"goog:loggingPrefs": {"browser": "ALL"}},
    ) as driver:
        yield driver


def visit(browser: Any, stack: Served, path: str, name: str) -> list[dict[str, Any]]:
    """Load `path`; keep a screenshot; the console entries it produced, except
    the one that reports the page's own error status (a 404 page is a 404), and
    Chromium's note that it ignores Cross-Origin-Opener-Policy over plain HTTP
    on a name that is not localhost (it applies over HTTPS)."""
    browser.get_log("browser")  # drop what an earlier page left
    url = f"http://{stack.host}:{stack.port}{path}"
    browser.get(url)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    return [
        entry
        for entry in browser.get_log("browser")
        if not (
            entry["message"].startswith(url)
            and (
                "the server responded with a status" in entry["message"]
                or "Cross-Origin-Opener-Policy header has been ignored" in entry["message"]
            )
        )
    ]


def stylesheet_applied(browser: Any) -> bool:
    # style.css: body { max-width: 40rem } (640px); the browser default is none.
    return browser.execute_script("return getComputedStyle(document.body).maxWidth") == "640px"


#: Each page the browser loads: its path, a name for its screenshot, its heading.
PAGES = (
    ("/", "index", "Demo Shop"),
    ("/nowhere", "404", "404 Not Found"),
    ("/_probe/crash", "500", "500 Internal Server Error"),
)


@pytest.mark.parametrize(("path", "name", "heading"), PAGES)
def test_page_loads_clean_with_its_stylesheet(
    browser: Any, stack: Served, path: str, name: str, heading: str
) -> None:
    console = visit(browser, stack, path, name)
    assert console == [], "CSP violations or console errors"
    assert browser.find_element("tag name", "h1").text == heading
    assert stylesheet_applied(browser), "style.css did not apply"


def test_the_check_sees_a_csp_violation(browser: Any, stack: Served) -> None:
    console = visit(browser, stack, "/_probe/inline-style", "inline-style-blocked")
    assert any("Content Security Policy" in entry["message"] for entry in console), console
