"""The ECG centre's pages (web/readings.html) in real Chromium over the reading API and
the real SQLite store, with the test's clock: the reader sees the critical ECG first,
claims it, reads it on paper (layouts, gain, speed), edits the statements from the
library (searched in Chinese and English), marks a critical finding, signs with the
one-time code, and the next waiting ECG opens; the clinic's doctor acknowledges a
critical value by read-back in the register; on a phone in portrait the rhythm strip
and one lead are drawn at 10 px per mm or more. No script error, no refused request of
the pages, every string in both languages. Also the reading page's ECG endpoint over
HTTP (window, band, refusals) and the statement library."""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, WebSocket, expect

from api.app import create_app, openapi_gaps
from api.auth import account_api
from api.edge import Edge, EdgeConfig
from api.readings import WholeRecordSignals, reading_api
from consults.reading_repositories import ReadingRecord
from ecg.critical import CRITICAL_TEXT
from ecg.record import Record, read_record
from teleconsult.device_cmd import simulate
from tests.api.test_consults import error_of
from tests.api.test_readings import Api
from tests.conftest import ecg_data_dir
from tests.consults.test_reading_service_world import make_reading_world
from tests.consults.test_service_world import PASSWORD
from tests.pg import Database, make_database
from tests.teleconsult.test_platform_server import PASSWORD as PLATFORM_PASSWORD
from tests.teleconsult.test_platform_server import Running, build_directory, record, running
from tests.web.browser import chromium, new_page

__all__ = ["running"]

pytestmark = pytest.mark.browser
WEB = Path(__file__).resolve().parents[2] / "web"
PTBXL = ecg_data_dir() / "ptbxl-sample"
# The real-time stream read while it arrives: from its start the task is made, the reader
# opens it and the first live chunk is drawn (3.9 s on the shared machine at a load of 5,
# most of it the live workers' start); the rest is margin, and every second is waited out.
STILL_ARRIVING_S = 20.0
# Where the test leaves its screenshots for docs/screenshots (unset: the test's tmp dir).
SCREENSHOTS = os.environ.get("TELECONSULT_SCREENSHOT_DIR")


class StreamRecords(WholeRecordSignals):
    """Each task's ECG: a PTB-XL 12-lead record read in place, by the task's stream id
    (``HR06003`` for ``crit``, ``HR06000`` otherwise); the server's source is the
    stream store. ``arriving`` streams have no record yet."""

    arriving: set[str]

    def __init__(self) -> None:
        self.arriving = set()

    def signal_of(self, record: ReadingRecord) -> Record | None:
        if record.stream in self.arriving:
            return None
        name = "HR06003" if record.stream == "crit" else "HR06000"
        return read_record(PTBXL / name)


@dataclass
class Served(Api):
    """The running app, its world (``client``, ``fresh_totp``) and its signals."""

    signals: StreamRecords


@pytest.fixture
def database(tmp_path: Path) -> Database:
    """SQLite only: the store on PostgreSQL is test_readings.py's."""
    return make_database("sqlite", tmp_path)


@pytest.fixture
async def served(database: Database) -> AsyncIterator[Served]:
    """The account and reading APIs and the pages on a free loopback port, the reading
    service taking the whole statement library (as the server wires it)."""
    if not (PTBXL / "HR06000.hea").exists():
        pytest.skip(f"PTB-XL sample not found at {PTBXL}")
    rw = make_reading_world(database, whole_library=True)
    world, service = rw.world, rw.service
    signals = StreamRecords()
    accounts_wiring = account_api(world.accounts, world.directory)
    readings_wiring = reading_api(service, signals)
    app = create_app(
        route_handlers=[*accounts_wiring.route_handlers, *readings_wiring.route_handlers],
        dependencies={**accounts_wiring.dependencies, **readings_wiring.dependencies},
        middleware=[*accounts_wiring.middleware, *readings_wiring.middleware],
        web_dir=WEB,
    )
    edge = Edge(app, EdgeConfig(port=0), ws_max_size_bytes=1 << 20)
    await edge.start()
    try:
        yield Served(edge.url, rw, signals)
    finally:
        await edge.close()
        world.stores.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


@dataclass
class Opened:
    """A person's page, the script errors and refused requests it met, and whether its
    live-notice connection is watching (the server said ``watching``)."""

    page: Page
    problems: list[str]
    watching: asyncio.Event


async def open_as(
    browser: Browser, url: str, login: dict[str, Any], path: str, *, width: int, height: int
) -> Opened:
    """A page of its own context, logged in through the API (``login``: the body), at
    ``path`` once the page says it is ready."""
    page = await new_page(browser, width=width, height=height)
    opened = Opened(page, [], asyncio.Event())

    def frames(ws: WebSocket) -> None:
        ws.on(
            "framereceived",
            lambda data: opened.watching.set() if '"watching"' in str(data) else None,
        )

    page.on("console", lambda m: opened.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: opened.problems.append(f"page error: {e}"))
    page.on(
        "response",
        lambda r: opened.problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    page.on("websocket", frames)
    answer = await page.context.request.post(f"{url}/api/v1/auth/login", data=login)
    assert answer.ok, await answer.text()
    await page.goto(f"{url}{path}")
    await page.locator("body[data-ready=true]").wait_for()
    return opened


async def logged_in(
    browser: Browser, served: Served, username: str, lang: str, *, width: int, height: int
) -> tuple[Page, list[str]]:
    """A person of the world on the reading pages in ``lang`` (with the second factor
    where enrolled)."""
    body: dict[str, Any] = {"username": username, "password": PASSWORD}
    if username in served.rw.world.totp_secrets:
        body["totp"] = served.rw.world.totp(username)
    opened = await open_as(
        browser, served.url, body, f"/readings?lang={lang}", width=width, height=height
    )
    return opened.page, opened.problems


def real(problems: list[str]) -> list[str]:
    """The page's own problems: not the browser's load-failure echo, nor the live-notice
    token this composition (no room tokens, no /ws) cannot mint: live notices are
    tested on the whole server."""
    return [
        p
        for p in problems
        if not p.startswith("Failed to load resource") and not p.endswith("/rooms/inbox/token")
    ]


def shot(tmp_path: Path, name: str) -> str:
    return str(Path(SCREENSHOTS) / name if SCREENSHOTS else tmp_path / name)


async def drawn(page: Page) -> None:
    """Wait until the paper holds the current ECG's samples."""
    await page.wait_for_function(
        "() => window.tcReadings.ecg && window.tcReadings.counters.samplesDrawn > 1000"
    )


async def test_the_reader_signs_the_critical_ecg_and_the_next_opens(
    browser: Browser, served: Served, tmp_path: Path
) -> None:
    """Critical first, then STAT, then the longest waiting; claim from the worklist (a
    second reader's claim is refused naming the claimant); the
    paper in 6x2 at 20 mm/mV and 50 mm/s; statements from the engine, a Chinese and an
    English search and a removal; a critical finding marked; signed with the one-time
    code and the STAT ECG opens; the clinic's doctor acknowledges both critical values
    with read-back (register in Chinese) and downloads the signed PDF; the reader
    amends the report (version 2)."""
    rw = served.rw
    plain = rw.stream_task("plain", ago_s=3600).task.id
    stat = rw.stream_task("stat", stat=True, ago_s=60).task.id
    critical = rw.stream_task("crit", critical=("PAUSE",)).task.id

    reader, reader_problems = await logged_in(
        browser, served, "liu.reader", "en", width=1280, height=900
    )
    assert await reader.text_content("h1") == "ECG centre"
    await reader.locator("#rows tr").nth(2).wait_for()
    order = await reader.locator("#rows tr").evaluate_all("(rows) => rows.map((r) => r.dataset.id)")
    assert order == [critical, stat, plain]
    first = reader.locator("#rows tr").first
    await first.locator(".badge-critical", has_text="Pause of 3 s or more").wait_for()
    await first.locator("td", has_text="Sinus rhythm").first.wait_for()
    second, second_problems = await logged_in(
        browser, served, "ma.reader", "zh", width=1280, height=900
    )
    await first.locator("button[data-event=claim]").click()
    await reader.wait_for_url(re.compile(rf".*#reading/{critical}$"))
    await reader.locator("#r-state", has_text="Claimed").wait_for()
    # The second reader's list was loaded before the claim: claiming it now is refused
    # naming the claimant, and the list shows who holds it.
    await second.locator(f"#rows tr[data-id='{critical}'] button[data-event=claim]").click()
    await second.locator("#error", has_text="liu.reader").wait_for()
    held = second.locator(f"#rows tr[data-id='{critical}']")
    await held.locator(".state", has_text="已领取 · liu.reader").wait_for()
    assert await held.locator("button[data-event=claim]").count() == 0
    assert real(second_problems) == [f"403 {served.url}/api/v1/readings/{critical}/claim"]
    await drawn(reader)
    hr = reader.locator("#measurements dd[data-measure=hr_bpm]")
    await hr.filter(has_text="bpm").wait_for()
    assert (await hr.text_content() or "").split()[0].isdigit()
    await reader.locator("#proposed li[data-code=STACH]").wait_for()
    view = await reader.evaluate("() => window.tcReadings.paper.view")
    assert view["layout"] == "3x4"
    assert await reader.evaluate("() => window.tcReadings.paper.rows.length") == 4
    await reader.select_option("#layout", "6x2")
    await reader.select_option("#gain", "20")
    await reader.select_option("#speed", "50")
    await reader.locator("#paper[data-layout='6x2']").wait_for()
    view = await reader.evaluate("() => window.tcReadings.paper.view")
    assert (view["gainMmPerMv"], view["speedMmPerS"]) == (20, 50)
    assert await reader.evaluate("() => window.tcReadings.paper.rows.length") == 6
    await reader.select_option("#layout", "12x1")
    await reader.locator("#paper[data-layout='12x1']").wait_for()
    assert await reader.evaluate("() => window.tcReadings.paper.rows.length") == 12
    await reader.select_option("#layout", "3x4")
    await reader.select_option("#gain", "10")
    await reader.select_option("#speed", "25")
    await reader.select_option("#band", "monitoring")
    await reader.wait_for_function("() => window.tcReadings.ecg.band === 'monitoring'")
    await reader.select_option("#band", "diagnostic")
    await reader.wait_for_function("() => window.tcReadings.ecg.band === 'diagnostic'")

    await reader.click("#use-proposed")
    await reader.locator("#chosen li[data-code=STACH]").wait_for()
    proposed: list[str] = await reader.evaluate(
        "() => window.tcReadings.ecg.statements.map((s) => s.code)"
    )
    assert "PVC" not in proposed
    await reader.fill("#st-search", "室性早搏")
    await reader.locator("#st-results button[data-code=PVC]").click()
    await reader.locator("#chosen li[data-code=PVC]").wait_for()
    await reader.fill("#st-search", "st elevation, anterior")
    await reader.locator("#st-results button[data-code=STE_ANT]").click()
    await reader.locator("#chosen li[data-code=STE_ANT]").wait_for()
    await reader.click("#chosen li[data-code=STE_ANT] button")
    await reader.locator("#chosen li[data-code=STE_ANT]").wait_for(state="detached")
    await reader.fill("#r-text", "窦性心动过速，偶发室早；长间歇请结合临床")
    await reader.click("#save")
    await reader.locator("#notice", has_text="Draft saved").wait_for()
    await reader.select_option("#mark-code", "VT")
    await reader.click("#mark-form button[type=submit]")
    await reader.locator("#r-crit-list li", has_text="Sustained ventricular tachycardia").wait_for()
    await reader.screenshot(path=shot(tmp_path, "readings-desktop.png"), full_page=True)

    await reader.fill("#sign-totp", served.fresh_totp("liu.reader"))
    await reader.click("#sign-form button[type=submit]")
    await reader.wait_for_url(re.compile(rf".*#reading/{stat}$"))
    await reader.locator("#notice", has_text="next waiting ECG is open").wait_for()
    await reader.locator("#r-state", has_text="Waiting").wait_for()
    await reader.locator("#r-actions button[data-event=claim]").wait_for()

    await reader.click("#tabs button[data-tab=list]")
    await reader.select_option("#f-state", "signed")
    await reader.fill("#f-reader", "liu.reader")
    await reader.click("#filter button[type=submit]")
    await expect(reader.locator("#rows tr")).to_have_count(1)
    assert await reader.get_attribute("#rows tr", "data-id") == critical
    await reader.goto(f"{served.url}/?lang=en")
    await reader.locator("#link-readings a[href='/readings']").wait_for()

    signed = rw.service.versions(rw.world["liu.reader"], critical)
    assert [v.document["report"] for v in signed] == [
        {"statements": [*proposed, "PVC"], "text": "窦性心动过速，偶发室早；长间歇请结合临床"}
    ]

    doctor, doctor_problems = await logged_in(
        browser, served, "li.doctor", "zh", width=1280, height=900
    )
    await doctor.click("#tabs button[data-tab=criticals]")
    assert await doctor.text_content("h1") == "心电诊断中心"
    rows = doctor.locator("#register-rows tr")
    await rows.nth(1).wait_for()
    for text in ("心脏停搏/长间歇", "持续性室性心动过速"):
        row = rows.filter(has_text=text)
        await row.locator("input").fill(f"{text}，李医生已知悉")
        await row.locator("button[type=submit]").click()
        await row.locator(".cstate-acknowledged", has_text="已确认").wait_for()
        await row.filter(has_text="li.doctor").wait_for()
    values = rw.service.criticals(rw.world["li.doctor"], _page()).items
    assert {v.value.code: v.value.read_back for v in values} == {
        "PAUSE": "心脏停搏/长间歇，李医生已知悉",
        "VT": "持续性室性心动过速，李医生已知悉",
    }
    assert {v.value.acknowledged_by for v in values} == {"li.doctor"}
    await doctor.screenshot(path=shot(tmp_path, "readings-register.png"), full_page=True)

    await doctor.goto(f"{served.url}/readings?lang=zh#reading/{critical}")
    await doctor.locator("#versions .version", has_text="窦性心动过速").wait_for()
    assert await doctor.locator("#editor").is_hidden()
    href = await doctor.get_attribute("#pdf-link", "href")
    assert href is not None
    pdf = await doctor.context.request.get(f"{served.url}{href}")
    assert pdf.ok
    assert (await pdf.body()).startswith(b"%PDF")

    # An amendment starts from the signed report and is version 2.
    await reader.goto(f"{served.url}/readings?lang=en#reading/{critical}")
    await reader.click("#r-actions button[data-event=amend]")
    await reader.locator("#r-state", has_text="Being amended").wait_for()
    await reader.locator("#chosen li[data-code=PVC]").wait_for()
    await reader.click("#chosen li[data-code=PVC] button")
    await reader.fill("#sign-totp", served.fresh_totp("liu.reader"))
    await reader.click("#sign-form button[type=submit]")
    await reader.wait_for_url(re.compile(rf".*#reading/{stat}$"))
    versions = rw.service.versions(rw.world["liu.reader"], critical)
    reports: list[Any] = [v.document["report"] for v in versions]
    assert [r["statements"] for r in reports] == [[*proposed, "PVC"], proposed]
    for problems in (reader_problems, doctor_problems):
        assert real(problems) == []


def _page() -> Any:
    from consults.repositories import PageRequest

    return PageRequest(limit=100, offset=0)


async def test_the_phone_in_portrait_shows_the_rhythm_strip_and_one_lead(
    browser: Browser, served: Served, tmp_path: Path
) -> None:
    """At 390x844 the worklist is usable (cards with their buttons), the reading page
    draws one lead chosen by the reader above the lead II rhythm strip, at 10 px per mm
    or more, and the paper scrolls sideways; turned to landscape it draws the 3x4
    layout; a stream still arriving says so (no live viewing in this composition)."""
    rw = served.rw
    task = rw.stream_task("crit", critical=("PAUSE",)).task.id
    arriving = rw.stream_task("live", ago_s=10).task.id
    served.signals.arriving.add("live")
    page, problems = await logged_in(browser, served, "liu.reader", "zh", width=390, height=844)
    first = page.locator("#rows tr").first
    await first.locator("button[data-event=claim]", has_text="领取").click()
    await page.wait_for_url(re.compile(rf".*#reading/{task}$"))
    await drawn(page)
    await page.locator("#paper[data-layout=one]").wait_for()
    assert await page.locator("#layout-label").is_hidden()
    await page.select_option("#lead", "V5")
    await page.wait_for_function("() => window.tcReadings.paper.view.lead === 'V5'")
    rows = await page.evaluate(
        "() => window.tcReadings.paper.rows.map((r) => r.cells.map((c) => c[2]))"
    )
    assert rows == [[10], [1]]  # V5, then II
    scale = await page.evaluate("() => window.tcReadings.paper.pxPerMm")
    assert scale >= 10
    box = await page.evaluate(
        "() => { const b = document.getElementById('paper-box');"
        " return [b.clientWidth, b.scrollWidth]; }"
    )
    assert box[1] > box[0] <= 390
    await page.evaluate("() => document.getElementById('controls').scrollIntoView()")
    await page.screenshot(path=shot(tmp_path, "readings-phone.png"), full_page=False)

    await page.set_viewport_size({"width": 844, "height": 390})  # landscape: the layout
    await page.locator("#paper[data-layout='3x4']").wait_for()
    assert await page.locator("#layout-label").is_visible()

    await page.goto(f"{served.url}/readings?lang=zh#reading/{arriving}")
    await page.locator("#no-signal", has_text="心电图仍在传输中").wait_for()
    # The page's refused requests: its question for the arriving ECG's record, and the
    # live viewer's token this composition (no rooms) cannot mint.
    refused = [p for p in real(problems) if f"/readings/{arriving}/ecg?" not in p]
    assert [p for p in refused if not p.endswith("/rooms/ecg-worklist/token")] == []


async def test_the_ecg_endpoint_and_the_library(served: Served) -> None:
    """``GET /readings/{id}/ecg``: the window in µV of every lead with the engine's
    beats, measurements and statements; later windows, the monitoring band; a window
    out of range is 400, another county's reader 404, a record not yet kept 404
    ``no_signal``; the view is audited. ``GET /ecg/library`` lists the codes."""
    rw = served.rw
    task = rw.stream_task("plain").task.id
    reader = await served.client("liu.reader")
    far = await served.client("far.reader")
    url = f"/api/v1/readings/{task}/ecg"
    answer = await reader.get(url)
    assert answer.status_code == 200, answer.text
    ecg = answer.json()
    assert ecg["fs_hz"] == 500.0
    assert ecg["leads"][:3] == ["I", "II", "III"]
    assert len(ecg["samples_uv"]) == 12
    assert {len(lead) for lead in ecg["samples_uv"]} == {5000}
    assert ecg["band"] == "diagnostic"
    assert (ecg["start_s"], ecg["duration_s"], ecg["total_s"]) == (0.0, 10.0, 10.0)
    assert 10 <= len(ecg["beats"]) <= 14
    assert 60 <= ecg["measurements"]["hr_bpm"] <= 80
    assert ecg["measurements"]["qrs_ms"] > 40
    assert ecg["statements"][0]["code"] == "SR"  # the engine's rhythm statement first
    assert ecg["statements"][0]["text_zh"] == "窦性心律"
    original = read_record(PTBXL / "HR06000")
    assert abs(max(ecg["samples_uv"][1]) - 1000 * original.signal_mv[:, 1].max()) < 400

    part = await reader.get(url, params={"start_s": 4, "duration_s": 2, "band": "monitoring"})
    assert part.status_code == 200, part.text
    assert (part.json()["first_index"], part.json()["duration_s"]) == (2000, 2.0)
    assert part.json()["band"] == "monitoring"
    assert {len(lead) for lead in part.json()["samples_uv"]} == {1000}

    assert error_of(await reader.get(url, params={"duration_s": 31}))[0] == 400
    assert error_of(await reader.get(url, params={"start_s": -1}))[0] == 400
    assert error_of(await reader.get(url, params={"band": "wide"}))[0] == 400
    assert error_of(await far.get(url)) == (404, "not_found")
    served.signals.arriving.add("plain")
    assert error_of(await reader.get(url)) == (404, "no_signal")
    viewed = [a for a, _ in rw.actions(f"reading:{task}") if a == "reading.viewed"]
    assert len(viewed) == 3  # the two answers and the one with no signal yet

    library = (await reader.get("/api/v1/ecg/library")).json()
    assert {
        "code": "SR",
        "text_en": "Sinus rhythm",
        "text_zh": "窦性心律",
        "severity": "normal",
    } in (library["statements"])
    assert {c["code"] for c in library["criticals"]} == set(CRITICAL_TEXT)
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        assert error_of(await anonymous.get("/api/v1/ecg/library")) == (401, "session_invalid")
        document = (await anonymous.get("/api/v1/openapi.json")).json()
    assert {"/api/v1/readings/{reading_id}/ecg", "/api/v1/ecg/library"} <= set(document["paths"])
    assert [g for g in openapi_gaps(document) if "/ecg" in g] == []
    for client in (reader, far):
        await client.aclose()


async def test_on_the_whole_server_a_critical_value_reaches_the_doctor_live(
    browser: Browser, running: Running
) -> None:
    """As ``teleconsult serve`` assembles it: the township cart streams; the county's
    reader opens the task from the worklist and reads the stored record on paper,
    claims it and marks a critical finding; the clinic's doctor, with the register
    open, is told at once over /ws (the notice, the new row, the badge) and
    acknowledges by read-back."""
    credential = await build_directory(running)
    done = await simulate(
        record(12.0), url=running.ws_url("/device"), token=credential, device="cart-1",
        speed=math.inf,
    )  # fmt: skip
    stream = str(done.stream)
    await running.until_audited("stream.ended")
    await running.changes.until(lambda: running.reading_tasks_of(stream) == 1, "the task")

    def person(username: str, path: str) -> Awaitable[Opened]:
        login = {"username": username, "password": PLATFORM_PASSWORD}
        return open_as(browser, running.url, login, path, width=1280, height=900)

    opened = await person("li.doctor", "/readings?lang=zh#criticals")
    doctor, doctor_problems = opened.page, opened.problems
    await doctor.locator("#register-rows td", has_text="暂无记录").wait_for()
    await asyncio.wait_for(opened.watching.wait(), 30)

    opened = await person("chen.reader", "/readings?lang=en")
    reader, reader_problems = opened.page, opened.problems
    first = reader.locator("#rows tr").first
    await first.locator("td", has_text="town-1").wait_for()
    await first.locator("button[data-open]").click()
    await reader.wait_for_url(re.compile(r".*#reading/[0-9a-f]+$"))
    await drawn(reader)
    assert await reader.evaluate("() => window.tcReadings.ecg.total_s") == pytest.approx(12.0)
    await reader.locator("#measurements dd[data-measure=hr_bpm]").filter(has_text="bpm").wait_for()
    await reader.click("#r-actions button[data-event=claim]")
    await reader.locator("#r-state", has_text="Claimed").wait_for()
    await reader.click("#later")
    await reader.locator("#window-info", has_text="10.0–12.0 s of 12.0 s").wait_for()
    await reader.select_option("#mark-code", "VT")
    await reader.click("#mark-form button[type=submit]")
    await reader.locator("#r-crit-list li", has_text="Sustained ventricular tachycardia").wait_for()

    await doctor.locator("#notice-list li[data-topic='critical.raised']").wait_for()
    await doctor.locator("#notices", has_text=re.compile(r"^1$")).wait_for()
    row = doctor.locator("#register-rows tr", has_text="持续性室性心动过速")
    await row.locator("input").fill("室速，李医生已知悉")
    await row.locator("button[type=submit]").click()
    await row.locator(".cstate-acknowledged").wait_for()
    await doctor.locator("#notices").wait_for(state="hidden")
    for problems in (doctor_problems, reader_problems):
        assert [p for p in problems if not p.startswith("Failed to load resource")] == []


async def test_on_the_whole_server_a_stream_still_arriving_is_read_live(
    browser: Browser, running: Running
) -> None:
    """A cart streams in real time: its task leads the worklist while it arrives; opened,
    the reading page draws it live on the live paper; when the stream ends the page
    draws the stored record with the engine's measurements, by itself."""
    credential = await build_directory(running)
    # The reader logged in on the worklist before the cart starts (and reloads it once
    # the task is made): the time the stream lasts is spent reading it, not logging in.
    login = {"username": "chen.reader", "password": PLATFORM_PASSWORD}
    opened = await open_as(browser, running.url, login, "/readings?lang=en", width=1280, height=900)
    reader = opened.page
    arriving = simulate(
        record(STILL_ARRIVING_S), url=running.ws_url("/device"), token=credential,
        device="cart-1", speed=1.0,
    )  # fmt: skip
    streaming = asyncio.create_task(arriving)
    # The task is made (off the event loop) as the stream starts.
    await running.until_audited("reading.created")
    await reader.reload()
    await reader.locator("body[data-ready=true]").wait_for()
    first = reader.locator("#rows tr").first
    await first.locator("button[data-open]").click()
    await reader.locator("#live[data-state=live]").wait_for()
    # The live workers start with the first stream: its first chunk may take a while on
    # a loaded machine (the stream lasts longer than that).
    await reader.wait_for_function(
        "() => window.tcReadings.liveCounters.samplesDrawn > 100", timeout=25_000
    )
    assert await reader.locator("#paper-box").is_hidden()
    await streaming
    await drawn(reader)
    assert await reader.locator("#live").is_hidden()
    assert await reader.evaluate("() => window.tcReadings.ecg.total_s") == pytest.approx(
        STILL_ARRIVING_S
    )
    await reader.locator("#measurements dd[data-measure=hr_bpm]").filter(has_text="bpm").wait_for()
    refused = [p for p in opened.problems if not p.startswith("Failed to load resource")]
    assert [p for p in refused if "/ecg?" not in p] == []  # the record asked for while arriving


def string_keys(source: str) -> set[str]:
    """The keys of a page script's string tables (``en: {...}`` and ``zh: {...}``),
    checked to be the same in both languages, and checked to hold every key the script
    uses literally (``t("...")``)."""
    en_block = source.split("  en: {", 1)[1].split("\n  },\n", 1)[0]
    zh_block = source.split("  zh: {", 1)[1].split("\n  },\n", 1)[0]
    key = re.compile(r'^\s+"?([\w.]+)"?:', re.M)
    en, zh = set(key.findall(en_block)), set(key.findall(zh_block))
    assert en == zh, sorted(en ^ zh)
    used = set(re.findall(r'\bt\("([\w.]+)"', source))
    assert used <= en, sorted(used - en)
    return en


def test_every_string_is_in_both_languages() -> None:
    """The keys of readings.js's English and Chinese tables are the same, and every key
    the page uses literally (data-r, data-rp, t("...")) is in them."""
    source = (WEB / "readings.js").read_text(encoding="utf-8")
    html = (WEB / "readings.html").read_text(encoding="utf-8")
    en = string_keys(source)
    used = set(re.findall(r'data-rp?="([\w.]+)"', html))
    assert used <= en, sorted(used - en)
    prefixes = set(re.findall(r"t\(`([\w]+)\.\$\{", source))
    for prefix in prefixes:  # the keys a template builds: state.new, cstate.notified...
        assert any(k.startswith(f"{prefix}.") for k in en), prefix
