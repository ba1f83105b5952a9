"""The consult pages (web/consults.html) in real Chromium over the consult API and the real
SQLite store: a village doctor sends a request with an attachment from the form; the
coordinator sees it to triage and assigns the cardiologist; the expert accepts,
schedules, starts, writes the opinion and signs it with the one-time code; the doctor
sees the signed opinion and its PDF, which verifies; the dashboard draws its charts.
No script error, no refused request of the pages, every string in both languages."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from consults.directory import Role
from consults.lifecycle import ConsultEvent, Mode, Priority
from tests.api.test_consults import Api, api, verify
from tests.consults.test_service_world import PASSWORD
from tests.pg import Database, make_database
from tests.web.browser import chromium, new_page

__all__ = ["api"]

pytestmark = pytest.mark.browser
WEB = Path(__file__).resolve().parents[2] / "web"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def database(tmp_path: Path) -> Database:
    """SQLite only: the store's behaviour on PostgreSQL is test_consults.py's."""
    return make_database("sqlite", tmp_path)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


async def logged_in(
    browser: Browser, stack: Api, username: str, lang: str
) -> tuple[Page, list[str]]:
    """A page of its own context, logged in through the API (cookies shared), on the
    consult pages; the list collects script errors and refused requests."""
    page = await new_page(browser, width=390, height=844)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    body: dict[str, Any] = {"username": username, "password": PASSWORD}
    if username in stack.world.totp_secrets:
        body["totp"] = stack.world.totp(username)
    answer = await page.context.request.post(f"{stack.url}/api/v1/auth/login", data=body)
    assert answer.ok, await answer.text()
    await page.goto(f"{stack.url}/static/consults.html?lang={lang}")
    await page.locator("body[data-ready=true]").wait_for()
    return page, problems


def real(problems: list[str]) -> list[str]:
    """The page's own problems: not the browser's load-failure echo, nor the live-notice
    token that this composition (no room tokens, no /ws) cannot mint: the pages' live
    notices are tested on the whole server (tests/e2e/test_platform.py)."""
    return [
        p
        for p in problems
        if not p.startswith("Failed to load resource") and not p.endswith("/rooms/inbox/token")
    ]


async def test_a_consult_from_request_to_signed_pdf_in_the_browser(
    browser: Browser, api: Api, tmp_path: Path
) -> None:
    """The doctor's form, the coordinator's queue, the expert's steps and signature, the
    doctor's signed opinion and PDF, the expert's referral and the receiving side's
    acceptance, on a phone-sized screen."""
    world = api.world
    doctor, doctor_problems = await logged_in(browser, api, "li.doctor", "zh")
    assert await doctor.text_content("h1") == "远程会诊"
    await doctor.click("#tabs button[data-tab=new]")
    await doctor.fill("#p-name", "张三")
    await doctor.select_option("#p-sex", "male")
    await doctor.fill("#p-birth", "1960-05-01")
    await doctor.fill("#p-record", "MZ-2026-0001")
    await doctor.fill("#r-reason", "胸痛两小时")
    await doctor.fill("#r-purpose", "明确诊断")
    await doctor.fill("#r-summary", "胸骨后压榨样疼痛两小时。")
    await doctor.fill("#r-specialty", "心内科")
    await doctor.select_option("#r-priority", "urgent")
    await doctor.select_option("#c-kind", "written")
    moment = (world.clock.now - timedelta(minutes=30)).astimezone()
    await doctor.fill("#c-time", moment.strftime("%Y-%m-%dT%H:%M"))
    ecg = tmp_path / "ecg.png"
    ecg.write_bytes(PNG)
    await doctor.set_input_files("#n-files", str(ecg))
    await doctor.click("#new-form button[type=submit]")
    await doctor.wait_for_url(re.compile(r".*#consult/[0-9a-f]+$"))
    consult_id = doctor.url.rsplit("/", 1)[-1]
    await doctor.locator("#c-attachments li", has_text="ecg.png").wait_for()

    coordinator, coordinator_problems = await logged_in(browser, api, "zhao.coord", "en")
    await coordinator.locator(f"#items li[data-id='{consult_id}']").click()
    await coordinator.click("#c-actions button[data-event=assign]")
    await coordinator.fill("#step-experts", "wang.expert, chen.expert")
    await coordinator.click("#step-go")
    await coordinator.locator("#c-state", has_text="Assigned").wait_for()

    expert, expert_problems = await logged_in(browser, api, "wang.expert", "en")
    await expert.locator(f"#items li[data-id='{consult_id}']").click()
    await expert.click("#c-actions button[data-event=accept]")
    await expert.locator("#c-state", has_text="Accepted").wait_for()
    await expert.click("#c-actions button[data-event=schedule]")
    start = (world.clock.now + timedelta(hours=1)).astimezone()
    await expert.fill("#step-start", start.strftime("%Y-%m-%dT%H:%M"))
    await expert.click("#step-go")
    await expert.locator("#c-state", has_text="Scheduled").wait_for()
    await expert.click("#c-actions button[data-event=start]")
    await expert.locator("#c-state", has_text="In consult").wait_for()
    await expert.fill("#o-findings", "V1-V4 ST 段抬高")
    await expert.fill("#o-diagnosis", "急性前壁心肌梗死")
    await expert.fill("#o-recommendations", "急诊 PCI")
    await expert.click("#opinion-form button[type=submit]")
    await expert.locator("#notice", has_text="Draft saved").wait_for()
    world.clock.advance(30)
    await expert.click("#c-actions button[data-event=sign]")
    await expert.fill("#step-totp", world.totp("wang.expert"))
    await expert.click("#step-go")
    await expert.locator("#c-state", has_text="Signed").wait_for()
    await expert.screenshot(path=str(tmp_path / "expert-signed.png"), full_page=True)

    await doctor.reload()
    await doctor.locator("#versions .version", has_text="急性前壁心肌梗死").wait_for()
    href = await doctor.get_attribute("#pdf-link", "href")
    assert href is not None
    pdf = await doctor.context.request.get(f"{api.url}{href}")
    assert pdf.ok
    path = tmp_path / "opinion.pdf"
    path.write_bytes(await pdf.body())
    assert verify(path, world=world) == 0
    await doctor.click("#c-actions button[data-event=close]")
    await doctor.locator("#c-state", has_text="已完成").wait_for()

    # The expert refers the patient up to the city; its cardiology accepts.
    start = world.clock.now + timedelta(days=1)
    world.service.publish_slot(world["ma.doctor"], "cardio", start, start + timedelta(hours=1))
    await expert.reload()
    await expert.fill("#refer-institution", "city-1")
    await expert.click("#slots-form button[type=submit]")
    await expert.locator("#refer-form").wait_for()
    await expert.fill("#refer-reason", "急诊 PCI")
    await expert.click("#refer-form button[type=submit]")
    await expert.locator("#notice", has_text="Referral sent").wait_for()
    receiving, receiving_problems = await logged_in(browser, api, "ma.doctor", "zh")
    await receiving.click("#tabs button[data-tab=referrals]")
    await receiving.locator("#referrals li", has_text="county-1").wait_for()
    await receiving.locator("#referrals li button", has_text="接收").click()
    await receiving.locator("#referrals li", has_text="已接收").wait_for()
    assert real(receiving_problems) == []

    for problems in (doctor_problems, coordinator_problems, expert_problems):
        assert real(problems) == []


async def test_the_dashboard_draws_its_charts(browser: Browser, api: Api, tmp_path: Path) -> None:
    """An auditor's statistics: one bar group per clinic, in an SVG, and the CSV link."""
    world = api.world
    world.add_person("gao.auditor", "city-1", Role.AUDITOR)
    world.service.create(world["li.doctor"], world.request())
    world.service.create(world["zhou.doctor"], world.request())
    world.clock.advance(1)
    page, problems = await logged_in(browser, api, "gao.auditor", "en")
    await page.wait_for_url(re.compile(r".*#stats$"))
    await page.locator("#chart-counts rect").first.wait_for()
    await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    labels = await page.locator("#chart-counts text").all_text_contents()
    assert "village-1" in labels
    assert "town-2" in labels
    assert (await page.get_attribute("#csv-link", "href") or "").startswith("/api/v1/stats/")
    # The ECG centre's figures come with the same period (none in this world: no bars).
    ecg_csv = page.locator("#ecg-csv-link[href^='/api/v1/stats/readings/csv']")
    await ecg_csv.wait_for(state="attached")
    await page.locator("#legend-ecg span").nth(5).wait_for()  # drawn once the API answered
    assert await page.locator("#legend-ecg span").count() == 6
    assert real(problems) == []


def test_every_string_is_in_both_languages() -> None:
    """The keys of consults.js's English and Chinese tables are the same, and every key
    the page uses literally (data-c, t("...")) is in them."""
    source = (WEB / "consults.js").read_text(encoding="utf-8")
    html = (WEB / "consults.html").read_text(encoding="utf-8")
    en_block = source.split("  en: {", 1)[1].split("\n  },\n", 1)[0]
    zh_block = source.split("  zh: {", 1)[1].split("\n  },\n", 1)[0]
    key = re.compile(r'^\s+"?([\w.]+)"?:', re.M)
    en, zh = set(key.findall(en_block)), set(key.findall(zh_block))
    assert en == zh
    used = set(re.findall(r'data-cp?="([\w.]+)"', html))
    used |= set(re.findall(r'\bt\("([\w.]+)"', source))
    assert used <= en, sorted(used - en)


async def test_decline_overdue_expiry_and_the_async_path(browser: Browser, api: Api) -> None:
    """The expert declines with a reason (the doctor reads it); past its deadline the
    emergency request leads the coordinator's overdue queue with the badge counting it,
    then expires; an asynchronous consult is reviewed and signed without a room."""
    world = api.world
    service = world.service
    emergency = service.create(
        world["li.doctor"], world.request(priority=Priority.EMERGENCY)
    ).record.consult.id
    service.step(world["zhao.coord"], emergency, ConsultEvent.ASSIGN, experts=["wang.expert"])
    expert, expert_problems = await logged_in(browser, api, "wang.expert", "en")
    await expert.locator(f"#items li[data-id='{emergency}']").click()
    await expert.click("#c-actions button[data-event=decline]")
    await expert.fill("#step-reason", "本周外出，无法会诊")
    await expert.click("#step-go")
    await expert.locator("#c-state", has_text="Declined").wait_for()
    doctor, doctor_problems = await logged_in(browser, api, "li.doctor", "en")
    await doctor.goto(f"{api.url}/static/consults.html?lang=en#consult/{emergency}")
    await doctor.locator("#c-facts dd", has_text="本周外出，无法会诊").wait_for()

    world.clock.advance(11 * 60)
    assert [r.consult.id for r in service.escalate_overdue()] == [emergency]
    coordinator, coordinator_problems = await logged_in(browser, api, "zhao.coord", "en")
    await coordinator.locator("#notices", has_text=re.compile(r"^1$")).wait_for()
    await coordinator.click("#tabs button[data-tab=overdue]")
    await coordinator.locator(f"#items li.overdue[data-id='{emergency}']").wait_for()
    world.clock.advance(20 * 60)
    assert service.expire_due() == 1
    await coordinator.goto(f"{api.url}/static/consults.html?lang=en#consult/{emergency}")
    await coordinator.locator("#c-state", has_text="Expired").wait_for()
    assert await coordinator.locator("#c-actions button").count() == 0

    later = service.create(world["li.doctor"], world.request(mode=Mode.ASYNC)).record.consult.id
    service.step(world["zhao.coord"], later, ConsultEvent.ASSIGN, experts=["wang.expert"])
    await expert.goto(f"{api.url}/static/consults.html?lang=en#consult/{later}")
    await expert.click("#c-actions button[data-event=accept]")
    await expert.locator("#c-state", has_text="Accepted").wait_for()
    assert await expert.locator("#c-actions button[data-event=schedule]").count() == 0
    await expert.click("#c-actions button[data-event=review]")
    await expert.locator("#c-state", has_text="Reporting").wait_for()
    await expert.fill("#o-diagnosis", "窦性心律，正常心电图")
    await expert.click("#opinion-form button[type=submit]")
    await expert.locator("#notice", has_text="Draft saved").wait_for()
    world.clock.advance(30)
    await expert.click("#c-actions button[data-event=sign]")
    await expert.fill("#step-totp", world.totp("wang.expert"))
    await expert.click("#step-go")
    await expert.locator("#c-state", has_text="Signed").wait_for()
    for problems in (expert_problems, doctor_problems, coordinator_problems):
        assert real(problems) == []
