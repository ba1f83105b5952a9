"""Debian's Chromium driven by Playwright, with fake camera and microphone.

Never ``playwright install``: the system browser at ``/usr/bin/chromium`` is used.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Remote audio plays without a click, as after a user's Join click.
    "--autoplay-policy=no-user-gesture-required",
    # Real host addresses in candidates instead of mDNS names (nothing resolves them here).
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


def require_chromium() -> None:
    """Skip with a reason where the system Chromium is missing."""
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} not installed (make sysdeps)")


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium, closed on exit."""
    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser, *, width: int = 1024, height: int = 700) -> Page:
    """A page in its own context (its own cookies and storage), errors echoed to pytest."""
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    page.on("pageerror", lambda error: print(f"page error: {error}"))
    return page
