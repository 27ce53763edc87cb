"""Headless Chromium (Debian's package) driven by Playwright against a live portal server.

Playwright's own browser download does not work in a sovereign environment, so the launch
names the system binary (CHROMIUM_PATH, default /usr/bin/chromium)."""

import os
import shutil
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.totp import totp_code

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-quic",
]


@pytest.fixture(scope="session")
def browser():
    # Playwright's sync API keeps an event loop running in the test thread; the test code's
    # own ORM calls are still synchronous and safe there.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    executable = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser, base_url: str) -> Page:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    return context.new_page()


class ForeignRequests:
    """Every request the page makes to a host other than the portal's."""

    def __init__(self, page: Page, portal_url: str):
        self.allowed = urlparse(portal_url).netloc
        self.seen: list[str] = []
        self.foreign: list[str] = []
        page.on("request", self._record)

    def _record(self, request) -> None:
        self.seen.append(request.url)
        parsed = urlparse(request.url)
        if parsed.scheme in ("data", "blob", "about"):
            return
        if parsed.netloc != self.allowed:
            self.foreign.append(request.url)


def sign_in(page: Page, email: str, password: str, totp_secret: str | None = None) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    if totp_secret:
        page.fill("input[name=code]", totp_code(totp_secret))
        page.click("main button[type=submit]")
        page.wait_for_load_state()
