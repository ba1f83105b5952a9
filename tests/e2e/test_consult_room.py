"""A real-time consult on the server as ``teleconsult serve`` builds it, in real
Chromium: the township doctor is told live that the county's expert accepted; both join
the consult's room from the consult page (no token to copy): the doctor waits in the
waiting room and the expert, still on the consult page, is told so; the expert joins,
moderates and admits the doctor; someone the consult does not concern
cannot even get a token for the room."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from playwright.async_api import Browser, Page

from teleconsult.app import Assembly
from tests.e2e.test_platform import ADMIN_PASSWORD, PASSWORD, browser, person, served

__all__ = ["browser", "served"]


async def consult_page(browser: Browser, base: str, username: str, consult: str) -> Page:
    page = await person(browser, base, username)
    await page.goto(f"{base}/consults?lang=en#consult/{consult}")
    await page.locator("body[data-ready=true]").wait_for()
    await page.locator("#c-state").wait_for()
    return page


async def test_both_sides_join_the_consult_room_from_the_consult_page(
    served: Assembly, browser: Browser, tmp_path: Path
) -> None:
    base = served.server.url
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30) as http:

        async def login(username: str, password: str = PASSWORD) -> dict[str, str]:
            answer = await http.post(
                "/auth/login", json={"username": username, "password": password}
            )
            assert answer.status_code == 200, answer.text
            return {"authorization": f"Bearer {answer.json()['token']}"}

        root = await login("root", ADMIN_PASSWORD)
        for code, level, parent in (
            ("county-1", "county", None),
            ("town-1", "township", "county-1"),
            ("county-2", "county", None),
        ):
            body = {"code": code, "name": code, "level": level, "parent": parent}
            assert (await http.post("/institutions", json=body, headers=root)).status_code == 201
        for username, institution, role in (
            ("li.doctor", "town-1", "doctor"),
            ("sun.coordinator", "county-1", "coordinator"),
            ("wang.expert", "county-1", "expert"),
            ("zhao.expert", "county-2", "expert"),
        ):
            body = {"username": username, "display_name": username, "password": PASSWORD,
                    "roles": [role], "institution": institution, "specialty": "心内科"}  # fmt: skip
            assert (await http.post("/people", json=body, headers=root)).status_code == 201
        doctor = await login("li.doctor")
        request = {
            "patient": {"name": "张三", "sex": "male", "birth_date": "1956-03-02",
                        "record_number": "MZ-0001"},
            "reason": "胸痛", "purpose": "明确诊断", "summary": "ST 段抬高",
            "specialty": "心内科", "priority": "urgent", "mode": "realtime",
            "consent": {"kind": "written", "recorded_by": "li.doctor",
                        "time": "2026-12-02T08:00:00Z"},
        }  # fmt: skip
        made = await http.post("/consults", json=request, headers=doctor)
        assert made.status_code == 201, made.text
        consult = made.json()["id"]
        coordinator = await login("sun.coordinator")
        step = await http.post(
            f"/consults/{consult}/assign", json={"experts": ["wang.expert"]}, headers=coordinator
        )
        assert step.status_code == 200, step.text

        # The doctor has the consult open when the expert accepts: told at once.
        doctor_page = await consult_page(browser, base, "li.doctor", consult)
        expert = await login("wang.expert")
        assert (await http.post(f"/consults/{consult}/accept", json={}, headers=expert)).is_success
        await doctor_page.locator("#notice-list li[data-topic='consult.accept']").wait_for()
        start = (datetime.now(UTC) + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
        scheduled = await http.post(
            f"/consults/{consult}/schedule", json={"start": start}, headers=expert
        )
        assert scheduled.status_code == 200, scheduled.text

        # An expert of another county: no such consult, so no token for its room.
        outsider = await login("zhao.expert")
        refused = await http.post(f"/rooms/consult-{consult}/token", headers=outsider)
        assert refused.status_code == 404

    # The doctor goes in first and waits; the expert, on the consult page, is told.
    expert_page = await consult_page(browser, base, "wang.expert", consult)
    await doctor_page.reload()
    await doctor_page.locator("#c-join").click()
    await doctor_page.wait_for_url("**/join?token=**")
    await doctor_page.wait_for_function("() => !document.getElementById('join').disabled")
    await doctor_page.click("#join")
    await doctor_page.wait_for_function("() => window.tc.screen === 'waiting'")
    await expert_page.locator("#notice-list li[data-topic='consult.waiting']").wait_for()

    await expert_page.click("#c-join")
    await expert_page.wait_for_url("**/join?token=**")
    await expert_page.wait_for_function("() => !document.getElementById('join').disabled")
    await expert_page.click("#join")
    await expert_page.wait_for_function("() => window.tc.screen === 'room'")
    assert await expert_page.evaluate("() => window.tc.me.permissions.includes('moderate')")
    await expert_page.click("#toggle-people")
    await expert_page.click("#admit-all")
    await doctor_page.wait_for_function("() => window.tc.screen === 'room'", timeout=20_000)
    await expert_page.screenshot(path=tmp_path / "consult-room-expert.png")
