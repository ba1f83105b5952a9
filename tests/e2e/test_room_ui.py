"""The consult room as a person sees it: layouts on a phone and a laptop, camera-off
initials, the host's waiting room (knock badge, deny, admit all), remove with and without
a ban, and the server's recording policy; real Chromium, the real server and SFU.

Screenshots of each state are kept in the test's tmp dir (``*.png``).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from api.edge_config import EdgeConfig
from media.sfu import Sfu
from signaling.config import CoreConfig
from teleconsult.app import build_server
from teleconsult.config import Config, DataSection
from tests.e2e.conftest import SECRET, WEB_DIR, Consult
from tests.e2e.pages import assert_sees_and_hears
from tests.web.browser import chromium, new_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Controls whose boxes must not overlap one another (visible ones only).
CONTROLS = "#controls button, .tile-more, #enable-sound, .tile.self, .tile.remote:not(.main)"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


@asynccontextmanager
async def policy_consult(data_dir: Path, policy: str) -> AsyncIterator[Consult]:
    """The server as ``serve`` assembles it, with ``[core] recording_policy = policy``."""
    config = Config(
        server=EdgeConfig(port=0),
        data=DataSection(data_dir=data_dir, secret=SECRET, web_dir=WEB_DIR),
        core=CoreConfig(recording_policy=policy),  # type: ignore[arg-type]
    )
    server = build_server(config)
    assert isinstance(server.media, Sfu)
    await server.start()
    try:
        yield Consult(server, server.media)
    finally:
        await server.close()


async def overlaps(page: Page, selector: str = CONTROLS) -> list[tuple[str, str]]:
    """Pairs of visible controls (``selector``) whose bounding boxes intersect (a tile's
    own buttons are inside the tile and not counted against it)."""
    pairs: list[tuple[str, str]] = await page.evaluate(
        """(selector) => {
            const nodes = [...document.querySelectorAll(selector)].filter((n) => {
                const r = n.getBoundingClientRect();
                return r.width > 0 && r.height > 0 && getComputedStyle(n).visibility !== 'hidden';
            });
            const name = (n) => n.id || n.className || n.tagName;
            const out = [];
            for (let i = 0; i < nodes.length; i += 1) {
                for (let j = i + 1; j < nodes.length; j += 1) {
                    const a = nodes[i], b = nodes[j];
                    if (a.contains(b) || b.contains(a)) continue;
                    const p = a.getBoundingClientRect(), q = b.getBoundingClientRect();
                    if (p.left < q.right - 1 && q.left < p.right - 1
                        && p.top < q.bottom - 1 && q.top < p.bottom - 1) {
                        out.push([name(a), name(b)]);
                    }
                }
            }
            return out;
        }""",
        selector,
    )
    return pairs


async def video_share(page: Page, identity: str) -> float:
    """The share of the viewport covered by ``identity``'s video element."""
    share: float = await page.evaluate(
        """(identity) => {
            const r = document.querySelector(`video[data-identity="${identity}"]`)
                .getBoundingClientRect();
            const w = Math.min(r.right, innerWidth) - Math.max(r.left, 0);
            const h = Math.min(r.bottom, innerHeight) - Math.max(r.top, 0);
            return Math.max(0, w) * Math.max(0, h) / (innerWidth * innerHeight);
        }""",
        identity,
    )
    return share


async def pixel(page: Page, selector: str, y_fraction: float = 0.5) -> tuple[int, int, int]:
    """The colour at ``selector``'s horizontal centre, ``y_fraction`` down its box, from a
    screenshot of the page."""
    box = await page.locator(selector).bounding_box()
    assert box is not None
    png = await page.screenshot(
        clip={
            "x": box["x"] + box["width"] / 2 - 2,
            "y": box["y"] + box["height"] * y_fraction - 2,
            "width": 4,
            "height": 4,
        }
    )
    rgb: list[int] = await page.evaluate(
        """async (b64) => {
            const img = new Image();
            img.src = 'data:image/png;base64,' + b64;
            await img.decode();
            const c = new OffscreenCanvas(img.width, img.height);
            const g = c.getContext('2d');
            g.drawImage(img, 0, 0);
            const d = g.getImageData(1, 1, 1, 1).data;
            return [d[0], d[1], d[2]];
        }""",
        base64.b64encode(png).decode(),
    )
    return rgb[0], rgb[1], rgb[2]


async def test_phone_speaker_view_fills_the_screen_and_camera_off_shows_initials(
    consult: Consult, browser: Browser, tmp_path: Path
) -> None:
    """On a 390x844 phone the remote video covers >= 60 % of the screen with the controls
    over it, none overlapping; a camera turned off shows initials; chat is a drawer with
    an unread badge."""
    laptop = await new_page(browser, width=1366, height=768)
    phone = await new_page(browser, width=390, height=844)
    await laptop.goto(consult.join_url("dr-zhang") + "&title=Chest%20pain%20consult")
    await phone.goto(consult.join_url("dr-li"))
    await assert_sees_and_hears(phone, "dr-zhang")
    await assert_sees_and_hears(laptop, "dr-li")
    assert await video_share(phone, "dr-zhang") >= 0.60
    assert await video_share(laptop, "dr-li") >= 0.45
    assert await overlaps(phone) == []
    assert await overlaps(laptop) == []
    assert await laptop.locator("#room-title").inner_text() == "Chest pain consult"
    assert await laptop.locator("#count").inner_text() == "2 in the consult"
    await phone.screenshot(path=tmp_path / "phone-speaker.png")
    await laptop.screenshot(path=tmp_path / "laptop-speaker.png")

    # The laptop turns its camera off: the phone shows initials, not a frozen frame.
    await laptop.click("#toggle-video")
    assert await laptop.get_attribute("#toggle-video", "aria-pressed") == "true"
    assert await laptop.get_attribute("#toggle-video", "aria-label") == "Turn camera on"
    tile = ".tile.remote[data-participant]"
    await phone.wait_for_selector(f"{tile}[data-camera='off'] .avatar .initials")
    assert await phone.locator(f"{tile} .initials").inner_text() == "DZ"
    assert await phone.locator(f"{tile} .state-icon.camOff").get_attribute("aria-label") == (
        "Dr Zhang's camera is off"
    )
    # The initials disc is drawn in its colour (#4a6fa5) where the video was (no green
    # frame of the fake camera left), its letters in white at its centre.
    disc = await pixel(phone, f"{tile} .avatar .initials", 0.15)
    for got, want in zip(disc, (0x4A, 0x6F, 0xA5), strict=True):
        assert abs(got - want) < 40, disc
    letters = await pixel(phone, f"{tile} .avatar .initials")
    assert min(letters) > 200, letters
    await phone.screenshot(path=tmp_path / "phone-camera-off.png")

    # Chat: a message while the drawer is closed raises the unread badge; opening clears it.
    await laptop.click("#toggle-chat")
    await laptop.fill("#chat-text", "ECG shows ST elevation in V2-V4")
    await laptop.press("#chat-text", "Enter")
    await phone.wait_for_selector("#unread:not([hidden])")
    assert await phone.locator("#unread").inner_text() == "1"
    await phone.screenshot(path=tmp_path / "phone-unread.png")
    await phone.click("#toggle-chat")
    assert await phone.locator("#unread").is_hidden()
    assert "ST elevation" in await phone.locator("#chat-log").inner_text()
    assert await overlaps(phone) == []
    await phone.screenshot(path=tmp_path / "phone-chat-drawer.png")
    await laptop.screenshot(path=tmp_path / "laptop-chat.png")

    # Gallery and pin on the laptop.
    await laptop.click("#toggle-layout")
    assert await laptop.get_attribute("#stage", "data-layout") == "gallery"
    await laptop.click("#toggle-layout")
    assert await laptop.get_attribute("#stage", "data-layout") == "speaker"


async def test_host_knock_deny_admit_all_and_remove_without_ban(
    consult: Consult, browser: Browser, tmp_path: Path
) -> None:
    """The host sees a knock badge when someone waits (heading only then), denies one with a
    message, admits the rest at once, and removes one without a ban, who may rejoin."""
    host = await new_page(browser, width=1366, height=768)
    await host.goto(consult.join_url("dr-host"))
    await host.wait_for_function("() => window.tc.screen === 'room'")
    await host.click("#toggle-people")
    assert await host.locator("#waiting-section").is_hidden()
    await host.screenshot(path=tmp_path / "host-nobody-waiting.png")

    guests = {}
    for identity in ("dr-a", "dr-b", "dr-c"):
        guests[identity] = await new_page(browser)
        await guests[identity].goto(consult.join_url(identity, moderator=False))
        await guests[identity].wait_for_function("() => window.tc.screen === 'waiting'")
    await host.wait_for_function("() => document.getElementById('knock').textContent === '3'")
    assert await host.locator("#waiting-section").is_visible()
    assert await host.evaluate("() => window.tc.knocks") == 3
    await host.screenshot(path=tmp_path / "host-three-waiting.png")

    deny = host.locator("#waiting-list li", has_text="Dr A").locator("button.deny")
    await deny.click()
    await host.fill("#deny-message", "Please join at 14:00")
    await host.click("#deny-send")
    await guests["dr-a"].wait_for_function("() => window.tc.screen === 'ended'")
    assert "Please join at 14:00" in await guests["dr-a"].locator("#ended-text").inner_text()
    await guests["dr-a"].screenshot(path=tmp_path / "guest-denied.png")

    await host.click("#admit-all")
    for identity in ("dr-b", "dr-c"):
        await guests[identity].wait_for_function("() => window.tc.screen === 'room'")
    await host.wait_for_selector("#knock[hidden]", state="attached")
    assert await host.locator("#waiting-section").is_hidden()
    await host.wait_for_function(
        "() => document.getElementById('count').textContent === '3 in the consult'"
    )

    # Remove asks first; "Remove" (no ban) ends dr-c's presence; dr-c rejoins.
    tile = host.locator(".tile.remote", has=host.locator("video[data-identity='dr-c']"))
    await tile.locator(".tile-more").click()
    await tile.locator("[data-action='remove']").click()
    assert await host.locator("#remove-dialog").is_visible()
    await host.screenshot(path=tmp_path / "host-remove-confirm.png")
    await host.click("#remove-only")
    await guests["dr-c"].wait_for_function("() => window.tc.screen === 'ended'")
    await guests["dr-c"].click("#rejoin")
    await guests["dr-c"].wait_for_function("() => !document.getElementById('join').disabled")
    await guests["dr-c"].click("#join")
    await guests["dr-c"].wait_for_function("() => window.tc.screen === 'waiting'")
    await host.wait_for_function("() => document.getElementById('knock').textContent === '1'")


async def test_recording_required_is_said_and_a_stop_is_refused(
    tmp_path: Path, browser: Browser
) -> None:
    """Under recording_policy required the waiting screen and the room say the consult is
    recorded, and the host's stop is refused by the server (the room stays recorded)."""
    async with policy_consult(tmp_path / "var", "required") as consult:
        host = await new_page(browser, width=1366, height=768)
        await host.goto(consult.join_url("dr-host"))
        await host.wait_for_function("() => window.tc.recording === true", timeout=20000)
        assert await host.locator("#rec").is_visible()
        guest = await new_page(browser)
        await guest.goto(consult.join_url("dr-guest", moderator=False))
        await guest.wait_for_function("() => window.tc.screen === 'waiting'")
        assert "recorded" in await guest.locator("#waiting-rec").inner_text()
        await guest.screenshot(path=tmp_path / "waiting-recorded.png")
        # The button is disabled; a stop sent anyway is refused by the server.
        await host.click("#toggle-people")
        assert await host.locator("#toggle-recording").is_disabled()
        await host.evaluate("() => window.tc.signaling.send({type: 'set_recording', on: false})")
        await host.wait_for_function(
            "() => window.tc.notices.some((n) => n.includes('cannot be stopped'))"
        )
        assert await host.evaluate("() => window.tc.recording") is True
        assert consult.sfu.recording("consult") is not None
        await host.screenshot(path=tmp_path / "host-recording-required.png")
