"""The reading page's previous ECGs in real Chromium (web/readings-previous.js): the
patient's earlier, signed ECG is listed with its date, state, top statements and the
signed report's statements and conclusion (another patient's is not); chosen, it is
drawn beside the current one, one lead each on paper at the same scale and the median
beats, with both ECGs' measurements and their differences (the server's figures); the
page's gain carries over; on a phone (390x844) the two are stacked, at 10 px per mm.
Every string of the panel is in both languages."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page

from consults.readings import ReadingEvent
from ecg.statements import LIBRARY
from tests.api.test_readings_web import (
    WEB,
    Served,
    browser,
    database,
    drawn,
    logged_in,
    real,
    served,
    shot,
    string_keys,
)

__all__ = ["browser", "database", "served"]


def _history(served: Served) -> tuple[str, str]:
    """Patient ``patient-p``: an ECG two days ago (``crit``, PTB-XL HR06003), signed by
    ``liu.reader``, and today's (HR06000) to read; another patient's ECG of yesterday.
    Answers (earlier, current)."""
    rw = served.rw
    now = rw.world.clock.now

    def task(stream: str, patient: str, ago_s: float) -> str:
        made = rw.service.task_for_stream(
            stream, "village-1", patient, now - timedelta(seconds=ago_s), (), ("SR", "STE_ANT")
        )
        return made.task.id

    earlier = task("crit", "patient-p", 2 * 86400)
    task("other", "patient-q", 86400)
    current = task("now", "patient-p", 0)
    reader = rw.world["liu.reader"]
    rw.service.step(reader, earlier, ReadingEvent.CLAIM)
    rw.service.save_report(reader, earlier, ["STACH", "PVC"], "窦性心动过速，偶发室早")
    rw.service.sign(reader, earlier, served.fresh_totp("liu.reader"))
    rw.world.clock.advance(30)  # the login's code is not the signature's
    return earlier, current


async def _compared(page: Page, earlier: str) -> None:
    """Choose ``earlier`` and wait until both sides are on paper."""
    await page.locator(f"#previous button[data-compare='{earlier}']").click()
    await page.locator(f"#compare[data-previous='{earlier}']").wait_for()
    await page.wait_for_function(
        "() => { const p = window.tcReadings.previous.papers;"
        " return p.length === 2 && p.every((x) => x.counters.samplesDrawn > 1000); }"
    )


async def _box(page: Page, side: str) -> dict[str, float]:
    box = await page.locator(f"#compare figure[data-side={side}]").bounding_box()
    assert box is not None
    return box


async def test_the_reader_compares_with_the_patient_s_signed_ecg(
    browser: Browser, served: Served, tmp_path: Path
) -> None:
    """The list has the earlier ECG only (not the other patient's) with its date, state,
    statements and the signed report; compared: HR/PR/QRS/QT/QTc/axes of both as the
    server measures them, the change their difference; lead II of each at one scale,
    side by side; gain 20 mm/mV on the page redraws both at 20."""
    earlier, current = _history(served)
    client = await served.client("liu.reader")
    figures: dict[str, Any] = {}
    for task in (earlier, current):
        answer = await client.get(f"/api/v1/readings/{task}/ecg")
        assert answer.status_code == 200, answer.text
        figures[task] = answer.json()["measurements"]
    await client.aclose()
    served.rw.world.clock.advance(30)  # the page's login has a code of its own
    assert round(figures[earlier]["hr_bpm"]) != round(figures[current]["hr_bpm"])

    page, problems = await logged_in(browser, served, "liu.reader", "en", width=1280, height=1000)
    await page.goto(f"{served.url}/readings?lang=en#reading/{current}")
    await drawn(page)
    line = page.locator(f"#previous li[data-previous='{earlier}']")
    await line.wait_for()
    assert await page.locator("#previous h3").text_content() == "Previous ECGs"
    assert await page.locator("#previous li[data-previous]").count() == 1
    text = await line.text_content() or ""
    assert await line.locator(".state").text_content() == "Signed"
    assert LIBRARY["SR"].text_en in text  # the engine's top statement
    signed = f"Signed report v1: {LIBRARY['STACH'].text_en}；{LIBRARY['PVC'].text_en}"
    assert signed in text
    assert "Conclusion: 窦性心动过速，偶发室早" in text

    await _compared(page, earlier)
    rows = page.locator("#compare-measures tbody tr")
    assert await rows.count() == 8
    for key in ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "qrs_axis_deg"):
        row = page.locator(f"#compare-measures tr[data-measure={key}]")
        now, before = figures[current][key], figures[earlier][key]
        shown_now = await row.locator("td[data-side=current]").text_content() or ""
        shown_before = await row.locator("td[data-side=previous]").text_content() or ""
        assert shown_now.split()[0] == f"{now:.0f}", (key, shown_now, now)
        assert shown_before.split()[0] == f"{before:.0f}", (key, shown_before, before)
        change = await row.locator("td[data-side=change]").get_attribute("data-value")
        assert change == str(round(now) - round(before)), (key, change)
    hr_change = await page.locator(
        "#compare-measures tr[data-measure=hr_bpm] td[data-side=change]"
    ).text_content()
    assert re.fullmatch(r"[+−]\d+", hr_change or ""), hr_change

    views = await page.evaluate(
        "() => window.tcReadings.previous.papers.map((p) => ({side: p.side, view: p.view,"
        " rows: p.rows.map((r) => r.cells.map((c) => c[2]))}))"
    )
    assert [v["side"] for v in views] == ["current", "previous"]
    assert views[0]["view"] == views[1]["view"]
    assert views[0]["view"]["lead"] == "II"
    assert views[0]["view"]["gainMmPerMv"] == 10
    assert [v["rows"] for v in views] == [[[1]], [[1]]]  # lead II alone
    assert await page.locator("#compare svg.compare-median").count() == 2
    left, right = await _box(page, "current"), await _box(page, "previous")
    assert right["x"] >= left["x"] + left["width"]  # side by side
    assert abs(right["y"] - left["y"]) < 2
    await page.screenshot(path=shot(tmp_path, "readings-previous.png"), full_page=True)

    await page.select_option("#gain", "20")
    await page.wait_for_function(
        "() => window.tcReadings.previous.papers.length === 2 &&"
        " window.tcReadings.previous.papers.every((p) => p.view.gainMmPerMv === 20)"
    )
    await page.select_option("#compare-lead", "V2")
    await page.wait_for_function(
        "() => window.tcReadings.previous.papers.every((p) => p.view.lead === 'V2')"
    )
    await page.click("#compare-close")
    await page.locator("#compare").wait_for(state="hidden")
    assert real(problems) == []


async def test_on_a_phone_the_two_ecgs_are_stacked(
    browser: Browser, served: Served, tmp_path: Path
) -> None:
    """At 390x844 in Chinese: the panel is 既往心电图; compared, the earlier ECG is under
    the current one, both at 10 px per mm or more, the paper scrolling sideways."""
    earlier, current = _history(served)
    page, problems = await logged_in(browser, served, "liu.reader", "zh", width=390, height=844)
    await page.goto(f"{served.url}/readings?lang=zh#reading/{current}")
    await drawn(page)
    await page.locator(f"#previous li[data-previous='{earlier}']").wait_for()
    assert await page.locator("#previous h3").text_content() == "既往心电图"
    await page.locator(f"#previous button[data-compare='{earlier}']", has_text="对比").wait_for()
    await _compared(page, earlier)
    top, under = await _box(page, "current"), await _box(page, "previous")
    assert under["y"] >= top["y"] + top["height"]  # stacked
    assert abs(under["x"] - top["x"]) < 2
    assert top["width"] <= 390
    scales = await page.evaluate("() => window.tcReadings.previous.papers.map((p) => p.pxPerMm)")
    assert scales[0] == scales[1] >= 10
    boxes = await page.evaluate(
        "() => [...document.querySelectorAll('#compare .paper-box')]"
        ".map((b) => [b.clientWidth, b.scrollWidth])"
    )
    assert all(scroll > width for width, scroll in boxes)
    await page.locator("#compare .compare-columns").scroll_into_view_if_needed()
    await page.screenshot(path=shot(tmp_path, "readings-previous-phone.png"))
    assert real(problems) == []


def test_every_string_of_the_panel_is_in_both_languages() -> None:
    """readings-previous.js's English and Chinese tables have the same keys, and every
    key it uses literally is in them."""
    assert "title" in string_keys((WEB / "readings-previous.js").read_text(encoding="utf-8"))
