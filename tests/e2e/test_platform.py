"""The platform in real Chromium, on the server exactly as ``teleconsult serve`` builds it
(real SFU, SQL store, ECG service): the first admin made by ``teleconsult setup``, the
directory built in the admin page, people logging in in their own browsers, a
registered cart streaming, viewing rights from institutions, a removal that ends every
connection of the removed person, and a revoked cart's stream closing."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import Browser, Page

from api.edge import EdgeConfig
from fixtures.make_fixtures import synthetic12
from teleconsult.app import Assembly, assemble
from teleconsult.config import Config, DataSection
from teleconsult.device_cmd import SimulatedRecord, SimulationFailed, simulate
from tests.consults.test_service_world import FAST_POLICY
from tests.e2e.test_admin import create_institution, create_person, log_in
from tests.web.browser import chromium, new_page

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
WEB_DIR = REPO / "web"
ADMIN_PASSWORD = "deployment passphrase 1"
PASSWORD = "a long passphrase"  # tests.e2e.test_admin.create_person's


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


async def set_up(data: Path) -> Config:
    """``teleconsult setup`` makes the first admin ``root`` in a new data dir; the
    configuration of a server on it (a free loopback port, this checkout's pages)."""
    setup = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "teleconsult", "setup", "--admin", "root", "--password-stdin",
        "--data-dir", str(data), stdin=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    await setup.communicate((ADMIN_PASSWORD + "\n").encode())
    assert setup.returncode == 0
    return Config(
        server=EdgeConfig(port=0),
        data=DataSection(data_dir=data, web_dir=WEB_DIR),
        accounts=FAST_POLICY,  # argon2 at its cheapest: tests.teleconsult.test_platform_server
    )


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Assembly]:
    """A new data dir whose first admin ``root`` was made by ``teleconsult setup``, and
    the server on it (a free loopback port)."""
    assembly = assemble(await set_up(tmp_path / "var"))
    await assembly.server.start()
    try:
        yield assembly
    finally:
        await assembly.server.close()


def looped(seconds: float) -> SimulatedRecord:
    """The 10 s synthetic 12-lead fixture repeated to last ``seconds``."""
    record = SimulatedRecord.read(str(synthetic12()))
    times = int(np.ceil(seconds * record.fs_hz / len(record.samples)))
    return dataclasses.replace(record, samples=np.tile(record.samples, (times, 1)))


async def person(browser: Browser, base: str, username: str) -> Page:
    """A browser of its own, logged in, on the home page."""
    page = await new_page(browser)
    await log_in(page, base, username, PASSWORD)
    await page.wait_for_url(f"{base}/?lang=en")
    await page.locator("body[data-ready=true]").wait_for()
    return page


async def open_ecg(page: Page) -> None:
    await page.click("#link-ecg")
    await page.wait_for_function(
        "() => window.ecg && document.getElementById('conn').dataset.state === 'open'"
    )


async def listed(page: Page) -> list[str]:
    streams: list[str] = await page.evaluate("() => window.ecg.streams.map((s) => s.stream)")
    return streams


async def join_room(page: Page, room: str) -> None:
    """From the home page: the server mints the token, the lobby opens; Join."""
    await page.fill("#room", room)
    await page.click("#join")
    await page.wait_for_url("**/join?token=**")
    await page.wait_for_function("() => !document.getElementById('join').disabled")
    await page.click("#join")


async def test_the_platform_story(served: Assembly, browser: Browser, tmp_path: Path) -> None:
    base = served.server.url
    admin = await new_page(browser, width=1366, height=900)
    await log_in(admin, base, "root", ADMIN_PASSWORD)
    await admin.wait_for_url("**/static/admin.html**")
    await admin.locator("body[data-ready=true]").wait_for()
    await create_institution(admin, "county-1", "某县人民医院", "county", "")
    await create_institution(admin, "town-1", "某镇卫生院", "township", "county-1")
    await create_institution(admin, "county-2", "另一县医院", "county", "")
    await create_institution(admin, "town-2", "另一镇卫生院", "township", "county-2")
    await create_person(admin, "li.doctor", "李医生", "town-1", "doctor", title="主治医师")
    await create_person(admin, "zhao.doctor", "赵医生", "town-2", "doctor")
    await create_person(
        admin, "wang.expert", "王主任", "county-1", "expert", specialty="心内科", title="主任医师"
    )
    await create_person(admin, "qian.auditor", "钱审计", "county-1", "auditor")
    await admin.fill("#device-id", "cart-1")
    await admin.fill("#device-name", "十二导联心电图机")
    await admin.select_option("#device-institution", "town-1")
    await admin.click("#device-form button[type=submit]")
    await admin.locator("#device-credential").wait_for()
    credential = (await admin.text_content("#device-credential-value") or "").strip()
    assert credential.startswith("tcd_")
    await admin.screenshot(path=tmp_path / "admin-directory.png", full_page=True)

    # The cart streams with its credential (a real-time pace: it is live meanwhile).
    started: asyncio.Queue[uuid.UUID] = asyncio.Queue()
    cart = asyncio.create_task(
        simulate(
            looped(120.0),
            url=base.replace("http", "ws") + "/device", token=credential, device="cart-1",
            speed=1.0, on_started=started.put_nowait,
        )
    )  # fmt: skip
    stream = str(await asyncio.wait_for(started.get(), 10))

    # Who sees it: the county above the clinic, the clinic's doctor; not another county's.
    expert = await person(browser, base, "wang.expert")
    doctor = await person(browser, base, "li.doctor")
    other = await person(browser, base, "zhao.doctor")
    for page in (expert, doctor, other):
        await open_ecg(page)
    # The directory snapshot the rights read refreshes every few seconds: wait for it.
    await expert.wait_for_function(
        "(id) => window.ecg.streams.some((s) => s.stream === id)", arg=stream, timeout=20000
    )
    await doctor.wait_for_function(
        "(id) => window.ecg.streams.some((s) => s.stream === id)", arg=stream, timeout=20000
    )
    await expert.click(f"button[data-stream='{stream}']")
    # The expert's viewer draws the live trace and shows the heart rate.
    await expert.wait_for_function(
        "() => typeof window.ecg.hr === 'number' && window.ecg.beatsDrawn >= 3", timeout=20000
    )
    await expert.screenshot(path=tmp_path / "expert-ecg.png")
    # Another county's doctor: a fresh list since the others saw it is still empty.
    lists = await other.evaluate("() => window.ecg.lists")
    await other.wait_for_function("(n) => window.ecg.lists > n", arg=lists, timeout=10000)
    assert await listed(other) == []
    assert await other.locator("#no-streams").is_visible()

    # A room of people's own naming (a consult's room, consult-<id>, follows its consult
    # instead): the expert joins and moderates, the doctor waits and is admitted.
    expert_room = await person(browser, base, "wang.expert")
    doctor_room = await person(browser, base, "li.doctor")
    await join_room(expert_room, "mdt-1")
    await expert_room.wait_for_function("() => window.tc.screen === 'room'")
    await join_room(doctor_room, "mdt-1")
    await doctor_room.wait_for_function("() => window.tc.screen === 'waiting'")
    await expert_room.click("#toggle-people")
    await expert_room.click("#admit-all")
    await doctor_room.wait_for_function("() => window.tc.screen === 'room'", timeout=20000)
    # The doctor's second connection to the room: a viewer with the same token.
    await doctor_room.evaluate(
        """() => {
            const token = new URLSearchParams(location.search).get('token');
            const ws = new WebSocket(`ws://${location.host}/ws`);
            window.watchClosed = new Promise((done) => { ws.onclose = (e) => done(e.code); });
            ws.onopen = () => ws.send(JSON.stringify({type: 'watch', token}));
            window.watching = new Promise((done) => {
                ws.onmessage = (e) => { if (JSON.parse(e.data).type === 'watching') done(true); };
            });
        }"""
    )
    assert await doctor_room.evaluate("() => window.watching") is True
    # Remove and ban: every connection of the doctor in the room closes.
    tile = expert_room.locator(
        ".tile.remote", has=expert_room.locator("video[data-identity='li.doctor']")
    )
    await tile.locator(".tile-more").click()
    await tile.locator("[data-action='remove']").click()
    await expert_room.click("#remove-ban")
    await doctor_room.wait_for_function("() => window.tc.screen === 'ended'")
    assert await doctor_room.evaluate("() => window.watchClosed") == 4403
    await doctor_room.screenshot(path=tmp_path / "doctor-removed.png")
    # Banned: the identity, not the token: a fresh token of a new session waits no more.
    again = await person(browser, base, "li.doctor")
    await join_room(again, "mdt-1")
    await again.wait_for_function("() => window.tc.screen === 'ended'")

    # The admin revokes the cart: its stream closes and it is refused from then on.
    await admin.locator("#devices tr", has_text="cart-1").locator("button").click()
    await admin.locator("#devices tr", has_text="revoked").wait_for()
    with pytest.raises(SimulationFailed, match="refused"):
        await asyncio.wait_for(cart, 30)

    # The county's auditor finds all of it on the trail, from the home page.
    auditor = await person(browser, base, "qian.auditor")
    await auditor.click("#link-audit a")
    await auditor.wait_for_url("**/static/audit.html**")
    await auditor.locator("body[data-ready=true]").wait_for()
    await auditor.fill("#f-patient", "SIMULATED")
    await auditor.click("#search")
    await auditor.locator("#rows tr[data-action='ecg.viewed']").first.wait_for()
    actions = set(await auditor.evaluate("() => window.audit.rows.map((r) => r.action)"))
    assert {"stream.started", "ecg.viewed"} <= actions
    await auditor.screenshot(path=tmp_path / "auditor.png", full_page=True)


async def test_a_request_reaches_the_coordinator_s_page_live(
    served: Assembly, browser: Browser, tmp_path: Path
) -> None:
    """The county coordinator has the consult page open; a township doctor's request
    appears in the page's notice list at once (pushed over /ws, not polled), and the
    queue counter follows."""
    import httpx

    base = served.server.url
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30) as http:
        root = (
            await http.post("/auth/login", json={"username": "root", "password": ADMIN_PASSWORD})
        ).json()["token"]
        auth = {"authorization": f"Bearer {root}"}
        for code, level, parent in (
            ("county-1", "county", None),
            ("town-1", "township", "county-1"),
        ):
            body = {"code": code, "name": code, "level": level, "parent": parent}
            assert (await http.post("/institutions", json=body, headers=auth)).status_code == 201
        for username, institution, role in (
            ("sun.coordinator", "county-1", "coordinator"),
            ("li.doctor", "town-1", "doctor"),
        ):
            body = {"username": username, "display_name": username, "password": PASSWORD,
                    "roles": [role], "institution": institution}  # fmt: skip
            assert (await http.post("/people", json=body, headers=auth)).status_code == 201
        coordinator = await person(browser, base, "sun.coordinator")
        await coordinator.goto(f"{base}/consults?lang=en")
        await coordinator.locator("body[data-ready=true]").wait_for()
        doctor = (
            await http.post("/auth/login", json={"username": "li.doctor", "password": PASSWORD})
        ).json()["token"]
        request = {
            "patient": {"name": "张三", "sex": "male", "birth_date": "1956-03-02",
                        "record_number": "MZ-0001"},
            "reason": "胸痛", "purpose": "明确诊断", "summary": "ST 段抬高",
            "specialty": "心内科", "priority": "urgent", "mode": "realtime",
            "consent": {"kind": "written", "recorded_by": "li.doctor",
                        "time": "2026-12-02T08:00:00Z"},
        }  # fmt: skip
        made = await http.post(
            "/consults", json=request, headers={"authorization": f"Bearer {doctor}"}
        )
        assert made.status_code == 201, made.text
    item = coordinator.locator("#notice-list li[data-topic='consult.submit']")
    await item.wait_for(timeout=10_000)
    assert made.json()["id"] in (await item.inner_text())
    # The worklist on screen takes the new request in without a reload.
    await coordinator.locator("#items li").first.wait_for(timeout=10_000)
    await coordinator.screenshot(path=tmp_path / "coordinator-notice.png")
