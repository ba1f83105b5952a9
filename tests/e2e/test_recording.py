"""A consult of real Chromium clients recorded by ``--record``: files checked with ffprobe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from api.edge import EdgeConfig
from media.recorder import RecordingState, read_manifest
from media.sfu import Sfu
from teleconsult.app import build_server
from teleconsult.config import Config, DataSection, MediaSection
from tests.e2e.conftest import SECRET, WEB_DIR, Consult
from tests.e2e.test_passthrough import seeing_each_other
from tests.media.peers import wait_for
from tests.media.probe import ffprobe, last_packet_s
from tests.web.browser import chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


@pytest.fixture
async def recorded(tmp_path: Path) -> AsyncIterator[Consult]:
    """The server as ``teleconsult serve --record`` assembles it."""
    data = DataSection(data_dir=tmp_path / "var", secret=SECRET, web_dir=WEB_DIR)
    config = Config(server=EdgeConfig(port=0), data=data, media=MediaSection(record=True))
    server = build_server(config)
    assert isinstance(server.media, Sfu)
    await server.start()
    try:
        yield Consult(server, server.media)
    finally:
        await server.close()


async def test_record_flag_records_every_track_of_a_browser_consult(
    recorded: Consult, browser: Browser, tmp_path: Path
) -> None:
    """Both browsers' audio and video are recorded, undecoded, and ffprobe reads them."""
    a, b = await seeing_each_other(browser, recorded)
    recording_id = recorded.sfu.recording("consult")
    assert recording_id is not None
    # About three seconds of the consult (45 frames at 15 fps reach a through the SFU).
    frames = await a.evaluate("() => window.tc.inbound.video.frames")
    await a.wait_for_function(f"() => window.tc.inbound.video.frames > {frames} + 45")
    await a.close()
    await b.close()
    await recorded.sfu.close()  # ends the consult: files closed, manifest final
    directory = tmp_path / "var" / "recordings" / recording_id
    manifest = read_manifest(directory)
    assert manifest.state is RecordingState.STOPPED
    assert len(manifest.participants) == 2
    for participant in manifest.participants:
        kinds = {t.kind for t in manifest.tracks if t.participant_id == participant}
        assert kinds == {"audio", "video"}
    for track in manifest.tracks:
        (stream,) = ffprobe(directory / track.file)["streams"]
        assert stream["codec_name"] == track.codec
        assert last_packet_s(directory / track.file) > 2.0
    assert recorded.sfu.stats()["decoded_frames"] == 0


async def test_moderator_consent_toggle_records_and_everyone_sees_it(
    consult: Consult, browser: Browser, tmp_path: Path
) -> None:
    """A moderator's click starts recording; both browsers show it; a second click stops it."""
    a, b = await seeing_each_other(browser, consult)
    assert await a.is_hidden("#rec")
    # The recording switch is in the host's panel, behind the people button of the bar.
    assert await a.locator("#toggle-recording").is_hidden()
    await a.click("#toggle-people")
    toggle = a.get_by_role("button", name="Start recording")
    await toggle.click()
    for page in (a, b):
        await page.wait_for_function(
            "() => window.tc.recording && !document.getElementById('rec').hidden"
        )
    assert "This consult is now being recorded." in await b.evaluate("() => window.tc.notices")
    recording_id = consult.sfu.recording("consult")
    assert recording_id is not None
    directory = tmp_path / "var" / "recordings" / recording_id
    assert await a.locator("#toggle-recording").get_attribute("aria-pressed") == "true"
    # Two seconds of the consult recorded: 30 more frames (at 15 fps) reach a through the SFU.
    frames = await a.evaluate("() => window.tc.inbound.video.frames")
    await a.wait_for_function(f"() => window.tc.inbound.video.frames > {frames} + 30")
    # A track enters the manifest (written at once) with its first recordable frame; a
    # video track's is its first keyframe, which may come later than those 2 s.
    await wait_for(lambda: len(read_manifest(directory).tracks) == 4)
    await a.get_by_role("button", name="Stop recording").click()
    for page in (a, b):
        await page.wait_for_function(
            "() => !window.tc.recording && document.getElementById('rec').hidden"
        )
    manifest = read_manifest(directory)
    assert manifest.state is RecordingState.STOPPED
    assert len(manifest.tracks) == 4
    for track in manifest.tracks:
        assert ffprobe(directory / track.file)["streams"][0]["codec_name"] == track.codec
