"""Headless Chromium (Debian's chromium and chromium-driver), driven by selenium."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.tools import skip_or_fail

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@contextmanager
def chromium(*arguments: str, capabilities: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A headless Chromium webdriver with `arguments` and `capabilities`, quit when
    the block ends; skipped (failed under CI) when Chromium is not installed."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        skip_or_fail("chromium and chromium-driver are not installed (apt-get install ...)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # No sandbox: the tests may run as root. No proxy: every page is on loopback.
    for argument in ("--headless=new", "--no-sandbox", "--no-proxy-server", *arguments):
        options.add_argument(argument)
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(15)
    try:
        yield driver
    finally:
        driver.quit()
