"""The median-beat panel of the reading page in real Chromium (web/readings-median.js):
the reader claims, drags the QRS offset about 20 ms later with the mouse, and sees QRS
duration change at once in the measurements; after a reload the correction is still
there; a marker moves with the arrow keys; a drag past the T end is refused by the
server, shown, and nothing changes. Every string of the panel is in both languages."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, Page

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


async def _measure(page: Page, key: str) -> float:
    text = await page.locator(f"#measurements dd[data-measure={key}]").text_content() or ""
    return float(text.split()[0])


async def _px_per_ms(page: Page) -> float:
    return float(
        await page.evaluate(
            """() => {
              const d = window.tcReadings.median.data;
              const plot = document.querySelector('#median .median-plot');
              const w = plot.getBoundingClientRect().width;
              return w / ((d.length - 1) * 1000 / d.fs_hz);
            }"""
        )
    )


async def _drag(page: Page, name: str, dx_px: float) -> None:
    """Drag a marker by ``dx_px`` with the mouse and wait for the server's answer."""
    puts = await page.evaluate("() => window.tcReadings.median.puts")
    line = page.locator(f"#median .median-marker[data-fiducial={name}] .median-line")
    await page.locator("#median").scroll_into_view_if_needed()
    box = await line.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(x + dx_px / 2, y, steps=3)
    await page.mouse.move(x + dx_px, y, steps=3)
    await page.mouse.up()
    await page.wait_for_function(
        f"() => window.tcReadings.median.puts > {puts} || !document.querySelector('#error').hidden"
    )


async def _claimed(browser: Browser, served: Served, stream: str) -> tuple[str, Page, list[str]]:
    """A stream's task opened and claimed by ``liu.reader`` (English), its median panel
    drawn: the task id, the page and its problems."""
    task = served.rw.stream_task(stream).task.id
    page, problems = await logged_in(browser, served, "liu.reader", "en", width=1280, height=1000)
    await page.goto(f"{served.url}/readings?lang=en#reading/{task}")
    await drawn(page)
    await page.locator("#r-actions button[data-event=claim]").click()
    await page.locator("#r-state", has_text="Claimed").wait_for()
    await page.locator("#median[data-lead=II] .median-marker[tabindex='0']").first.wait_for()
    return task, page, problems


async def test_the_reader_drags_the_qrs_offset_and_the_measurements_follow(
    browser: Browser, served: Served, tmp_path: Path
) -> None:
    """Claim; the panel shows lead II with five markers; drag QRS off ~20 ms later: QRS
    duration ~20 ms longer at once, the marker where it was dropped; reload: still
    corrected, QTc and QRS as corrected; the arrow key moves QRS on one sample and the
    server keeps it; QRS off dragged past the T end: refused, shown, nothing changed."""
    rw = served.rw
    task, page, problems = await _claimed(browser, served, "med")
    assert await page.locator("#median .median-plot").count() == 1
    markers = await page.locator("#median .median-marker").evaluate_all(
        "(ms) => ms.map((m) => m.dataset.fiducial)"
    )
    assert "qrs_off" in markers
    assert "qrs_on" in markers
    qrs = await _measure(page, "qrs_ms")
    qtc = await _measure(page, "qtc_ms")
    engine_off = await page.evaluate(
        "() => window.tcReadings.median.data.fiducials.engine_ms.qrs_off"
    )
    scale = await _px_per_ms(page)
    await _drag(page, "qrs_off", 20.0 * scale)
    await page.wait_for_function(
        f"() => document.querySelector('#measurements dd[data-measure=qrs_ms]').textContent"
        f".split(' ')[0] !== '{qrs:.0f}'"
    )
    moved = await _measure(page, "qrs_ms")
    assert abs(moved - (qrs + 20.0)) <= 4.0, (qrs, moved)
    state = await page.evaluate("() => window.tcReadings.median.data.fiducials")
    assert state["corrected"] == ["qrs_off"]
    assert abs(state["fiducials_ms"]["qrs_off"] - (engine_off + 20.0)) <= 4.0
    await page.locator("#median-note", has_text="Corrected by liu.reader").wait_for()
    await page.screenshot(path=shot(tmp_path, "reading-median.png"))

    # Reload: the correction is kept with the draft.
    await page.reload()
    await page.locator("body[data-ready=true]").wait_for()
    await drawn(page)
    await page.locator("#median-note", has_text="Corrected by liu.reader").wait_for()
    assert await _measure(page, "qrs_ms") == moved
    kept = await page.evaluate("() => window.tcReadings.median.data.fiducials.fiducials_ms")
    assert kept["qrs_off"] == state["fiducials_ms"]["qrs_off"]

    # QRS onset one sample (2 ms) earlier with the arrow key: QRS and QT longer, QTc too.
    puts = await page.evaluate("() => window.tcReadings.median.puts")
    await page.locator("#median .median-marker[data-fiducial=qrs_on]").focus()
    await page.keyboard.press("ArrowLeft")
    await page.wait_for_function(f"() => window.tcReadings.median.puts > {puts}")
    after = await page.evaluate("() => window.tcReadings.median.data.fiducials")
    assert sorted(after["corrected"]) == ["qrs_off", "qrs_on"]
    assert after["fiducials_ms"]["qrs_on"] == after["engine_ms"]["qrs_on"] - 2.0
    await page.wait_for_function(
        f"() => document.querySelector('#measurements dd[data-measure=qtc_ms]').textContent"
        f".split(' ')[0] !== '{qtc:.0f}'"
    )
    assert await _measure(page, "qtc_ms") > qtc

    # Past the T end: refused with its code, shown, the marker back where it was.
    before = await page.evaluate("() => window.tcReadings.median.data.fiducials")
    gap = before["fiducials_ms"]["t_off"] - before["fiducials_ms"]["qrs_off"]
    await _drag(page, "qrs_off", (gap + 30.0) * scale)
    await page.locator("#error", has_text="Not moved").wait_for()
    await page.wait_for_function("() => window.tcReadings.median.puts >= 0")
    now = await page.evaluate("() => window.tcReadings.median.data.fiducials")
    assert now["fiducials_ms"] == before["fiducials_ms"]
    refused = [p for p in real(problems) if "/fiducials" in p]
    assert refused == [f"400 {served.url}/api/v1/readings/{task}/fiducials"]
    assert [p for p in real(problems) if p not in refused] == []

    # All twelve, small: the same markers on every plot.
    await page.select_option("#median-lead", "all")
    await page.locator("#median[data-lead=all]").wait_for()
    assert await page.locator("#median .median-plot").count() == 12
    assert re.fullmatch(r"\d+", str(await page.locator("#median .median-marker").count()))
    actions = [a for a, _ in rw.actions(f"reading:{task}") if a == "reading.fiducials"]
    assert len(actions) == 3


async def test_a_wider_qrs_proposes_the_statement_it_proves(
    browser: Browser, served: Served
) -> None:
    """Claim; drag QRS off ~40 ms later: the proposed statements gain ``IVCD`` at once,
    its evidence (the corrected QRS duration) on hover; after a reload it is still
    proposed (the window's statements are made on the kept correction)."""
    _, page, problems = await _claimed(browser, served, "wide")
    assert await page.locator("#proposed li[data-code=IVCD]").count() == 0
    await _drag(page, "qrs_off", 40.0 * await _px_per_ms(page))
    chip = page.locator("#proposed li[data-code=IVCD]")
    await chip.wait_for()
    qrs = await _measure(page, "qrs_ms")
    assert qrs >= 110.0
    assert f"qrs_ms {qrs:.0f}" in (await chip.get_attribute("title") or "")
    await page.reload()
    await page.locator("body[data-ready=true]").wait_for()
    await drawn(page)
    await page.locator("#proposed li[data-code=IVCD]").wait_for()
    assert real(problems) == []


def test_every_string_of_the_panel_is_in_both_languages() -> None:
    """readings-median.js's English and Chinese tables have the same keys, and every
    key it uses literally is in them."""
    source = (WEB / "readings-median.js").read_text(encoding="utf-8")
    en = string_keys(source)
    names = set(
        re.search(r"const NAMES = \[([^\]]*)\]", source)
        .group(1)
        .replace('"', "")
        .replace(" ", "")
        .split(",")
    )  # type: ignore[union-attr]
    assert names <= en
