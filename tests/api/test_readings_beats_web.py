"""Beat labels on the reading page in real Chromium (web/readings-beats.js): before the
claim the marks only show their labels; the claimant clicks a beat's mark, chooses V
from the menu, the mark says V and the counts show "PVC 1" at once, the server keeps
the label (and no caliper was drawn); paced and then back to N; after a reload the
labels are still there. Every string of the module is in both languages."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Page

from consults.readings import BeatLabel
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


async def _label(page: Page, beat: int, label: str) -> None:
    """Click beat ``beat``'s mark, choose ``label`` and wait for the server's answer."""
    saves = await page.evaluate("() => window.tcReadings.beats.saves")
    await page.locator(f"#paper .beat-mark[data-beat='{beat}']").click()
    await page.locator(f"#beat-menu[data-beat='{beat}']").wait_for()
    await page.locator(f"#beat-menu button[data-label={label}]").click()
    await page.wait_for_function(f"() => window.tcReadings.beats.saves > {saves}")
    await page.locator(f"#paper .beat-mark[data-beat='{beat}'][data-label={label}]").wait_for()


async def test_the_reader_labels_a_beat_on_the_rhythm_strip(
    browser: Browser, served: Served, tmp_path: Path
) -> None:
    """Unclaimed: marks without buttons; claimed: beat 2 labelled V (mark V, "PVC 1",
    kept by the server, no caliper), beat 4 paced, beat 2 back to N; reload: kept."""
    rw = served.rw
    task = rw.stream_task("beats").task.id
    page, problems = await logged_in(browser, served, "liu.reader", "en", width=1280, height=1000)
    await page.goto(f"{served.url}/readings?lang=en#reading/{task}")
    await drawn(page)
    beats = await page.evaluate("() => window.tcReadings.ecg.beats.length")
    await page.locator("#paper span.beat-mark").nth(beats - 1).wait_for()
    assert await page.locator("#paper button.beat-mark").count() == 0
    assert await page.locator("#beat-counts").text_content() == f"Beats {beats}N {beats}"

    await page.locator("#r-actions button[data-event=claim]").click()
    await page.locator("#r-state", has_text="Claimed").wait_for()
    await page.locator("#paper button.beat-mark").nth(beats - 1).wait_for()
    await _label(page, 2, "V")
    await page.locator("#beat-counts .beat-count[data-label=V]", has_text="PVC 1").wait_for()
    await page.locator(
        "#beat-counts .beat-count[data-label=N]", has_text=f"N {beats - 1}"
    ).wait_for()
    assert await page.evaluate("() => window.tcReadings.paper.caliper") is None
    kept = rw.service.beat_labels(rw.world["liu.reader"], task)
    assert kept is not None
    assert dict(kept.labels) == {2: BeatLabel.VENTRICULAR}
    await _label(page, 4, "P")
    await page.locator("#paper .beat-mark[data-beat='6']").click()
    await page.locator("#beat-menu[data-beat='6']").wait_for()
    await page.screenshot(path=shot(tmp_path, "readings-beats.png"))
    await page.keyboard.press("Escape")
    await page.locator("#beat-menu").wait_for(state="hidden")
    await _label(page, 2, "N")
    await page.locator("#beat-counts .beat-count[data-label=V]").wait_for(state="detached")
    await page.locator("#beat-counts .beat-count[data-label=P]", has_text="Paced 1").wait_for()

    await page.reload()
    await page.locator("body[data-ready=true]").wait_for()
    await drawn(page)
    await page.locator("#paper button.beat-mark[data-beat='4'][data-label=P]").wait_for()
    labels = await page.evaluate("() => window.tcReadings.ecg.beat_labels")
    assert labels == ["P" if i == 4 else "N" for i in range(beats)]
    assert real(problems) == []


def test_every_string_of_the_beat_labels_is_in_both_languages() -> None:
    """readings-beats.js's English and Chinese tables have the same keys, every key it
    uses literally is in them, and every label has its long and short name."""
    source = (WEB / "readings-beats.js").read_text(encoding="utf-8")
    keys = string_keys(source)
    for label in BeatLabel:
        assert {f"label.{label.value}", f"short.{label.value}"} <= keys
