"""The consult service's story on the server as ``teleconsult serve`` builds it, in real
Chromium, with a clock the test controls (the accounts', the consult service's and the
ECG centre's time; room and device tokens keep the system's):

a village doctor logs in, records consent and sends an urgent request; the clinic's cart
streams the patient's ECG declaring the consult, and it is on the consult; the
coordinator is told live and assigns a cardiologist; the expert is told, accepts and
schedules; both join the room from the consult page (the doctor waits, the expert is
told and admits); the expert writes and signs the opinion with the one-time code; the
doctor is told, sees the signed opinion and downloads the PDF, which verifies; the
expert refers the patient up to the city, whose cardiology accepts; the dashboard counts
it all. Then, past its deadline on the test's clock, an emergency request is escalated
(the coordinators are told live) and expires.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from playwright.async_api import Browser, Page

from teleconsult.app import Assembly, assemble
from teleconsult.device_cmd import simulate
from tests.consults.test_service_world import Clock
from tests.e2e.test_admin import log_in
from tests.e2e.test_platform import ADMIN_PASSWORD, PASSWORD, browser, looped, set_up
from tests.web.browser import new_page

__all__ = ["browser"]

pytestmark = pytest.mark.browser


@pytest.fixture
async def story(tmp_path: Path) -> AsyncIterator[tuple[Assembly, Clock, Path]]:
    """A data dir whose first admin ``root`` was made by ``teleconsult setup``, and the
    server on it with the test's clock."""
    data = tmp_path / "var"
    clock = Clock()
    assembly = assemble(await set_up(data), clock=clock)
    await assembly.server.start()
    try:
        yield assembly, clock, data
    finally:
        await assembly.server.close()


class Client:
    """The REST API as each person of the story (bearer tokens from their logins)."""

    def __init__(self, http: httpx.AsyncClient, clock: Clock) -> None:
        self.http = http
        self.clock = clock
        self.totp: dict[str, str] = {}
        self.tokens: dict[str, str] = {}

    def code(self, username: str) -> str:
        """The person's one-time code at the test's clock."""
        return pyotp.TOTP(self.totp[username]).at(self.clock.now)

    async def login(self, username: str, password: str = PASSWORD) -> None:
        body = {"username": username, "password": password}
        if username in self.totp:
            body["totp"] = self.code(username)
        answer = await self.http.post("/auth/login", json=body)
        assert answer.status_code == 200, answer.text
        self.tokens[username] = answer.json()["token"]

    async def call(self, as_: str, method: str, path: str, body: Any = None) -> Any:
        answer = await self.http.request(
            method, path, json=body, headers={"authorization": f"Bearer {self.tokens[as_]}"}
        )
        assert answer.is_success, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json() if answer.content else None


async def browse(browser: Browser, base: str, api: Client, username: str) -> Page:
    """A browser of the person's own, logged in through the API, on the consult pages
    in English; script errors fail the story."""
    page = await new_page(browser, width=1366, height=900)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    body: dict[str, str] = {"username": username, "password": PASSWORD}
    if username in api.totp:
        api.clock.advance(30)  # a code is taken once: the next step's
        body["totp"] = api.code(username)
    answer = await page.context.request.post(f"{base}/api/v1/auth/login", data=body)
    assert answer.ok, await answer.text()
    await page.goto(f"{base}/consults?lang=en")
    await page.locator("body[data-ready=true]").wait_for()
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def open_consult(page: Page, base: str, consult: str) -> None:
    """The consult page, loaded anew (a change of the hash alone would not reload it)."""
    await page.goto(f"{base}/consults?lang=en#consult/{consult}")
    await page.reload()
    await page.locator("body[data-ready=true]").wait_for()
    await page.locator("#c-state").wait_for()


async def join_room(page: Page, base: str, consult: str, screen: str) -> None:
    """From the consult page into its room (no token to copy): on ``screen`` after."""
    await open_consult(page, base, consult)
    await page.click("#c-join")
    await page.wait_for_url("**/join?token=**")
    await page.wait_for_function("() => !document.getElementById('join').disabled")
    await page.click("#join")
    await page.wait_for_function(f"() => window.tc.screen === '{screen}'")


async def notified(page: Page, topic: str, consult: str) -> None:
    """The live notice of ``topic`` about ``consult`` is in the page's list."""
    await page.locator(
        f"#notice-list li[data-topic='{topic}'] a[href='#consult/{consult}']"
    ).wait_for(timeout=20_000)


async def test_the_consult_story_on_the_whole_server(
    story: tuple[Assembly, Clock, Path], browser: Browser, tmp_path: Path
) -> None:
    served, clock, data = story
    base = served.server.url
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30) as http:
        api = Client(http, clock)
        await api.login("root", ADMIN_PASSWORD)
        for code, name, level, parent in (
            ("city-1", "某市人民医院", "city", None),
            ("county-1", "某县人民医院", "county", "city-1"),
            ("town-1", "某镇卫生院", "township", "county-1"),
            ("village-1", "某村卫生室", "village", "town-1"),
        ):
            body = {"code": code, "name": name, "level": level, "parent": parent}
            await api.call("root", "POST", "/institutions", body)
        await api.call(
            "root", "POST", "/institutions/city-1/departments", {"code": "cardio", "name": "心内科"}
        )
        for username, name, institution, role, extra in (
            ("li.doctor", "李医生", "village-1", "doctor", {"title": "乡村医生"}),
            ("zhao.coord", "赵协调", "county-1", "coordinator", {}),
            ("wang.expert", "王主任", "county-1", "expert",
             {"specialty": "心内科", "title": "主任医师"}),
            ("ma.doctor", "马医生", "city-1", "doctor", {"department": "cardio"}),
            ("qian.auditor", "钱审计", "city-1", "auditor", {}),
        ):  # fmt: skip
            body = {"username": username, "display_name": name, "password": PASSWORD,
                    "roles": [role], "institution": institution, **extra}  # fmt: skip
            await api.call("root", "POST", "/people", body)
        cart = await api.call(
            "root",
            "POST",
            "/devices",
            {"id": "cart-1", "name": "心电图机", "institution": "village-1"},
        )
        for username in ("wang.expert", "ma.doctor"):
            await api.login(username)
        enrolled = await api.call("wang.expert", "POST", "/me/totp", {})
        api.totp["wang.expert"] = enrolled["secret"]
        clock.advance(30)  # a code is taken once: past the step of any code seen so far
        start = clock.now + timedelta(days=1)
        slot = {"department": "cardio", "start": start.isoformat(),
                "end": (start + timedelta(hours=1)).isoformat()}  # fmt: skip
        await api.call("ma.doctor", "POST", "/referral-slots", slot)

        # The village doctor logs in on the login page and sends the request.
        doctor = await new_page(browser, width=390, height=844)
        doctor_errors: list[str] = []
        doctor.on("pageerror", lambda error: doctor_errors.append(str(error)))
        await log_in(doctor, base, "li.doctor", PASSWORD)
        await doctor.wait_for_url(f"{base}/?lang=en")
        coordinator = await browse(browser, base, api, "zhao.coord")
        await doctor.goto(f"{base}/consults?lang=en")
        await doctor.locator("body[data-ready=true]").wait_for()
        await doctor.click("#tabs button[data-tab=new]")
        await doctor.fill("#p-name", "张三")
        await doctor.select_option("#p-sex", "male")
        await doctor.fill("#p-birth", "1956-03-02")
        await doctor.fill("#p-record", "CW-0001")
        await doctor.fill("#r-reason", "胸痛两小时")
        await doctor.fill("#r-purpose", "明确诊断")
        await doctor.fill("#r-summary", "胸骨后压榨样疼痛两小时，心电图见下。")
        await doctor.fill("#r-specialty", "心内科")
        await doctor.select_option("#r-priority", "urgent")
        await doctor.select_option("#c-kind", "verbal")
        await doctor.fill("#c-witness", "王护士")
        moment = (clock.now - timedelta(minutes=5)).astimezone()
        await doctor.fill("#c-time", moment.strftime("%Y-%m-%dT%H:%M"))
        await doctor.click("#new-form button[type=submit]")
        await doctor.wait_for_url(re.compile(r".*#consult/[0-9a-f]+$"))
        consult = doctor.url.rsplit("/", 1)[-1]

        # The clinic's cart records the patient's ECG for this consult.
        stream = uuid.uuid4()
        recorded = await simulate(
            looped(12.0), url=base.replace("http", "ws") + "/device",
            token=cart["credential"], device="cart-1", patient="CW-0001",
            consult=consult, stream=stream, speed=8.0,
        )  # fmt: skip
        assert recorded.stream == stream
        # The server records the stream in a thread of its own: the page shows it on a
        # reload once that is done (for at most a minute: under a loaded CI that thread
        # may lag well behind the stream).
        shown = doctor.locator("#c-streams li", has_text=str(stream))
        catalogue = served.platform.stores.streams
        deadline = time.monotonic() + 60
        while not await shown.count():
            row = await asyncio.to_thread(catalogue.get_stream, str(stream))
            assert time.monotonic() < deadline, f"the consult page never listed {stream}: {row}"
            await doctor.reload()
            await doctor.locator("body[data-ready=true]").wait_for()
        await shown.wait_for()

        # The coordinator is told live, and assigns the cardiologist.
        await notified(coordinator, "consult.submit", consult)
        await open_consult(coordinator, base, consult)
        expert = await browse(browser, base, api, "wang.expert")
        await coordinator.click("#c-actions button[data-event=assign]")
        await coordinator.fill("#step-experts", "wang.expert")
        await coordinator.click("#step-go")
        await coordinator.locator("#c-state", has_text="Assigned").wait_for()

        # The expert is told, sees the ECG on the consult, accepts and schedules.
        await notified(expert, "consult.assign", consult)
        await open_consult(expert, base, consult)
        await expert.locator("#c-streams li", has_text=str(stream)).wait_for()
        await expert.click("#c-actions button[data-event=accept]")
        await expert.locator("#c-state", has_text="Accepted").wait_for()
        await notified(doctor, "consult.accept", consult)
        await expert.click("#c-actions button[data-event=schedule]")
        when = (clock.now + timedelta(minutes=20)).astimezone()
        await expert.fill("#step-start", when.strftime("%Y-%m-%dT%H:%M"))
        await expert.click("#step-go")
        await expert.locator("#c-state", has_text="Scheduled").wait_for()

        # Both join the room from the consult page: the doctor waits, the expert admits.
        await join_room(doctor, base, consult, "waiting")
        await notified(expert, "consult.waiting", consult)
        room = await browse(browser, base, api, "wang.expert")
        await join_room(room, base, consult, "room")
        await room.click("#toggle-people")
        await room.click("#admit-all")
        await doctor.wait_for_function("() => window.tc.screen === 'room'", timeout=20_000)
        await room.screenshot(path=tmp_path / "story-room-expert.png")
        # They talk in the room's chat: it becomes part of the consult's record.
        await doctor.click("#toggle-chat")
        await doctor.fill("#chat-text", "胸痛仍在持续")
        await doctor.press("#chat-text", "Enter")
        await room.wait_for_function(
            "() => document.getElementById('chat-log').textContent.includes('胸痛仍在持续')"
        )

        # The expert starts the consult, writes the opinion and signs it.
        await expert.reload()
        await expert.locator("body[data-ready=true]").wait_for()
        await expert.click("#c-actions button[data-event=start]")
        await expert.locator("#c-state", has_text="In consult").wait_for()
        await expert.fill("#o-findings", "窦性心律，V1-V4 ST 段抬高 0.3 mV")
        await expert.fill("#o-diagnosis", "急性前壁心肌梗死")
        await expert.fill("#o-recommendations", "立即转上级医院行急诊 PCI")
        await expert.click("#opinion-form button[type=submit]")
        await expert.locator("#notice", has_text="Draft saved").wait_for()
        clock.advance(30)
        await expert.click("#c-actions button[data-event=sign]")
        await expert.fill("#step-totp", api.code("wang.expert"))
        await expert.click("#step-go")
        await expert.locator("#c-state", has_text="Signed").wait_for()

        # The doctor is told, reads the signed opinion and its PDF verifies.
        await doctor.goto(f"{base}/consults?lang=en#consult/{consult}")
        await doctor.locator("body[data-ready=true]").wait_for()
        await doctor.locator("#versions .version", has_text="急性前壁心肌梗死").wait_for()
        href = await doctor.get_attribute("#pdf-link", "href")
        assert href is not None
        pdf = await doctor.context.request.get(f"{base}{href}")
        assert pdf.ok
        path = tmp_path / "opinion.pdf"
        path.write_bytes(await pdf.body())
        verify = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "teleconsult", "report", "verify", "--check-keys",
            "--data-dir", str(data), str(path), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        said, _ = await verify.communicate()
        assert verify.returncode == 0, said
        assert f"VERIFIED: consult {consult}" in said.decode()

        # The room's chat is on the consult page, with who said it.
        await doctor.locator("#c-chat li", has_text="胸痛仍在持续").wait_for()
        assert "李医生" in await doctor.locator("#c-chat li").first.inner_text()

        # The expert refers the patient up to the city's cardiology, which accepts.
        await expert.reload()
        await expert.locator("body[data-ready=true]").wait_for()
        await expert.fill("#refer-institution", "city-1")
        await expert.click("#slots-form button[type=submit]")
        await expert.locator("#refer-form").wait_for()
        await expert.fill("#refer-reason", "急诊 PCI")
        await expert.click("#refer-form button[type=submit]")
        await expert.locator("#notice", has_text="Referral sent").wait_for()
        receiving = await browse(browser, base, api, "ma.doctor")
        await receiving.click("#tabs button[data-tab=referrals]")
        await receiving.locator("#referrals li", has_text="county-1").wait_for()
        await receiving.locator("#referrals li button", has_text="Accept").click()
        await receiving.locator("#referrals li", has_text="Accepted").wait_for()
        await doctor.click("#c-actions button[data-event=close]")
        await doctor.locator("#c-state", has_text="Closed").wait_for()

        # The dashboard counts it all: one consult of the village clinic, reported and
        # closed, one referral up.
        auditor = await browse(browser, base, api, "qian.auditor")
        await auditor.wait_for_url(re.compile(r".*#stats$"))
        await auditor.locator("#chart-counts rect").first.wait_for()
        assert "village-1" in await auditor.locator("#chart-counts text").all_text_contents()
        await auditor.screenshot(path=tmp_path / "story-dashboard.png", full_page=True)
        await api.login("qian.auditor")
        # The statistics' default period ends now, exclusive; the frozen clock has not
        # moved since the referral was made.
        clock.advance(1)
        stats = await api.call("qian.auditor", "GET", "/stats/consults?by=clinic")
        rows = {r["key"]: r for r in stats["groups"]}
        assert rows["village-1"]["total"] == 1, stats
        assert rows["village-1"]["accepted"] == 1
        assert rows["village-1"]["signed"] == 1
        sent = {r["institution"]: r["sent"] for r in stats["referrals"]}
        assert sent.get("county-1") == 1, stats

        # An emergency request: past its 10 minutes it is escalated (the coordinators are
        # told live), then it expires.
        await api.login("li.doctor")
        request = {
            "patient": {"name": "李四", "sex": "female", "birth_date": "1949-11-20",
                        "record_number": "CW-0002"},
            "reason": "晕厥", "purpose": "明确诊断", "summary": "一过性意识丧失",
            "specialty": "心内科", "priority": "emergency", "mode": "realtime",
            "consent": {"kind": "verbal", "recorded_by": "li.doctor", "witness": "王护士",
                        "time": clock.now.isoformat()},
        }  # fmt: skip
        emergency = (await api.call("li.doctor", "POST", "/consults", request))["id"]
        await notified(coordinator, "consult.submit", emergency)
        clock.advance(11 * 60)
        service = served.platform.consult_service
        # The server's own sweep (every 30 s) may come first; either escalates it once.
        escalated = await asyncio.to_thread(service.escalate_overdue)
        assert [r.consult.id for r in escalated] in ([emergency], [])
        await notified(coordinator, "consult.escalate", emergency)
        await coordinator.click("#tabs button[data-tab=overdue]")
        await coordinator.locator(f"#items li.overdue[data-id='{emergency}']").wait_for()
        clock.advance(24 * 3600)
        # Expired by this call or by the sweep: the page shows it below.
        assert await asyncio.to_thread(service.expire_due) in (0, 1)
        # A day later the coordinator's session is over: the page offers the login that
        # leads back to this consult.
        await coordinator.goto(f"{base}/consults?lang=en#consult/{emergency}")
        await coordinator.reload()
        link = coordinator.locator("#signed-out #login-link")
        await link.wait_for()
        assert f"consult%2F{emergency}" in (await link.get_attribute("href") or "")
        coordinator = await browse(browser, base, api, "zhao.coord")
        await open_consult(coordinator, base, emergency)
        await coordinator.locator("#c-state", has_text="Expired").wait_for()

    for page in (coordinator, expert, room, receiving, auditor):
        assert page.errors == []  # type: ignore[attr-defined]
    assert doctor_errors == []
