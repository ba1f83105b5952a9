"""The patient's live ECG in the consult room, from a simulated cart: a rhythm strip
beside the video (laptop) or over it (phone), 12 leads on demand, the heart rate; the
participants of another room see none. Real Chromium, the real server, SFU and ECG service.

Screenshots of each state are kept in the test's tmp dir (``*.png``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from fixtures.make_fixtures import synthetic12
from sessions.tokens import mint_token
from teleconsult.device_cmd import SimulatedRecord, simulate
from tests.e2e.conftest import SECRET, Consult
from tests.e2e.test_room_ui import CONTROLS, overlaps
from tests.web.browser import chromium, new_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WITH_ECG = f"{CONTROLS}, #ecg-panel"
INKED = """(id) => { const c = document.getElementById(id);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


@asynccontextmanager
async def cart_streaming(consult: Consult, room: str) -> AsyncIterator[None]:
    """The reference simulator streams a 12-lead record for ``room`` while the block runs."""
    record = SimulatedRecord.read(str(synthetic12()), duration_s=90.0)
    token = mint_token(SECRET, identity="cart-room", name="cart-room", role="device", room="ecg")
    device = asyncio.create_task(
        simulate(
            record,
            url=consult.server.url.replace("http", "ws") + "/device",
            token=token,
            device="cart-room",
            room=room,
            patient="P-042",
            speed=1.0,
        )
    )
    try:
        yield
    finally:
        device.cancel()
        await asyncio.gather(device, return_exceptions=True)


async def box(page: Page, selector: str) -> dict[str, float]:
    found = await page.locator(selector).bounding_box()
    assert found is not None, selector
    return found


async def beats_drawn(page: Page, more: int) -> None:
    """Wait until ``more`` beats more than now are drawn on the panel's paper."""
    now = await page.evaluate("() => window.tc.ecg.beatsDrawn || 0")
    await page.wait_for_function(f"() => window.tc.ecg.beatsDrawn >= {now + more}", timeout=20_000)


async def test_room_ecg_panel_draws_beats_beside_the_video(
    consult: Consult, browser: Browser, tmp_path: Path
) -> None:
    """With the patient's cart streaming for the room, the laptop shows a rhythm strip
    beside the video with beats and the heart rate, then 12 leads on demand; the phone
    shows it over the video covering no control; another room's participant sees none."""
    async with cart_streaming(consult, room="consult"):
        laptop = await new_page(browser, width=1366, height=768)
        phone = await new_page(browser, width=390, height=844)
        await laptop.goto(consult.join_url("dr-e"))
        await phone.goto(consult.join_url("dr-a"))

        # Laptop: the rhythm strip, by default, beside the video.
        await laptop.locator("#ecg-panel").wait_for(state="visible", timeout=20_000)
        await beats_drawn(laptop, 3)
        assert await laptop.get_attribute("#ecg-panel", "data-mode") == "rhythm"
        assert "P-042" in await laptop.locator("#ecg-patient").inner_text()
        hr = await laptop.evaluate("() => window.tc.ecg.hr")
        assert 30 < hr < 200
        assert await laptop.locator("#ecg-hr").inner_text() == str(round(hr))
        assert await laptop.evaluate(INKED, "ecg-trace") > 500
        stage, panel = await box(laptop, "#stage"), await box(laptop, "#ecg-panel")
        assert stage["x"] + stage["width"] <= panel["x"] + 1  # beside, not over
        assert stage["width"] > 0.55 * 1366  # the video keeps most of the screen
        strip = await box(laptop, "#ecg-paper")
        assert await overlaps(laptop, WITH_ECG) == []
        await laptop.screenshot(path=tmp_path / "ecg-laptop-rhythm.png")

        # 12 leads on demand: four rows of paper instead of one, still drawing.
        await laptop.get_by_role("button", name="12 leads").click()
        assert await laptop.get_attribute("#ecg-panel", "data-mode") == "12"
        assert await laptop.get_attribute("#ecg-mode", "aria-pressed") == "true"
        twelve = await box(laptop, "#ecg-paper")
        assert twelve["height"] > 3.5 * strip["height"]
        await beats_drawn(laptop, 2)
        await laptop.screenshot(path=tmp_path / "ecg-laptop-12.png")

        # Phone: over the top of the video, covering no control; hidden on request.
        await phone.locator("#ecg-panel").wait_for(state="visible", timeout=20_000)
        await beats_drawn(phone, 2)
        assert await overlaps(phone, WITH_ECG) == []
        await phone.screenshot(path=tmp_path / "ecg-phone.png")
        await phone.get_by_role("button", name="Hide the ECG").click()
        assert await phone.locator("#ecg-panel").is_hidden()
        assert await phone.get_attribute("#toggle-ecg", "aria-pressed") == "false"

        # Another room's participant: its list answered, no stream, no panel.
        token = consult.token("dr-x", moderator=True, room="elsewhere")
        other = await new_page(browser)
        await other.goto(f"{consult.server.url}/join?token={token}&autojoin=1&lang=en&w=320&h=180")
        await other.wait_for_function("() => (window.tc.ecg.lists || 0) >= 2", timeout=20_000)
        assert await other.locator("#toggle-ecg").is_hidden()
        assert await other.locator("#ecg-panel").is_hidden()
