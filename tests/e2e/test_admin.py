"""The admin pages in real Chromium over the real API and SQL store: the admin logs in,
creates a county hospital and a township clinic, a doctor and an expert, and a service
relation to another county's clinic; each person then logs in in a separate browser
context and is who the admin made."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pyotp
import pytest
from playwright.async_api import Browser, Page

from consults.accounts import NewPerson
from consults.directory import Level, Role
from tests.api.test_auth_fixtures import ADMIN_PASSWORD, PASSWORD, Stack, backend, policy, stack
from tests.web.browser import chromium, new_page

__all__ = ["backend", "policy", "stack"]  # fixtures

pytestmark = pytest.mark.browser


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the test."""
    async with chromium() as running:
        yield running


async def log_in(page: Page, base: str, username: str, password: str, lang: str = "en") -> None:
    """Fill and submit the login page."""
    await page.goto(f"{base}/static/login.html?lang={lang}")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#submit")


async def me(page: Page) -> dict[str, Any]:
    """GET /api/v1/me from the page, with its session cookie."""
    answer: dict[str, Any] = await page.evaluate(
        "async () => (await fetch('/api/v1/me', {credentials: 'same-origin'})).json()"
    )
    return answer


async def create_institution(page: Page, code: str, name: str, level: str, parent: str) -> None:
    """Submit the institution form and wait for its row."""
    await page.fill("#inst-code", code)
    await page.fill("#inst-name", name)
    await page.select_option("#inst-level", level)
    await page.select_option("#inst-parent", parent)
    await page.click("#institution-form button[type=submit]")
    await page.locator("#institutions tr", has_text=code).wait_for()


async def create_person(
    page: Page, username: str, name: str, institution: str, role: str, **extra: str
) -> None:
    """Submit the person form and wait for their row."""
    await page.fill("#person-username", username)
    await page.fill("#person-name", name)
    await page.fill("#person-password", PASSWORD)
    await page.select_option("#person-institution", institution)
    await page.check(f"#role-{role}")
    for field, value in extra.items():
        await page.fill(f"#person-{field}", value)
    await page.click("#person-form button[type=submit]")
    await page.locator("#people tr", has_text=username).wait_for()


async def test_admin_builds_the_directory_in_the_browser(browser: Browser, stack: Stack) -> None:
    """Admin creates county, township, doctor and expert; each logs in as made."""
    admin = await new_page(browser)
    console_errors: list[str] = []
    refused: list[str] = []
    admin.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    admin.on("response", lambda r: refused.append(r.url) if r.status >= 400 else None)
    await log_in(admin, stack.url, "root", ADMIN_PASSWORD, lang="zh")
    await admin.wait_for_url("**/static/admin.html**")
    await admin.locator("body[data-ready=true]").wait_for()
    assert await admin.text_content("h1") == "系统管理"
    await create_institution(admin, "county-1", "某县人民医院", "county", "")
    await create_institution(admin, "town-1", "某镇卫生院", "township", "county-1")
    await create_person(admin, "li.doctor", "李医生", "town-1", "doctor", title="主治医师")
    await create_person(
        admin, "wang.expert", "王主任", "county-1", "expert", specialty="心内科", title="主任医师"
    )
    await create_institution(admin, "county-2", "另一县医院", "county", "")
    await create_institution(admin, "town-2", "另一镇卫生院", "township", "county-2")
    await admin.select_option("#rel-provider", "county-1")
    await admin.select_option("#rel-client", "town-2")
    await admin.select_option("#rel-kind", "ecg")
    await admin.click("#relation-form button[type=submit]")
    await admin.locator("#relations tr", has_text="town-2").wait_for()
    bad = await admin.locator("#admin-error").is_visible()
    assert not bad, await admin.text_content("#admin-error")
    # No CSP violation nor script error, no refused request of the page (the browser's
    # own favicon probe, outside the page's responses, logs a load failure: not ours).
    assert refused == []
    assert [e for e in console_errors if not e.startswith("Failed to load resource")] == []
    rows = await admin.locator("#institutions tr").all_text_contents()
    assert any("town-1" in r and "county-1" in r for r in rows)

    for username, institution, role in [
        ("li.doctor", "town-1", "doctor"),
        ("wang.expert", "county-1", "expert"),
    ]:
        page = await new_page(browser)
        await log_in(page, stack.url, username, PASSWORD)
        await page.wait_for_url(f"{stack.url}/?lang=en")
        person = await me(page)
        assert person["username"] == username
        assert person["institution"] == institution
        assert person["roles"] == [role]
        await page.context.close()

    wrong = await new_page(browser)
    await log_in(wrong, stack.url, "li.doctor", "not the password")
    await wrong.locator("#login-error").wait_for()
    assert "wrong" in (await wrong.text_content("#login-error") or "")
    actions = stack.audited()
    assert actions.count("directory.institution_created") == 4
    assert "directory.relation_set" in actions
    assert actions.count("directory.person_created") == 2
    assert "auth.login_failed" in actions


async def test_role_requiring_totp_enrols_then_asks_for_the_code(
    browser: Browser, stack: Stack
) -> None:
    """When experts must use a second factor, an expert's first login shows a new TOTP
    key; the next login asks for the code and lets them in with it."""
    root = stack.stores.directory.person_by_username("root")
    assert root is not None
    stack.directory.create_institution(
        root, code="county-1", name="某县人民医院", level=Level.COUNTY, parent=None
    )
    stack.directory.create_person(
        root,
        NewPerson(
            username="wang.expert",
            display_name="王主任",
            password=PASSWORD,
            roles=frozenset({Role.EXPERT}),
            institution="county-1",
        ),
    )
    stack.directory.set_totp_required_roles(root, frozenset({Role.EXPERT}))
    first = await new_page(browser)
    await log_in(first, stack.url, "wang.expert", PASSWORD)
    await first.locator("#enrol").wait_for()
    secret = (await first.text_content("#totp-secret") or "").strip()
    assert len(secret) >= 16
    await first.context.close()

    second = await new_page(browser)
    await log_in(second, stack.url, "wang.expert", PASSWORD)
    await second.locator("#totp-row").wait_for()
    await second.fill("#totp", pyotp.TOTP(secret).now())
    await second.click("#submit")
    await second.wait_for_url(f"{stack.url}/?lang=en")
    assert (await me(second))["must_enrol_totp"] is False
