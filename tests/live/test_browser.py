"""The pages in a real browser: headless Chromium through the project's nginx, the site's
domain resolved to 127.0.0.1 so that nginx gets the Host it serves. For `/`, a 404 and a 500:
the Content-Security-Policy blocked nothing, the console stayed clean, style.css applied (a
screenshot of each in build/browser/); a page with an inline style proves the check sees a
violation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import REPO
from harness.browser import chromium
from harness.chaos import probe_copy
from harness.serving import Served, serve
from harness.venvs import production_env

SCREENSHOTS = REPO / "build" / "browser"


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


def test_pages_load_clean_with_their_stylesheet_and_a_csp_violation_shows(
    default_project: Path, venv_bin: Path, tmp_path: Path
) -> None:
    # The probe app (harness/apps/probe_wsgi.py: a crash, an inline style) behind nginx.
    project = probe_copy(default_project, tmp_path / "project")
    env = production_env(venv_bin, WEB_CONCURRENCY="2")
    with serve(project, tmp_path / "logs", env, app="probe_wsgi:app", behind_nginx=True) as stack:
        with chromium(
            "--window-size=1000,700",
            f"--host-resolver-rules=MAP {stack.host} 127.0.0.1",
            capabilities={"goog:loggingPrefs": {"browser": "ALL"}},
        ) as browser:
            check_pages(browser, stack)


def check_pages(browser: Any, stack: Served) -> None:
    pages = [("/", "index", "Demo Shop"), ("/nowhere", "404", "404 Not Found")]
    for path, name, heading in [*pages, ("/_probe/crash", "500", "500 Internal Server Error")]:
        console = visit(browser, stack, path, name)
        assert console == [], f"{path}: CSP violations or console errors"
        assert browser.find_element("tag name", "h1").text == heading
        # style.css: body { max-width: 40rem } (640px); the browser default is none.
        max_width = browser.execute_script("return getComputedStyle(document.body).maxWidth")
        assert max_width == "640px", f"{path}: style.css did not apply"

    console = visit(browser, stack, "/_probe/inline-style", "inline-style-blocked")
    assert any("Content Security Policy" in entry["message"] for entry in console), console
