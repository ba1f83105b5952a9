"""The browser client's own pieces in a real Chromium, served by the edge's page routes
(uvicorn on loopback, with the security headers of every response)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from api.app import create_app
from api.edge import Edge, EdgeConfig
from tests.web.browser import chromium, new_page
from web import WEB_DIR

pytestmark = pytest.mark.browser


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    """The pages served from the package's web folder on a free port."""
    edge = Edge(create_app(web_dir=WEB_DIR), EdgeConfig(port=0), ws_max_size_bytes=1 << 16)
    await edge.start()
    yield edge.url
    await edge.close()


async def test_pages_run_under_the_content_security_policy(base_url: str) -> None:
    """/join and /ecg load their scripts and styles with no CSP violation reported."""
    async with chromium() as browser:
        page = await new_page(browser)
        violations: list[str] = []
        page.on(
            "console",
            lambda message: (
                violations.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )
        for path in ("/join?token=x.e30.y&lang=en", "/ecg?token=x.e30.y&lang=en"):
            response = await page.goto(f"{base_url}{path}")
            assert response is not None
            assert "script-src 'self'" in response.headers["content-security-policy"]
            await page.wait_for_load_state("networkidle")
            styled = await page.evaluate(
                "() => getComputedStyle(document.body).fontFamily !== '' "
                "&& document.styleSheets.length > 0"
            )
            assert styled, path
        assert violations == []


async def test_strings_exist_in_both_languages(base_url: str) -> None:
    """Every string key has an English and a Chinese text, and zh-* browsers get Chinese."""
    async with chromium() as browser:
        page = await new_page(browser)
        await page.goto(f"{base_url}/join")
        result = await page.evaluate(
            """async () => {
                const m = await import('/static/i18n.js');
                return {en: m.keysOf('en'), zh: m.keysOf('zh'),
                        picks: [m.pickLanguage(null, 'zh-CN'), m.pickLanguage(null, 'en-GB'),
                                m.pickLanguage('zh', 'en-US'), m.pickLanguage(null, 'fr')]};
            }"""
        )
    assert sorted(result["en"]) == sorted(result["zh"])
    assert result["picks"] == ["zh", "en", "zh", "en"]


async def test_lobby_shows_preview_and_chinese_text(base_url: str) -> None:
    """With a token the lobby previews the camera and enables Join, in the chosen language."""
    claims = "eyJzdWIiOiJkci13YW5nIiwibmFtZSI6IldhbmcifQ"  # {"sub":"dr-wang","name":"Wang"}
    async with chromium() as browser:
        page = await new_page(browser)
        await page.goto(f"{base_url}/join?token=x.{claims}.y&lang=zh")
        await page.wait_for_function("() => document.getElementById('preview').videoWidth > 0")
        assert await page.is_enabled("#join")
        assert await page.text_content("#join") == "加入"
        assert "Wang" in (await page.text_content("#lobby-who") or "")


async def test_missing_token_is_explained(base_url: str) -> None:
    """Without a token the page says so and offers no Join."""
    async with chromium() as browser:
        page = await new_page(browser)
        await page.goto(f"{base_url}/join?lang=en")
        await page.wait_for_selector("#lobby-error:not([hidden])")
        assert "no token" in (await page.text_content("#lobby-error") or "")
        assert not await page.is_enabled("#join")


async def test_phone_sized_screen_has_no_horizontal_scroll(base_url: str) -> None:
    """On a 360 px wide screen every screen of the client fits the width."""
    async with chromium() as browser:
        page = await new_page(browser, width=360, height=640)
        await page.goto(f"{base_url}/join?token=x.e30.y")
        widths = await page.evaluate(
            """() => ['lobby', 'waiting', 'room', 'ended'].map((id) => {
                for (const s of document.querySelectorAll('.screen')) s.hidden = s.id !== id;
                return document.documentElement.scrollWidth;
            })"""
        )
    assert max(widths) <= 360, widths
