"""The lobby's choices carried into the room, screen sharing, and "end for everyone", as a
person sees them; real Chromium (Debian's, fake camera, microphone and screen), the real
server and SFU.

Chromium's ``--use-fake-device-for-media-stream`` also answers ``getDisplayMedia`` (with
``--use-fake-ui-for-media-stream``, no picker): a 1280×720 "screen" of the same pattern
as the fake camera, with bright green squares in its corners that the camera's picture
does not have; that is how the others' pixels tell the screen from the camera.

Screenshots of each state are kept in the test's tmp dir (``*.png``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from tests.e2e.conftest import Consult
from tests.e2e.pages import assert_sees_and_hears, screen
from tests.e2e.test_room_media import chromium_with
from tests.web.browser import CHROMIUM_ARGS, chromium, new_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The fake screen's bottom-left square is pure bright green; the camera's corner is the
# dark green of its background (0, 136, 0).
CORNER = (0.03, 0.95)
BRIGHT_G = 200
DARK_G = 170

# The green channel at a point of ``identity``'s video frame (fractions of its size),
# drawn from the element on a canvas; null until a frame is decoded. Synchronous, so
# that wait_for_function can poll it.
FRAME_GREEN = """([identity, fx, fy]) => {
    const v = document.querySelector(`video[data-identity="${identity}"]`);
    if (!v || !v.videoWidth) return null;
    const c = document.createElement('canvas');
    c.width = v.videoWidth;
    c.height = v.videoHeight;
    const g = c.getContext('2d');
    g.drawImage(v, 0, 0);
    return g.getImageData(Math.floor(fx * c.width), Math.floor(fy * c.height), 1, 1).data[1];
}"""


SLOW_CAMERA = """{
    const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    let calls = 0;
    let release;
    const third = new Promise((resolve) => (release = resolve));
    navigator.mediaDevices.getUserMedia = async (constraints) => {
        calls += 1;
        const n = calls;
        const stream = await gum(constraints);
        if (n === 2) await third;
        if (n === 3) setTimeout(release, 0);
        return stream;
    };
}"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


async def wait_corner(page: Page, identity: str, *, bright: bool, timeout_s: float = 20) -> None:
    """Wait until ``identity``'s video shows the screen (``bright``) or the camera."""
    test = f"g !== null && g > {BRIGHT_G}" if bright else f"g !== null && g < {DARK_G}"
    await page.wait_for_function(
        f"(a) => {{ const g = ({FRAME_GREEN})(a); return {test}; }}",
        arg=[identity, *CORNER],
        timeout=timeout_s * 1000,
    )


async def pressed(page: Page, selector: str) -> str | None:
    return await page.get_attribute(selector, "aria-pressed")


async def joined_pair(
    consult: Consult, browser: Browser, sharer: str, viewer: str
) -> tuple[Page, Page]:
    """Two pages in the room, ``viewer`` seeing and hearing ``sharer``."""
    a = await new_page(browser)
    b = await new_page(browser)
    await a.goto(consult.join_url(sharer))
    await b.goto(consult.join_url(viewer))
    await assert_sees_and_hears(b, sharer)
    return a, b


async def test_screen_share_replaces_the_camera_and_the_camera_comes_back(
    consult: Consult, browser: Browser, tmp_path: Path
) -> None:
    """Share screen: the other sees the screen (its pixels, playing, at the screen's size)
    where the camera was, on the same connection; stop: the camera's picture is back and
    the screen capture is stopped."""
    a, b = await joined_pair(consult, browser, "dr-a", "dr-b")
    await wait_corner(b, "dr-a", bright=False)
    assert await pressed(a, "#toggle-screen") == "false"
    assert await a.get_attribute("#toggle-screen", "aria-label") == "Share screen"

    await a.click("#toggle-screen")
    await a.wait_for_function(
        "() => document.getElementById('toggle-screen').getAttribute('aria-pressed') === 'true'"
    )
    assert await a.get_attribute("#toggle-screen", "aria-label") == "Stop sharing"
    await wait_corner(b, "dr-a", bright=True)
    await assert_sees_and_hears(b, "dr-a")  # the screen plays: its time moves on
    # At the screen's size, not the camera's 320×180 (the encoder may scale it down a
    # little while the bandwidth estimate grows).
    await b.wait_for_function(
        "() => document.querySelector('video[data-identity=\"dr-a\"]').videoWidth > 320",
        timeout=20000,
    )
    assert await b.locator(
        ".tile.remote[data-camera='on'] video[data-identity='dr-a']"
    ).is_visible()
    assert not await a.evaluate("() => window.tc.me.resumed")  # replaced, not reconnected
    await b.screenshot(path=tmp_path / "screen-share-seen.png")
    await a.screenshot(path=tmp_path / "screen-share-sharer.png")

    await a.click("#toggle-screen")
    await a.wait_for_function(
        "() => document.getElementById('toggle-screen').getAttribute('aria-pressed') === 'false'"
    )
    await wait_corner(b, "dr-a", bright=False)
    await b.wait_for_function(
        "() => document.querySelector('video[data-identity=\"dr-a\"]').videoWidth === 320",
        timeout=20000,
    )
    await assert_sees_and_hears(b, "dr-a")
    sent = await a.evaluate(
        "() => { const t = window.tc.media.videoSender().track;"
        " return {label: t.label, state: t.readyState}; }"
    )
    assert sent == {"label": "fake_device_0", "state": "live"}, sent
    assert await a.evaluate("() => window.tc.cameraTrack") is None
    await b.screenshot(path=tmp_path / "screen-share-stopped.png")


async def test_end_for_everyone_ends_every_participant(
    consult: Consult, browser: Browser, tmp_path: Path
) -> None:
    """The host ends the consult (after confirming): everyone, the host, an admitted
    applicant and another expert, reaches the end screen saying who ended it, with media
    and camera stopped. Rejoin opens a fresh room: the server forgets an ended room, so
    the host who rejoins is alone in it and an applicant waits to be admitted again."""
    host = await new_page(browser)
    expert = await new_page(browser)
    applicant = await new_page(browser)
    await host.goto(consult.join_url("dr-host"))
    await host.wait_for_function("() => window.tc.screen === 'room'")
    await expert.goto(consult.join_url("dr-expert"))
    token = consult.token("dr-applicant", moderator=False)
    base = f"{consult.server.url}/join?token={token}&lang=en&w=320&h=180&fps=15"
    await applicant.goto(base + "&autojoin=1")
    await applicant.wait_for_function("() => window.tc.screen === 'waiting'")
    await host.click("#toggle-people")
    await host.click("#waiting-list .admit")
    await assert_sees_and_hears(applicant, "dr-host")
    await assert_sees_and_hears(host, "dr-applicant")
    await assert_sees_and_hears(host, "dr-expert")

    await host.click("#end-all")
    assert await host.locator("#end-dialog").is_visible()
    await host.screenshot(path=tmp_path / "end-confirm.png")
    await host.click("#end-confirm")
    for name, page in (("host", host), ("expert", expert), ("applicant", applicant)):
        await page.wait_for_function("() => window.tc.screen === 'ended'")
        assert await page.locator("#ended").is_visible()
        assert await page.locator("#ended-text").inner_text() == "Dr Host ended the consult."
        assert await page.locator("#rejoin").is_visible()
        assert await page.locator("#room").is_hidden()
        assert await page.evaluate("() => window.tc.media === null && !window.tc.localStream")
        await page.screenshot(path=tmp_path / f"ended-{name}.png")

    # Rejoin: the applicant waits (no moderator in the fresh room), then the host's
    # rejoin opens it and sees them knock.
    await applicant.click("#rejoin")
    await applicant.wait_for_function("() => !document.getElementById('join').disabled")
    await applicant.click("#join")
    await applicant.wait_for_function("() => window.tc.screen === 'waiting'")
    await host.click("#rejoin")
    await host.wait_for_function("() => !document.getElementById('join').disabled")
    await host.click("#join")
    await host.wait_for_function("() => window.tc.screen === 'room'")
    await host.locator("#knock:not([hidden])").wait_for()
    assert await host.locator("#count").inner_text() == "1 in the consult"
    await host.screenshot(path=tmp_path / "rejoined-host.png")
    assert await screen(expert) == "ended"


async def test_lobby_choices_are_what_the_room_gets(consult: Consult, tmp_path: Path) -> None:
    """Three cameras and three microphones listed by name; the level meter rises and falls
    with the fake microphone's beeps; another camera and microphone chosen, camera
    and microphone turned off in the preview: the room opens with them off (the other sees
    initials and a muted microphone, with text alternatives), and what is sent is the
    chosen devices: turning them on, the other sees the camera's picture and hears."""
    # Chromium's fake cameras: fake_device_1 delivers Y16 frames, which a <video> shows
    # but WebRTC never encodes (0 frames sent, also between two local peer connections);
    # fake_device_2 is MJPEG and is sent, so it is the one chosen.
    fake = "--use-fake-device-for-media-stream"
    args = [a for a in CHROMIUM_ARGS if a != fake] + [f"{fake}=device-count=3"]
    async with chromium_with(args) as browser:
        a = await new_page(browser)
        # A camera opens slower than a microphone: the second getUserMedia (the camera
        # chosen) answers only after the third (the microphone chosen just after it).
        await a.add_init_script(SLOW_CAMERA)
        token = consult.token("dr-a", moderator=True)
        await a.goto(f"{consult.server.url}/join?token={token}&lang=en&w=320&h=180&fps=15")
        await a.wait_for_function("() => !document.getElementById('join').disabled")
        cameras = await a.locator("#camera-select option").all_inner_texts()
        mics = await a.locator("#mic-select option").all_inner_texts()
        assert cameras == ["fake_device_0", "fake_device_1", "fake_device_2"], cameras
        assert mics == ["Fake Default Audio Input", "Fake Audio Input 1", "Fake Audio Input 2"], (
            mics
        )
        # The meter moves: it has been both loud and quiet (a beep and the silence after).
        await a.wait_for_function(
            """() => {
                const v = document.getElementById('level').value;
                window.levels = window.levels || {low: 1, high: 0};
                window.levels.low = Math.min(window.levels.low, v);
                window.levels.high = Math.max(window.levels.high, v);
                return window.levels.high > 0.1 && window.levels.low < window.levels.high / 4;
            }""",
            polling=20,
            timeout=15000,
        )

        await a.select_option("#camera-select", label="fake_device_2")
        await a.select_option("#mic-select", label=mics[-1])
        camera_id = await a.locator("#camera-select").input_value()
        mic_id = await a.locator("#mic-select").input_value()
        chosen = """([camera, mic]) => {
            const s = window.tc.localStream;
            const v = document.getElementById('preview');
            return s && v.srcObject === s && v.videoWidth > 0
                && s.getVideoTracks()[0].getSettings().deviceId === camera
                && s.getAudioTracks()[0].getSettings().deviceId === mic;
        }"""
        await a.wait_for_function(chosen, arg=[camera_id, mic_id])
        await a.wait_for_function(
            "() => document.getElementById('level').value > 0.05", timeout=15000
        )
        await a.click("#preview-audio")
        await a.click("#preview-video")
        assert await pressed(a, "#preview-audio") == "true"
        assert await pressed(a, "#preview-video") == "true"
        assert await a.get_attribute("#preview-audio", "aria-label") == "Unmute microphone"
        assert await a.locator("#preview-off .initials").inner_text() == "DA"
        assert await a.locator("#preview-off").is_visible()
        await a.screenshot(path=tmp_path / "lobby-choices.png")

        await a.click("#join")
        await a.wait_for_function("() => window.tc.screen === 'room'")
        b = await new_page(browser)
        await b.goto(consult.join_url("dr-b"))
        tile = b.locator(".tile.remote", has=b.locator("video[data-identity='dr-a']"))
        await tile.locator(".state-icon.micOff").wait_for()
        await tile.locator(".state-icon.camOff").wait_for()
        assert await tile.get_attribute("data-camera") == "off"
        assert await tile.locator(".avatar .initials").inner_text() == "DA"
        assert await tile.locator(".avatar").is_visible()
        mic_label = await tile.locator(".state-icon.micOff").get_attribute("aria-label")
        assert mic_label == "Dr A's microphone is off"
        assert await pressed(a, "#toggle-audio") == "true"
        assert await pressed(a, "#toggle-video") == "true"
        assert await a.locator("#self-tile .avatar").is_visible()
        await b.screenshot(path=tmp_path / "room-joined-muted-seen.png")
        sent = await a.evaluate(
            """() => Object.fromEntries(window.tc.media.publishPc.getSenders()
                .filter((s) => s.track)
                .map((s) => [s.track.kind, s.track.getSettings().deviceId]))"""
        )
        assert sent == {"video": camera_id, "audio": mic_id}, sent

        await a.click("#toggle-video")
        await a.click("#toggle-audio")
        await tile.locator(".state-icon.camOff").wait_for(state="detached")
        await tile.locator(".state-icon.micOff").wait_for(state="detached")
        assert await tile.get_attribute("data-camera") == "on"
        await assert_sees_and_hears(b, "dr-a")
        await wait_corner(b, "dr-a", bright=False)
        await b.screenshot(path=tmp_path / "room-camera-on-seen.png")


async def test_screen_share_with_the_camera_off_survives_a_resume_and_ends_with_the_room(
    consult: Consult, browser: Browser, tmp_path: Path
) -> None:
    """The screen is shared whatever the camera does: with the camera off the other sees
    the screen, not initials, and the initials come back when sharing stops. A dropped
    connection resumed while sharing goes on sharing, and stopping then brings the camera
    back alive. Leaving stops the screen capture (no capture left running)."""
    a, b = await joined_pair(consult, browser, "dr-a", "dr-b")
    tile = b.locator(".tile.remote", has=b.locator("video[data-identity='dr-a']"))
    await a.click("#toggle-video")
    await tile.locator(".avatar .initials").wait_for()

    await a.click("#toggle-screen")
    await tile.locator(".state-icon.camOff").wait_for(state="detached")
    assert await tile.get_attribute("data-camera") == "on"
    await wait_corner(b, "dr-a", bright=True)
    assert await tile.locator(".avatar").is_hidden()
    await b.screenshot(path=tmp_path / "share-camera-off-seen.png")
    # The camera button still works while sharing, for later: the room sees the screen.
    assert await pressed(a, "#toggle-video") == "true"

    await a.evaluate("() => { window.before = window.tc.me; window.tc.signaling.drop(); }")
    await a.wait_for_function(
        "() => window.tc.me !== window.before && window.tc.me.resumed === true",
        timeout=20000,
    )
    assert await pressed(a, "#toggle-screen") == "true"
    await a.wait_for_function(
        "() => window.tc.media && window.tc.media.videoSender()"
        " && window.tc.media.videoSender().track.label.startsWith('screen')",
        timeout=20000,
    )
    await wait_corner(b, "dr-a", bright=True)
    assert await tile.get_attribute("data-camera") == "on"

    await a.click("#toggle-screen")
    await tile.locator(".avatar .initials").wait_for()
    await tile.locator(".state-icon.camOff").wait_for()
    await a.click("#toggle-video")
    await tile.locator(".state-icon.camOff").wait_for(state="detached")
    await wait_corner(b, "dr-a", bright=False)
    await assert_sees_and_hears(b, "dr-a")
    sent = await a.evaluate(
        "() => { const t = window.tc.media.videoSender().track;"
        " return {label: t.label, state: t.readyState}; }"
    )
    assert sent == {"label": "fake_device_0", "state": "live"}, sent

    await a.click("#toggle-screen")
    await wait_corner(b, "dr-a", bright=True)
    await a.evaluate("() => { window.shared = window.tc.media.videoSender().track; }")
    await a.click("#leave")
    await a.wait_for_function("() => window.tc.screen === 'ended'")
    assert await a.evaluate("() => window.shared.readyState") == "ended"


async def test_a_host_turning_the_video_off_stops_the_screen_share(
    consult: Consult, browser: Browser, tmp_path: Path
) -> None:
    """A host's "turn camera off" on a participant who shares the screen stops the
    share: the sharer's capture ends and both buttons say so; the host sees initials."""
    a, host = await joined_pair(consult, browser, "dr-a", "dr-host")
    await a.click("#toggle-screen")
    await wait_corner(host, "dr-a", bright=True)
    await a.evaluate("() => { window.shared = window.tc.media.videoSender().track; }")
    tile = host.locator(".tile.remote", has=host.locator("video[data-identity='dr-a']"))
    await tile.locator(".tile-more").click()
    await tile.locator("[data-action='mute-video']").click()
    await a.wait_for_function(
        "() => document.getElementById('toggle-screen').getAttribute('aria-pressed') === 'false'"
    )
    assert await pressed(a, "#toggle-video") == "true"
    assert await a.evaluate("() => window.shared.readyState") == "ended"
    await tile.locator(".avatar .initials").wait_for()
    assert await tile.get_attribute("data-camera") == "off"
    await host.screenshot(path=tmp_path / "share-stopped-by-host.png")
