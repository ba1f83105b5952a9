"""Truthful media in the consult room: autoplay refusals, sound after a resume, the active
speaker by audio level, raised hands, the lobby's checks and devices, and audio-only
mode lowering what a participant receives; real Chromium, the real server and SFU.

Screenshots of each state are kept in the test's tmp dir (``*.png``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from sessions.tokens import mint_token
from tests.e2e.conftest import SECRET, Consult
from tests.e2e.pages import assert_sees_and_hears
from tests.e2e.test_room_ui import overlaps
from tests.web.browser import CHROMIUM, CHROMIUM_ARGS, chromium, new_page, require_chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AUDIO_ONLY_MAX_KBPS = 64.0


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


@asynccontextmanager
async def chromium_with(args: list[str]) -> AsyncIterator[Browser]:
    """The system Chromium launched with ``args`` instead of the usual ones."""
    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield browser
        finally:
            await browser.close()


def strict_autoplay_chromium() -> AbstractAsyncContextManager[Browser]:
    """Chromium that refuses sound without a user gesture (as a browser out of the box),
    on a computer with no camera or microphone: Chrome lets a page that captures, or that
    answered a permission prompt, play sound, so with either the refusal would be a race."""
    fake_devices = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")
    args = [
        a for a in CHROMIUM_ARGS if not a.startswith("--autoplay-policy") and a not in fake_devices
    ]
    return chromium_with([*args, "--autoplay-policy=document-user-activation-required"])


def url(consult: Consult, identity: str, *, size: str = "w=320&h=180") -> str:
    """A join URL for ``identity`` (moderator) with the camera size ``size``."""
    token = consult.token(identity, moderator=True)
    return f"{consult.server.url}/join?token={token}&autojoin=1&lang=en&{size}&fps=15"


def claims_token(*, now_s: float, ttl_s: float) -> str:
    """A moderator's token for Dr Late minted at ``now_s``, valid ``ttl_s`` seconds."""
    return mint_token(
        SECRET,
        identity="dr-late",
        name="Dr Late",
        role="expert",
        room="consult",
        permissions=frozenset({"publish", "subscribe", "moderate"}),
        now_s=now_s,
        ttl_s=ttl_s,
    )


async def test_autoplay_refusal_shows_one_enable_sound_control(
    consult: Consult, tmp_path: Path
) -> None:
    """Where the browser refuses sound (NotAllowedError), the picture plays muted and one
    header control enables sound, covering no other control; after it, sound is on."""
    async with chromium() as relaxed, contextlib.AsyncExitStack() as stack:
        other = await new_page(relaxed)
        await other.goto(consult.join_url("dr-b"))
        # Chrome judges each play(): a stream whose first play() came before its audio was
        # heard may be let play with sound (and the browser then lets the site play sound).
        # Either way the page must say what the browser did; a refusal is what this test is
        # about, so a fresh browser is started until one refuses.
        for _attempt in range(6):
            strict = await stack.enter_async_context(strict_autoplay_chromium())
            page = await new_page(strict, width=1366, height=768)
            await page.goto(consult.join_url("dr-a"))
            outcome = await page.wait_for_function(
                """() => { const v = document.querySelector('video[data-identity="dr-b"]');
                    if (window.tc.soundBlocked) return 'refused';
                    return v && v.videoWidth > 0 && !v.muted && !v.paused
                        && v.currentTime > 1 ? 'allowed' : false; }""",
                timeout=30000,
            )
            if await outcome.json_value() == "refused":
                break
            assert await page.locator("#enable-sound").is_hidden()  # sound plays: no control
            await page.context.close()
        else:
            pytest.fail("the browser let every page play sound")
        await page.wait_for_function(
            "() => { const v = document.querySelector('video[data-identity=\"dr-b\"]');"
            " return v && v.videoWidth > 0 && v.muted; }",
            timeout=30000,
        )
        assert await page.locator("#enable-sound").count() == 1
        assert await page.locator("#enable-sound").is_visible()
        assert await overlaps(page) == []
        await page.screenshot(path=tmp_path / "enable-sound.png")
        await page.click("#enable-sound")
        await page.wait_for_function(
            "() => !document.querySelector('video[data-identity=\"dr-b\"]').muted"
        )
        assert await page.locator("#enable-sound").is_hidden()


async def test_sound_stays_on_after_a_resume(consult: Consult, browser: Browser) -> None:
    """After a dropped connection and a resume, remote video is not muted and no "enable
    sound" control appears (a play() interrupted by the new stream is not a refusal)."""
    a = await new_page(browser)
    b = await new_page(browser)
    await a.goto(consult.join_url("dr-a"))
    await b.goto(consult.join_url("dr-b"))
    await assert_sees_and_hears(b, "dr-a")
    for _ in range(2):
        await b.evaluate("() => { window.before = window.tc.me; window.tc.signaling.drop(); }")
        await b.wait_for_function(
            "() => window.tc.me !== window.before && window.tc.me.resumed === true",
            timeout=20000,
        )
        await assert_sees_and_hears(b, "dr-a")
    assert (
        await b.evaluate("() => document.querySelector('video[data-identity=\"dr-a\"]').muted")
        is False
    )
    assert await b.locator("#enable-sound").is_hidden()


async def test_active_speaker_is_shown_large(
    consult: Consult, browser: Browser, tmp_path: Path
) -> None:
    """In speaker view the one who speaks (audio level) gets the large tile: when A mutes
    and B speaks, C shows B large; when B mutes and A speaks, C shows A large."""
    pages = {}
    for identity in ("dr-a", "dr-b", "dr-c"):
        pages[identity] = await new_page(browser, width=1366, height=768)
        await pages[identity].goto(consult.join_url(identity))
    c = pages["dr-c"]
    for identity in ("dr-a", "dr-b"):
        await assert_sees_and_hears(c, identity)
    main = "() => document.querySelector('.tile.remote.main video')?.dataset.identity"
    await pages["dr-a"].click("#toggle-audio")
    await c.wait_for_function(f"() => ({main})() === 'dr-b'", timeout=20000)
    await c.screenshot(path=tmp_path / "speaker-b.png")
    await pages["dr-b"].click("#toggle-audio")
    await pages["dr-a"].click("#toggle-audio")
    await c.wait_for_function(f"() => ({main})() === 'dr-a'", timeout=20000)
    await c.screenshot(path=tmp_path / "speaker-a.png")
    # Pinning overrides the speaker.
    tile_b = c.locator(".tile.remote", has=c.locator("video[data-identity='dr-b']"))
    await tile_b.locator(".tile-more").click()
    await tile_b.locator("[data-action='pin']").click()
    await c.wait_for_function(f"() => ({main})() === 'dr-b'")
    assert await overlaps(c) == []


async def test_raised_hand_is_seen_by_others(consult: Consult, browser: Browser) -> None:
    """A raised hand shows on the others' tile as an icon with a text alternative."""
    a = await new_page(browser)
    b = await new_page(browser)
    await a.goto(consult.join_url("dr-a"))
    await b.goto(consult.join_url("dr-b"))
    await assert_sees_and_hears(a, "dr-b")
    await b.click("#toggle-hand")
    await b.wait_for_function(
        "() => document.getElementById('toggle-hand').getAttribute('aria-pressed') === 'true'"
    )
    hand = a.locator(".state-icon.hand")
    await hand.wait_for()
    assert await hand.get_attribute("aria-label") == "Dr B raised their hand"
    await b.click("#toggle-hand")
    await hand.wait_for(state="detached")


async def test_lobby_checks_the_token_before_the_camera(
    consult: Consult, browser: Browser, tmp_path: Path
) -> None:
    """An expired invitation gets one clear message and the camera never opens; a valid one
    shows the preview, both device lists, a moving level meter and working toggles."""
    page = await new_page(browser)
    await page.add_init_script(
        "window.gumCalls = 0; const g = navigator.mediaDevices.getUserMedia"
        ".bind(navigator.mediaDevices); navigator.mediaDevices.getUserMedia ="
        " (c) => { window.gumCalls += 1; return g(c); };"
    )
    expired = claims_token(now_s=time.time() - 3600, ttl_s=60)
    await page.goto(f"{consult.server.url}/join?token={expired}&lang=en")
    await page.wait_for_selector("#lobby-error:not([hidden])")
    assert await page.locator("#lobby-error").inner_text() == "This invitation has expired."
    assert await page.locator(".error:visible").count() == 1
    assert await page.evaluate("() => window.gumCalls") == 0
    await page.screenshot(path=tmp_path / "lobby-expired.png")

    await page.goto(
        f"{consult.server.url}/join?token={consult.token('dr-a', moderator=True)}&lang=en"
    )
    await page.wait_for_function("() => !document.getElementById('join').disabled")
    assert await page.evaluate("() => window.gumCalls") == 1
    assert await page.locator("#camera-select option").count() >= 1
    assert await page.locator("#mic-select option").count() >= 1
    await page.wait_for_function(
        "() => document.getElementById('level').value > 0.01", timeout=10000
    )
    await page.click("#preview-video")
    assert await page.get_attribute("#preview-video", "aria-pressed") == "true"
    assert await page.locator("#preview-off .initials").inner_text() == "DA"
    await page.screenshot(path=tmp_path / "lobby-camera-off.png")
    await page.click("#preview-video")
    assert await page.locator("#preview-off").is_hidden()


async def test_audio_only_lowers_the_received_bitrate(
    consult: Consult, browser: Browser, tmp_path: Path
) -> None:
    """Audio only: what a participant receives drops below 64 kbit/s (audio only) from
    above it (video), on the same connection (renegotiated, never reconnected), and sound
    keeps coming while no video packet does; the other side sees initials; switching
    back brings the video back, again without a reconnect."""
    a = await new_page(browser)
    b = await new_page(browser)
    size = "w=640&h=360"
    await a.goto(url(consult, "dr-a", size=size))
    await b.goto(url(consult, "dr-b", size=size))
    await assert_sees_and_hears(a, "dr-b")
    await assert_sees_and_hears(b, "dr-a")
    await a.wait_for_function(
        f"() => window.tc.receivedKbps > {AUDIO_ONLY_MAX_KBPS}", timeout=20000
    )
    before = await a.evaluate("() => window.tc.receivedKbps")
    await a.click("#toggle-audio-only")
    assert await a.get_attribute("#toggle-audio-only", "aria-pressed") == "true"
    assert await a.get_attribute("#toggle-audio-only", "aria-label") == "Video on"
    # Two successive 2-second windows under the limit.
    await a.wait_for_function(
        f"""() => {{
            window.lowSamples = window.lowSamples || [];
            const k = window.tc.receivedKbps;
            if (k > 0 && window.lowSamples.at(-1) !== k) window.lowSamples.push(k);
            const last = window.lowSamples.slice(-2);
            return last.length === 2 && last.every((x) => x < {AUDIO_ONLY_MAX_KBPS});
        }}""",
        polling=500,
        timeout=30000,
    )
    after = await a.evaluate("() => window.tc.receivedKbps")
    assert before > AUDIO_ONLY_MAX_KBPS > after, (before, after)
    # Sound keeps coming (100 more packets), and not one more video packet.
    video_packets = await a.evaluate("() => window.tc.inbound.video.packets")
    audio_packets = await a.evaluate("() => window.tc.inbound.audio.packets")
    await a.wait_for_function(f"() => window.tc.inbound.audio.packets > {audio_packets + 100}")
    assert await a.evaluate("() => window.tc.inbound.video.packets") == video_packets
    assert not await a.evaluate("() => window.tc.me.resumed")  # no reconnect
    await b.wait_for_selector(".tile.remote[data-camera='off'] .initials")
    assert await a.locator(".tile.remote[data-camera='off'] .initials").inner_text() == "DB"
    await a.screenshot(path=tmp_path / "audio-only-a.png")
    await b.screenshot(path=tmp_path / "audio-only-b.png")
    print(f"received before {before:.0f} kbit/s, audio only {after:.0f} kbit/s")
    await a.click("#toggle-audio-only")
    await assert_sees_and_hears(a, "dr-b")
    await b.wait_for_selector(".tile.remote[data-camera='on']")
    frames = await a.evaluate("() => window.tc.inbound.video.frames")
    await a.wait_for_function(
        f"() => window.tc.inbound.video.frames > {frames + 30}", timeout=20000
    )
    assert not await a.evaluate("() => window.tc.me.resumed")
