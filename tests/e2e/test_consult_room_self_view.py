"""The self view moves out of the way: dragged to any corner (it snaps to the nearest)
or sent round the corners by its move button, on a laptop and a phone, without ever
covering a control or the other person's name; real Chromium, the real server and SFU.

Screenshots of each corner are kept in the test's tmp dir (``*.png``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from tests.e2e.conftest import Consult
from tests.e2e.pages import assert_sees_and_hears
from tests.e2e.test_room_ui import CONTROLS, overlaps
from tests.web.browser import chromium, new_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The controls, and the remote person's name, which the self view must not cover either.
WATCHED = CONTROLS + ", .tile.remote .name"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


async def quadrant(page: Page) -> str:
    """The corner of the stage the self view's centre is in (``tr``, ``bl``...)."""
    self_box = await page.locator("#self-tile").bounding_box()
    stage = await page.locator("#stage").bounding_box()
    assert self_box is not None
    assert stage is not None
    top = self_box["y"] + self_box["height"] / 2 < stage["y"] + stage["height"] / 2
    left = self_box["x"] + self_box["width"] / 2 < stage["x"] + stage["width"] / 2
    return ("t" if top else "b") + ("l" if left else "r")


async def test_self_view_goes_to_every_corner_by_button_and_by_drag(
    consult: Consult, browser: Browser, tmp_path: Path
) -> None:
    """The move button cycles the four corners and the picture is in each, covering
    nothing; a drag towards the lower left lands it there (laptop and phone; the
    button's label in English and Chinese)."""
    laptop = await new_page(browser, width=1366, height=768)
    phone = await new_page(browser, width=390, height=844)
    await laptop.goto(consult.join_url("dr-zhang"))
    await phone.goto(consult.join_url("dr-li").replace("lang=en", "lang=zh"))
    await assert_sees_and_hears(phone, "dr-zhang")
    await assert_sees_and_hears(laptop, "dr-li")
    assert await laptop.get_attribute("#self-move", "aria-label") == (
        "Move your picture to another corner"
    )
    assert await phone.get_attribute("#self-move", "aria-label") == "把自己的画面移到另一个角"
    for name, page in (("laptop", laptop), ("phone", phone)):
        assert await quadrant(page) == "tr"
        for corner in ("tl", "bl", "br", "tr"):
            await page.click("#self-move")
            assert await page.get_attribute("#self-tile", "data-corner") == corner
            assert await quadrant(page) == corner
            assert await overlaps(page, WATCHED) == [], (name, corner)
            await page.screenshot(path=tmp_path / f"{name}-self-{corner}.png")

        # A drag from the picture's centre towards the stage's lower left.
        box = await page.locator("#self-tile").bounding_box()
        stage = await page.locator("#stage").bounding_box()
        assert box is not None
        assert stage is not None
        start = (box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.6)
        await page.mouse.move(*start)
        await page.mouse.down()
        await page.mouse.move(stage["x"] + 80, stage["y"] + stage["height"] - 200, steps=8)
        await page.mouse.up()
        assert await page.get_attribute("#self-tile", "data-corner") == "bl"
        assert await quadrant(page) == "bl"
        assert await page.locator("#self-tile").evaluate("(n) => n.style.transform") == ""
        assert await overlaps(page, WATCHED) == [], (name, "dragged")
        await page.screenshot(path=tmp_path / f"{name}-self-dragged.png")
