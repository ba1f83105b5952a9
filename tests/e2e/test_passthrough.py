"""Real Chromium clients through the server with passthrough forwarding: nothing decoded."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page

from media.passthrough import PassthroughForwarder
from tests.e2e.conftest import Consult
from tests.e2e.pages import assert_sees_and_hears
from tests.web.browser import chromium, new_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


async def seeing_each_other(browser: Browser, consult: Consult) -> tuple[Page, Page]:
    """Pages of "dr-a" and "dr-b" (moderators) joined and rendering each other's video."""
    a = await new_page(browser)
    b = await new_page(browser)
    await a.goto(consult.join_url("dr-a"))
    await b.goto(consult.join_url("dr-b"))
    await assert_sees_and_hears(a, "dr-b")
    await assert_sees_and_hears(b, "dr-a")
    return a, b


async def test_browsers_see_each_other_and_the_server_never_decodes(
    consult: Consult, browser: Browser
) -> None:
    """Two Chromiums render each other; a late third sees both within seconds; 0 decoded."""
    assert isinstance(consult.sfu._forwarder, PassthroughForwarder)  # the server's default
    await seeing_each_other(browser, consult)
    requests_before = consult.sfu.stats()["keyframe_requests"]
    c = await new_page(browser)
    joined = time.monotonic()
    await c.goto(consult.join_url("dr-c"))
    for identity in ("dr-a", "dr-b"):
        await assert_sees_and_hears(c, identity, timeout_s=10)
    late_join_s = time.monotonic() - joined
    stats = consult.sfu.stats()
    assert stats["decoded_frames"] == 0
    assert stats["transcoding_fallbacks"] == 0
    assert stats["forwarded_packets"] > 100
    assert stats["keyframe_requests"] > requests_before
    assert late_join_s < 10, late_join_s
