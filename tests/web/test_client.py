"""The browser client's own pieces in a real Chromium, served by signaling's HTTP routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from signaling.http import route
from tests.web.browser import chromium, new_page

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
pytestmark = pytest.mark.browser


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        return route(
            request.path, web_dir=WEB_DIR, health=dict, metrics=lambda: (b"", "text/plain")
        )

    async def handler(connection: ServerConnection) -> None:
        await connection.close()

    async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"


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
        await page.wait_for_function("document.getElementById('preview').videoWidth > 0")
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
