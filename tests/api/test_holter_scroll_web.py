"""Paging through a long record on the reading page in real Chromium (web/readings.js):
an hour of MIT-BIH record 100 (2 leads at 360 Hz, looped), Later pressed 30 times as
fast as the keyboard goes, draws the window at 300 s and no other after it (the answers
of the earlier presses, and the windows asked for ahead, are not drawn over it); the
paper holds that window's samples as the server sends them, with the engine's findings
of the record; Earlier pages back; the grid is drawn once for the whole scroll."""

from __future__ import annotations

import numpy as np
import pytest
from playwright.async_api import Browser

from ecg.record import Record, read_record
from tests.api.test_readings_web import Served, browser, database, drawn, logged_in, real, served
from tests.conftest import ecg_data_dir

__all__ = ["browser", "database", "served"]

MITDB_100 = ecg_data_dir() / "mitdb" / "100"


def an_hour_of_100() -> Record:
    """MIT-BIH record 100 (30 min 6 s) twice over, cut to 1 h: 2 leads at 360 Hz."""
    once = read_record(MITDB_100)
    return Record(
        name="100x2",
        fs_hz=once.fs_hz,
        signal_mv=np.tile(once.signal_mv, (2, 1))[: round(3600 * once.fs_hz)],
        lead_names=once.lead_names,
    )


async def test_paging_an_hour_draws_the_window_scrolled_to(
    browser: Browser, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 presses of Later from the first window: the page ends on 300-310 s of 3600 s,
    drawn from the server's window at 300 s (its samples, every one of both leads), no
    earlier window drawn after it, the first window's findings kept; 2 presses of
    Earlier: 280-290 s; the grid painted once."""
    if not MITDB_100.with_suffix(".hea").exists():
        pytest.skip(f"MIT-BIH record 100 not found at {MITDB_100}")
    long = an_hour_of_100()
    task = served.rw.stream_task("holter").task.id
    others = served.signals.signal_of
    monkeypatch.setattr(
        served.signals,
        "signal_of",
        lambda record: long if record.stream == "holter" else others(record),
    )
    page, problems = await logged_in(browser, served, "liu.reader", "en", width=1366, height=768)
    await page.goto(f"{served.url}/readings?lang=en#reading/{task}")
    await drawn(page)
    await page.locator("#window-info", has_text="0.0–10.0 s of 3600.0 s").wait_for()
    first = await page.evaluate("() => window.tcReadings.ecg")
    # Every drawing of the paper from here on: the window drawn and whether the grid was.
    await page.evaluate(
        """() => {
      const paper = window.tcReadings.paper;
      window.drawings = [];
      const draw = paper.draw, grid = paper.drawGrid;
      paper.drawGrid = function (...args) { window.drawings.push("grid"); grid.apply(this, args); };
      paper.draw = function () { draw.call(this); window.drawings.push(this.ecg.start_s); };
    }"""
    )
    await page.locator("#later").focus()
    for _ in range(30):
        await page.keyboard.press("Enter")
    await page.locator("#window-info", has_text="300.0–310.0 s of 3600.0 s").wait_for()
    await page.wait_for_load_state("networkidle")  # every answer in, drawn or kept
    drawings = await page.evaluate("() => window.drawings")
    assert drawings[-1] == 300.0
    assert "grid" not in drawings  # the same paper: only the trace drawn again
    windows = [d for d in drawings if d != "grid"]
    assert windows == sorted(windows)  # none drawn over a later one
    shown = await page.evaluate("() => window.tcReadings.ecg")
    assert await page.evaluate("() => window.tcReadings.paper.ecg === window.tcReadings.ecg")
    assert (shown["start_s"], shown["first_index"]) == (300.0, 300 * 360)
    asked = await page.request.get(
        f"{served.url}/api/v1/readings/{task}/ecg", params={"start_s": 300, "duration_s": 10}
    )
    assert shown["samples_uv"] == (await asked.json())["samples_uv"]
    assert await page.evaluate("() => window.tcReadings.counters.samplesDrawn") == 2 * 3600
    for key in ("beats", "measurements", "statements", "beat_labels"):
        assert shown[key] == first[key]
    await page.locator("#earlier").focus()
    for _ in range(2):
        await page.keyboard.press("Enter")
    await page.locator("#window-info", has_text="280.0–290.0 s of 3600.0 s").wait_for()
    assert await page.evaluate("() => window.tcReadings.ecg.first_index") == 280 * 360
    assert real(problems) == []
