"""The ECG centre's story on the server as ``teleconsult serve`` builds it, in real
Chromium, with the clock of test_consult_story.py's fixture (the accounts' and the ECG
centre's time):

the admin sets up a county ECG centre that serves a village clinic by a service
relation (it is not above the clinic in the tree), the clinic's doctor, a cart of the
clinic, two readers and a coordinator of the centre. The cart sends a plain ECG, then
one with a 3.5 s pause: while it still arrives its task leads the worklist marked
critical, and the clinic's doctor, on a phone, is told live and acknowledges by
read-back. The first reader claims it from the worklist; the second reader's claim is
refused naming the claimant. On the median beat the reader drags the QRS offset (QRS
longer, QTc as it was) and moves the QRS onset with the arrow keys (QRS and QTc longer);
takes the engine's statements, adds one found in the library, writes a line, marks a
second critical finding (the report not saved yet stays on screen when the task
reloads) and signs with the one-time code; the plain ECG opens next, and the reader
returns it to the clinic. The clinic's doctor reads the signed report on the phone (one
lead at 10 px per mm or more), its PDF renders (pdftoppm) with the statements in its
text, and its DICOM file (pydicom) holds the stored record's samples as wfdb reads them
and the measurements as signed. The register shows the pause with the times it was
detected and acknowledged; the second finding, never acknowledged, escalates on the
test's clock by the server's sweep to the clinic's doctors and then to the centre's
coordinator, who is told live. An amendment is version 2 naming version 1's digest.

Covered elsewhere: the reading page's layouts, gain, speed and band and the phone in
landscape (tests/api/test_readings_web.py), the median panel's refusals
(test_readings_median_web.py), beat labels (test_readings_beats_web.py), the previous
ECGs (test_readings_previous_web.py), a stream read live while it arrives
(test_readings_web.py's ``..._a_stream_still_arriving_is_read_live``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import re
import shutil
import uuid
from asyncio.subprocess import PIPE
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
import wfdb
from playwright.async_api import Browser, Page

from consults.signatures import digest
from ecg.dicom import read_dicom
from teleconsult.app import Assembly
from teleconsult.device_cmd import simulate
from tests.api.test_readings_median_web import _drag, _measure, _px_per_ms
from tests.api.test_readings_web import Opened, open_as, real
from tests.consults.test_service_world import Clock
from tests.e2e.test_consult_story import Client, story
from tests.e2e.test_platform import ADMIN_PASSWORD, PASSWORD, browser, looped
from tests.store_changes import StoreChanges
from tests.teleconsult.test_live_critical import with_pause

__all__ = ["browser", "story"]

pytestmark = pytest.mark.browser

# Generous: the CI runs the suite in two processes on two cores.
WAIT_MS = 60_000


async def reading_pages(
    browser: Browser, base: str, api: Client, username: str, path: str, **size: int
) -> Opened:
    """The person's own browser on the ECG centre's ``path``, logged in through the API
    (with the next one-time code where enrolled), watching live notices."""
    body = {"username": username, "password": PASSWORD}
    if username in api.totp:
        api.clock.advance(30)  # a code is taken once: the next step's
        body["totp"] = api.code(username)
    opened = await open_as(browser, base, body, path, **size)
    await asyncio.wait_for(opened.watching.wait(), WAIT_MS / 1000)
    return opened


async def painted(page: Page) -> None:
    """Wait until the paper holds the current ECG's samples."""
    await page.wait_for_function(
        "() => window.tcReadings.ecg && window.tcReadings.counters.samplesDrawn > 1000",
        timeout=WAIT_MS,
    )


def gray_image(pgm: bytes) -> tuple[int, int, np.ndarray[Any, np.dtype[np.uint8]]]:
    """The width, height and pixels of a binary PGM (what ``pdftoppm -gray`` writes)."""
    header = re.match(rb"P5\s+(\d+)\s+(\d+)\s+255\s", pgm)
    assert header is not None, pgm[:20]
    width, height = int(header[1]), int(header[2])
    pixels = np.frombuffer(pgm[header.end() :], dtype=np.uint8)
    assert pixels.size == width * height
    return width, height, pixels


async def shown_time(page: Page, iso: str) -> str:
    """``iso`` as a page in Chinese writes a time."""
    text: str = await page.evaluate("(iso) => new Date(iso).toLocaleString('zh-CN')", iso)
    return text


async def test_the_ecg_centre_story_on_the_whole_server(
    story: tuple[Assembly, Clock, Path], browser: Browser, tmp_path: Path
) -> None:
    for tool in ("pdftoppm", "pdftotext"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (poppler-utils)")
    served, clock, data = story
    base = served.server.url
    service = served.platform.reading_service
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30)
        )
        changes = stack.enter_context(StoreChanges(served.platform.stores.engine))
        api = Client(http, clock)
        await api.login("root", ADMIN_PASSWORD)
        for code, name, level, parent in (
            ("county-1", "某县心电诊断中心", "county", None),
            ("town-1", "某镇卫生院", "township", None),
            ("village-1", "某村卫生室", "village", "town-1"),
        ):
            institution = {"code": code, "name": name, "level": level, "parent": parent}
            await api.call("root", "POST", "/institutions", institution)
        relation = {"provider": "county-1", "client": "village-1", "kind": "ecg"}
        await api.call("root", "POST", "/relations", relation)
        for username, name, works_at, role in (
            ("li.doctor", "李医生", "village-1", "doctor"),
            ("liu.reader", "刘医师", "county-1", "ecg_reader"),
            ("ma.reader", "马医师", "county-1", "ecg_reader"),
            ("zhao.coord", "赵协调", "county-1", "coordinator"),
        ):
            body = {"username": username, "display_name": name, "password": PASSWORD,
                    "roles": [role], "institution": works_at}  # fmt: skip
            await api.call("root", "POST", "/people", body)
        cart = await api.call(
            "root",
            "POST",
            "/devices",
            {"id": "cart-1", "name": "心电图机", "institution": "village-1"},
        )
        for username in ("liu.reader", "li.doctor"):
            await api.login(username)
        enrolled = await api.call("liu.reader", "POST", "/me/totp", {})
        api.totp["liu.reader"] = enrolled["secret"]
        # Viewing rights read a snapshot of the directory: refreshed now, not in a while.
        await asyncio.to_thread(served.platform.directory_view.refresh)

        # Everyone's page open before the ECGs come: the doctor's on a phone.
        opened = await reading_pages(
            browser, base, api, "li.doctor", "/readings?lang=zh#criticals", width=390, height=844
        )
        doctor, doctor_problems = opened.page, opened.problems
        opened = await reading_pages(
            browser, base, api, "liu.reader", "/readings?lang=en", width=1280, height=1000
        )
        reader, reader_problems = opened.page, opened.problems
        opened = await reading_pages(
            browser, base, api, "zhao.coord", "/readings?lang=en#criticals", width=1280, height=900
        )
        coordinator, coordinator_problems = opened.page, opened.problems

        # A plain ECG first: it waits longest.
        device = base.replace("http", "ws") + "/device"
        token = cart["credential"]
        plain_stream = await simulate(
            looped(10.0), url=device, token=token, device="cart-1", patient="CW-0002",
            speed=math.inf,
        )  # fmt: skip
        await changes.until(
            lambda: service.task_of_stream(str(plain_stream.stream)) is not None,
            "the plain ECG's task",
            timeout_s=60,
        )
        plain_record = service.task_of_stream(str(plain_stream.stream))
        assert plain_record is not None
        plain = plain_record.task.id

        # The ECG with the pause arrives at 2x (as in test_live_critical.py): the pause,
        # over at 8.5 s of signal, is proven some 5 s into its 15.
        stream = uuid.uuid4()
        arriving = asyncio.ensure_future(
            simulate(
                with_pause(30.0, pause_s=3.5), url=device, token=token, device="cart-1",
                patient="CW-0001", stream=stream, speed=2.0,
            )
        )  # fmt: skip
        await changes.until(
            lambda: service.task_of_stream(str(stream)) is not None, "the task", timeout_s=60
        )
        found = service.task_of_stream(str(stream))
        assert found is not None
        critical = found.task.id
        assert (found.task.clinic, found.task.centre) == ("village-1", "county-1")

        # While it arrives, the reader's worklist has it on top, marked critical.
        top = reader.locator("#rows tr").first
        await top.locator(".badge-critical", has_text="Pause of 3 s or more").wait_for(
            timeout=WAIT_MS
        )
        assert await top.get_attribute("data-id") == critical
        assert await top.get_attribute("class") == "critical"
        assert await reader.locator(f"#rows tr[data-id='{plain}']").count() == 1
        assert not arriving.done(), "the ECG had arrived whole before it was critical"

        # The doctor is told on the phone and acknowledges a minute and a half later.
        await doctor.locator("#notice-list li[data-topic='critical.raised']").wait_for(
            timeout=WAIT_MS
        )
        pause_row = doctor.locator("#register-rows tr", has_text="心脏停搏/长间歇")
        await pause_row.locator("input").wait_for(timeout=WAIT_MS)
        clock.advance(90)
        await pause_row.locator("input").fill("心脏停搏/长间歇，李医生已知悉")
        await pause_row.locator("button[type=submit]").click()
        await pause_row.locator(".cstate-acknowledged", has_text="已确认").wait_for()
        await doctor.screenshot(path=tmp_path / "ecg-story-doctor-register.png", full_page=True)

        # The first reader claims it from the worklist once it has arrived whole; the
        # second reader, whose list shows it unclaimed (no notice reloads it before the
        # click: a claim tells nobody), is refused naming the claimant.
        opened = await reading_pages(
            browser, base, api, "ma.reader", "/readings?lang=zh", width=1280, height=900
        )
        second, second_problems = opened.page, opened.problems
        await second.locator(f"#rows tr[data-id='{critical}'] button[data-event=claim]").wait_for(
            timeout=WAIT_MS
        )
        recorded = await arriving
        assert recorded.stream == stream
        await reader.locator(f"#rows tr[data-id='{critical}'] button[data-event=claim]").click()
        await reader.wait_for_url(re.compile(rf".*#reading/{critical}$"))
        await reader.locator("#r-state", has_text="Claimed").wait_for()
        await second.locator(f"#rows tr[data-id='{critical}'] button[data-event=claim]").click()
        await second.locator("#error", has_text="liu.reader").wait_for()
        held = second.locator(f"#rows tr[data-id='{critical}']")
        await held.locator(".state", has_text="已领取 · liu.reader").wait_for()
        assert real(second_problems) == [f"403 {base}/api/v1/readings/{critical}/claim"]

        # The whole record on paper; on the median beat the QRS offset dragged 20 ms
        # later lengthens QRS and leaves QT (and QTc) alone; the onset moved 3 samples
        # earlier with the keys lengthens both.
        await painted(reader)
        assert await reader.evaluate("() => window.tcReadings.ecg.total_s") == pytest.approx(30.0)
        await reader.locator("#median[data-lead=II] .median-marker[tabindex='0']").first.wait_for(
            timeout=WAIT_MS
        )
        qrs, qtc = await _measure(reader, "qrs_ms"), await _measure(reader, "qtc_ms")
        await _drag(reader, "qrs_off", 20.0 * await _px_per_ms(reader))
        await reader.wait_for_function(
            "(qrs) => document.querySelector('#measurements dd[data-measure=qrs_ms]')"
            ".textContent.split(' ')[0] !== qrs",
            arg=f"{qrs:.0f}",
        )
        longer = await _measure(reader, "qrs_ms")
        assert abs(longer - (qrs + 20.0)) <= 4.0, (qrs, longer)
        assert await _measure(reader, "qtc_ms") == qtc
        onset = reader.locator("#median .median-marker[data-fiducial=qrs_on]")
        for _ in range(3):
            puts = await reader.evaluate("() => window.tcReadings.median.puts")
            await onset.focus()
            await reader.keyboard.press("ArrowLeft")
            await reader.wait_for_function(f"() => window.tcReadings.median.puts > {puts}")
        await reader.wait_for_function(
            "(qtc) => document.querySelector('#measurements dd[data-measure=qtc_ms]')"
            ".textContent.split(' ')[0] !== qtc",
            arg=f"{qtc:.0f}",
        )
        corrected = await reader.evaluate("() => window.tcReadings.median.data.fiducials")
        assert sorted(corrected["corrected"]) == ["qrs_off", "qrs_on"]
        assert await _measure(reader, "qrs_ms") == longer + 6.0
        shown_qtc = await _measure(reader, "qtc_ms")
        assert shown_qtc > qtc
        await reader.locator("#median-note", has_text="Corrected by liu.reader").wait_for()

        # The report: the engine's statements, one found in the library in Chinese, a
        # line of text; a second critical finding marked; signed, the next ECG opens.
        await reader.click("#use-proposed")
        proposed: list[str] = await reader.evaluate(
            "() => window.tcReadings.ecg.statements.map((s) => s.code)"
        )
        assert proposed
        await reader.locator(f"#chosen li[data-code='{proposed[0]}']").wait_for()
        assert "SARRH" not in proposed
        await reader.fill("#st-search", "窦性心律不齐")
        await reader.locator("#st-results button[data-code=SARRH]").click()
        await reader.locator("#chosen li[data-code=SARRH]").wait_for()
        note = "窦性停搏 3.5 秒，建议动态心电图检查"
        await reader.fill("#r-text", note)
        await reader.select_option("#mark-code", "VT")
        await reader.click("#mark-form button[type=submit]")
        await reader.locator(
            "#r-crit-list li", has_text="Sustained ventricular tachycardia"
        ).wait_for()
        # The task reloaded with the finding: the report not saved yet is still there.
        await reader.locator("#chosen li[data-code=SARRH]").wait_for()
        assert await reader.input_value("#r-text") == note
        await reader.screenshot(path=tmp_path / "ecg-story-reader.png", full_page=True)
        clock.advance(30)
        await reader.fill("#sign-totp", api.code("liu.reader"))
        await reader.click("#sign-form button[type=submit]")
        await reader.wait_for_url(re.compile(rf".*#reading/{plain}$"))
        await reader.locator("#notice", has_text="next waiting ECG is open").wait_for()
        statements = [*proposed, "SARRH"]
        (signed,) = (await api.call("li.doctor", "GET", f"/readings/{critical}/report"))["versions"]
        document = signed["document"]
        assert document["report"] == {"statements": statements, "text": note}
        assert document["critical"] == ["PAUSE", "VT"]
        figures = document["measurements"]
        assert figures["qrs_ms"] == longer + 6.0
        assert abs(figures["qtc_ms"][figures["qtc_first"]] - shown_qtc) <= 1

        # The plain ECG is returned to the clinic: the baseline is unreadable.
        await reader.locator("#r-actions button[data-event=claim]").click()
        await reader.locator("#r-state", has_text="Claimed").wait_for()
        await reader.fill("#return-reason", "基线漂移严重，请重新采集")
        await reader.click("#return-form button[type=submit]")
        await reader.locator("#r-state", has_text="Returned").wait_for()
        returned = await api.call("li.doctor", "GET", f"/readings/{plain}")
        assert (returned["state"], returned["reason"]) == ("returned", "基线漂移严重，请重新采集")
        await doctor.locator("#notice-list li[data-topic='reading.return']").wait_for(
            timeout=WAIT_MS
        )

        # The clinic reads the signed report on the phone: one lead at a readable scale.
        await doctor.locator("#notice-list li[data-topic='reading.sign']").wait_for()
        await doctor.goto(f"{base}/readings?lang=zh#reading/{critical}")
        await doctor.locator("body[data-ready=true]").wait_for()
        await doctor.locator("#versions .version", has_text="窦性心律不齐").wait_for(
            timeout=WAIT_MS
        )
        assert await doctor.locator("#editor").is_hidden()
        await painted(doctor)
        await doctor.locator("#paper[data-layout=one]").wait_for()
        assert await doctor.evaluate("() => window.tcReadings.paper.pxPerMm") >= 10
        await doctor.screenshot(path=tmp_path / "ecg-story-doctor-report.png")

        # The PDF renders, and its text holds the statements, the line and the signer.
        href = await doctor.get_attribute("#pdf-link", "href")
        assert href is not None
        pdf = await doctor.context.request.get(f"{base}{href}")
        assert pdf.ok
        report = await pdf.body()
        await asyncio.to_thread((tmp_path / "report.pdf").write_bytes, report)
        drawing = await asyncio.create_subprocess_exec(
            "pdftoppm", "-r", "40", "-gray", "-f", "1", "-l", "1", "-",
            stdin=PIPE, stdout=PIPE, stderr=PIPE,
        )  # fmt: skip
        drawn_page, said = await drawing.communicate(report)
        assert drawing.returncode == 0, said
        width, height, pixels = gray_image(drawn_page)
        assert width > height  # A4 landscape
        assert (pixels < 250).mean() > 0.3  # the paper's grid over most of the page
        assert (pixels < 128).sum() > 1_000  # the traces and the text, dark on it
        reading = await asyncio.create_subprocess_exec(
            "pdftotext", "-", "-", stdin=PIPE, stdout=PIPE
        )
        text, _ = await reading.communicate(report)
        for expected in ("窦性心律不齐", note, "liu.reader"):
            assert expected in text.decode(), expected

        # The DICOM file: the stored record's samples (1 µV counts) and the figures signed.
        href = await doctor.get_attribute("#dcm-link", "href")
        assert href is not None
        dcm = await doctor.context.request.get(f"{base}{href}")
        assert dcm.ok
        dataset = pydicom.dcmread(io.BytesIO(await dcm.body()))
        group = dataset.WaveformSequence[0]
        samples = np.frombuffer(group.WaveformData, dtype="<i2").reshape(
            group.NumberOfWaveformSamples, group.NumberOfWaveformChannels
        )
        (header,) = await asyncio.to_thread(lambda: list(data.rglob(f"{stream}.hea")))
        stored = wfdb.rdrecord(str(header.with_suffix("")), physical=False)
        assert list(stored.adc_gain) == [1000.0] * 12  # one count is one µV
        assert np.array_equal(samples, stored.d_signal)
        assert float(group.SamplingFrequency) == stored.fs
        back = read_dicom(await dcm.body()).info
        assert back.measurements.values["qrs_ms"].value == figures["qrs_ms"]
        for formula, value in figures["qtc_ms"].items():
            assert back.measurements.values[f"qtc_{formula}_ms"].value == value
        assert [s.code for s in back.statements] == statements
        assert [s.code for s in back.critical] == ["PAUSE", "VT"]

        # The register: the pause, detected and acknowledged 90 s later, with the
        # read-back.
        await doctor.goto(f"{base}/readings?lang=zh#criticals")
        await doctor.locator("body[data-ready=true]").wait_for()
        register = (await api.call("li.doctor", "GET", "/criticals"))["items"]
        pause = next(c for c in register if c["code"] == "PAUSE")
        detected = datetime.fromisoformat(pause["detected_at"])
        acknowledged = datetime.fromisoformat(pause["acknowledged_at"])
        assert acknowledged - detected == timedelta(seconds=90)
        assert pause["acknowledged_by"] == "li.doctor"
        row = doctor.locator(f"#register-rows tr[data-critical='{pause['id']}']")
        for shown in (
            await shown_time(doctor, pause["detected_at"]),
            f"li.doctor，{await shown_time(doctor, pause['acknowledged_at'])}",
            "心脏停搏/长间歇，李医生已知悉",
        ):
            await row.filter(has_text=shown).wait_for()

        # The VT finding nobody acknowledges: past its 10 minutes the server's sweep tells
        # the clinic's doctors again, 10 minutes later the centre's coordinator (live).
        vt = next(c for c in register if c["code"] == "VT")
        assert vt["state"] == "notified"
        for minutes, level in ((11, "clinic_doctors"), (10, "centre_coordinators")):
            clock.advance(minutes * 60)
            # The server's own sweep (every 15 s) may come first; either escalates once.
            await asyncio.to_thread(service.escalate_due)
            now = await api.call("li.doctor", "GET", f"/criticals/{vt['id']}")
            assert (now["state"], now["level"]) == ("escalated", level)
        await doctor.locator("#notice-list li[data-topic='critical.escalate']").first.wait_for(
            timeout=WAIT_MS
        )
        await coordinator.locator("#notice-list li[data-topic='critical.escalate']").wait_for(
            timeout=WAIT_MS
        )
        await coordinator.locator(
            f"#register-rows tr[data-critical='{vt['id']}'] .cstate-escalated",
            has_text="the centre's coordinators",
        ).wait_for(timeout=WAIT_MS)
        assert "zhao.coord" in now["notified"]

        # An amendment: version 2, naming version 1's digest.
        await reader.goto(f"{base}/readings?lang=en#reading/{critical}")
        await reader.locator("body[data-ready=true]").wait_for()
        await reader.click("#r-actions button[data-event=amend]")
        await reader.locator("#r-state", has_text="Being amended").wait_for()
        await reader.locator("#chosen li[data-code=SARRH]").wait_for()
        await reader.click("#chosen li[data-code=SARRH] button")
        await reader.locator("#chosen li[data-code=SARRH]").wait_for(state="detached")
        clock.advance(30)
        await reader.fill("#sign-totp", api.code("liu.reader"))
        await reader.click("#sign-form button[type=submit]")
        await reader.locator("#notice", has_text="No ECG is waiting").wait_for()
        versions = (await api.call("li.doctor", "GET", f"/readings/{critical}/report"))["versions"]
        assert [v["version"] for v in versions] == [1, 2]
        assert versions[1]["corrects"] == digest(versions[0]["document"])
        assert versions[1]["document"]["report"]["statements"] == proposed
        assert versions[0]["document"] == document  # a signed version never changes

    for problems in (doctor_problems, reader_problems, coordinator_problems):
        assert real(problems) == []
