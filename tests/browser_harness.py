"""Helpers (no tests) for the chat page's browser tests: Debian's headless Chromium driven by Playwright.

Playwright's own browser download is never used: ``make test`` installs Debian's ``chromium`` package and the
tests launch ``/usr/bin/chromium`` with a fresh profile, no GPU, no background networking and no sandbox (the
tests run as root in CI). A page records every request it makes and every console error or CSP violation, so a
test can assert the page stayed on its own origin and that the Content-Security-Policy blocked nothing of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium, closed (with its processes) on exit. A missing chromium fails the test, never skips it:
    ``make test`` installs it, so its absence is a broken setup, not a reason to pass."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Recorder:
    """What a page did: the URLs it requested, console errors (CSP violations among them), page errors."""

    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "status path" of answers >= 400
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> Page:
        page.on("request", self._on_request)
        page.on("response", self._on_response)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        return page

    def _on_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.status} {urlsplit(response.url).path}")

    def _on_console(self, message: ConsoleMessage) -> None:
        # Chromium also logs every answer >= 400 as an error; those are in ``failed``.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def foreign_requests(self, origin: str) -> list[str]:
        return [url for url in self.requests if not url.startswith(origin + "/") and not url.startswith("data:")]


@contextmanager
def browser_page(url: str, recorder: Recorder | None = None) -> Iterator[Page]:
    """A fresh Chromium at ``url``. Start the services first: while Playwright's sync API runs, its event loop
    runs in this thread, so code that calls ``asyncio.run`` (starting an in-process worker) cannot."""
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        context.set_default_timeout(20_000)
        try:
            page = context.new_page()
            if recorder is not None:
                recorder.attach(page)
            page.goto(url)
            yield page
        finally:
            context.close()
