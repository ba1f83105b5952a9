"""Calipers on the reading page's paper in real Chromium (web/readings-paper.js): a
mouse drag over 5 mm at 25 mm/s reads 200 ms and 300 bpm, at 50 mm/s 100 ms; with Shift
a drag over 10 mm at 10 mm/mV reads 1.00 mV (in Chinese units too); Escape clears."""

from __future__ import annotations

from playwright.async_api import Browser, Page

from tests.api.test_readings_web import Served, browser, database, drawn, logged_in, real, served

__all__ = ["browser", "database", "served"]


async def _drag(page: Page, dx_mm: float, dy_mm: float, *, shift: bool = False) -> str:
    """Drag on the paper from a point inside it by (dx, dy) mm of paper; the label."""
    mm = await page.evaluate("() => window.tcReadings.paper.pxPerMm")
    await page.locator("#paper-box").scroll_into_view_if_needed()
    box = await page.locator("#paper").bounding_box()
    assert box is not None
    x, y = box["x"] + 60 * mm, box["y"] + 25 * mm
    if shift:
        await page.keyboard.down("Shift")
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(x + dx_mm * mm / 2, y + dy_mm * mm / 2, steps=2)
    await page.mouse.move(x + dx_mm * mm, y + dy_mm * mm, steps=2)
    await page.mouse.up()
    if shift:
        await page.keyboard.up("Shift")
    label = page.locator("#paper .caliper:not([hidden]) .caliper-label")
    await label.wait_for()
    return await label.text_content() or ""


async def test_time_and_amplitude_calipers_read_the_papers_scale(
    browser: Browser, served: Served
) -> None:
    """Time: 5 mm at 25 mm/s is 200 ms (300 bpm), at 50 mm/s 100 ms (600 bpm);
    amplitude (Shift): 10 mm at 10 mm/mV is 1.00 mV, at 20 mm/mV 0.50 mV; Escape and a
    change of speed clear the caliper."""
    task = served.rw.stream_task("cal").task.id
    page, problems = await logged_in(browser, served, "liu.reader", "en", width=1280, height=900)
    await page.goto(f"{served.url}/readings?lang=en#reading/{task}")
    await drawn(page)
    assert await _drag(page, 5.0, 0.0) == "200 ms · 300 bpm"
    caliper = await page.evaluate("() => window.tcReadings.paper.caliper")
    assert caliper["kind"] == "time"
    assert abs(caliper["ms"] - 200.0) < 1.0
    await page.keyboard.press("Escape")
    await page.locator("#paper .caliper[hidden]").wait_for(state="attached")
    assert await page.evaluate("() => window.tcReadings.paper.caliper") is None

    assert await _drag(page, 0.0, 10.0, shift=True) == "1.00 mV"
    await page.select_option("#gain", "20")
    await page.locator("#paper .caliper[hidden]").wait_for(state="attached")  # redrawn
    assert await _drag(page, 0.0, -10.0, shift=True) == "0.50 mV"
    await page.select_option("#speed", "50")
    assert await _drag(page, 5.0, 0.0) == "100 ms · 600 bpm"
    assert real(problems) == []

    zh, zh_problems = await logged_in(browser, served, "ma.reader", "zh", width=1280, height=900)
    await zh.goto(f"{served.url}/readings?lang=zh#reading/{task}")
    await drawn(zh)
    assert await _drag(zh, 5.0, 0.0) == "200 毫秒 · 300 次/分"
    assert await _drag(zh, 0.0, 5.0, shift=True) == "0.50 毫伏"
    assert real(zh_problems) == []
