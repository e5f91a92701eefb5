"""Headless Chromium (Debian's ``chromium``) driven by Playwright, for the report tests.

No browser is downloaded: Playwright launches ``/usr/bin/chromium`` (``scripts/test`` installs it
with apt). Chromium's own background traffic is switched off; every request the page makes is
recorded, so a test can assert that a report asks nothing of any other host.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass
class Page:
    """An open page and every request it made (URLs), and the script errors it raised."""

    page: Any
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def outside_requests(self) -> list[str]:
        """Requests for anything but the local file itself, inline data and loopback."""
        return [url for url in self.requests
                if not url.startswith(("file://", "data:", "blob:", "about:", "http://127.0.0.1"))]


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000) -> Iterator[Page]:
    """A fresh page in headless Chromium; AssertionError naming the fix when Chromium is missing."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is not installed: run ./scripts/test (it installs it) or apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            opened = Page(page)
            page.on("request", lambda request: opened.requests.append(request.url))
            page.on("pageerror", lambda error: opened.errors.append(str(error)))
            yield opened
        finally:
            browser.close()


def is_blank(png: bytes) -> bool:
    """Whether a screenshot is one flat colour (nothing rendered)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    low, high = image.getextrema()
    return high - low < 10
