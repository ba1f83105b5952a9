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


async def test_a_gap_in_the_live_trace_erases_the_previous_pass_over_it(base_url: str) -> None:
    """Chunks the server spared a lagging viewer leave a blank gap on the paper, not the
    trace of ten seconds before (nor a line joining the two sides)."""
    async with chromium() as browser:
        page = await new_page(browser, width=1000, height=600)
        await page.goto(f"{base_url}/join?token=x.e30.y&lang=en")
        inked = await page.evaluate(
            """async () => {
                const { EcgPaper } = await import('/static/ecg-paper.js');
                const paper = document.createElement('div');
                paper.style.width = '1000px';
                const grid = document.createElement('canvas');
                const trace = document.createElement('canvas');
                paper.append(grid, trace);
                document.body.append(paper);
                const ecg = new EcgPaper({ paper, grid, trace, counters: {} });
                ecg.running = false;
                ecg.start({ leads: ['II'], fs_hz: 500 }, 'rhythm');
                ecg.fs = 125;
                const c = trace.getContext('2d');
                const draw = (first, last) => {
                    c.beginPath();
                    for (let i = first; i < last; i += 1) {
                        ecg.drawSample(c, { index: i, values: [500] });
                    }
                    c.stroke();
                };
                draw(0, 1250);  // one whole sweep of 10 s
                draw(1250, 1375);  // the next second
                draw(1875, 1900);  // then 4 s spared: 11-15 s, at 1-5 s on the sweep
                const column = (s) => {
                    const x = Math.round(s * 25 * ecg.pxPerMm * ecg.dpr);
                    const pixels = c.getImageData(x, 0, 1, trace.height).data;
                    let alpha = 0;
                    for (let i = 3; i < pixels.length; i += 4) alpha += pixels[i];
                    return alpha > 0;
                };
                return [0.5, 2, 3, 4.5, 5.5, 7, 9].map(column);
            }"""
        )
    # 0.5 s: the second pass; 2-4.5 s: the gap, erased; 5.5, 7 and 9 s: the first pass
    # beyond the gap, still there.
    assert inked == [True, False, False, False, True, True, True]
