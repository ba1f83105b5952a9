"""A recorded consult of real Chromium clients in which one turns the camera off: the
manifest says when, and the export (checked by ffprobe) shows that person's initials on
their tile meanwhile, the camera's picture before and after."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import Browser, Page

from api.edge import EdgeConfig
from media.export import export, placements
from media.recorder import parse_utc, read_manifest
from media.sfu import Sfu
from teleconsult.app import build_server
from teleconsult.config import Config, DataSection, MediaSection
from tests.e2e.conftest import SECRET, WEB_DIR, Consult
from tests.e2e.test_passthrough import seeing_each_other
from tests.media.probe import ffprobe
from tests.media.test_export import frame_at
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


async def heard_more(page: Page, packets: int) -> None:
    """Wait until ``page`` has received ``packets`` more audio packets (50 a second)."""
    now = await page.evaluate("() => window.tc.inbound.audio.packets")
    await page.wait_for_function(f"() => window.tc.inbound.audio.packets > {now + packets}")


async def test_camera_turned_off_in_a_browser_shows_initials_in_the_export(
    recorded: Consult, browser: Browser, tmp_path: Path
) -> None:
    """Dr A's camera off for about 3 s of a recorded consult: the export's tile of Dr A is
    the slate avatar with white initials in the middle of that span, the fake camera's
    picture (no slate) before it."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (make sysdeps installs it)")
    a, b = await seeing_each_other(browser, recorded)
    recording_id = recorded.sfu.recording("consult")
    assert recording_id is not None
    await heard_more(b, 100)
    await a.click("#toggle-video")
    await b.wait_for_selector(".tile.remote[data-camera='off'] .initials")
    await heard_more(b, 150)
    await a.click("#toggle-video")
    await b.wait_for_selector(".tile.remote[data-camera='on']")
    await heard_more(b, 100)
    await a.close()
    await b.close()
    await recorded.sfu.close()  # ends the consult: files closed, manifest final
    directory = tmp_path / "var" / "recordings" / recording_id
    manifest = read_manifest(directory)
    (person,) = [p for p, info in manifest.participants.items() if info.get("camera_off_utc")]
    (span,) = manifest.participants[person]["camera_off_utc"]
    assert span[1] is not None
    placed = placements(manifest)
    origin = parse_utc(placed[0].track.start_utc or "") - placed[0].offset_s
    column = next(p.tile for p in placed if p.track.participant_id == person and p.tile >= 0)
    off_s, on_s = parse_utc(span[0]) - origin, parse_utc(span[1]) - origin
    assert on_s - off_s > 2.0
    out = tmp_path / "consult.mp4"
    export(directory, out, names={person: "Dr A"})
    probed = ffprobe(out)
    (video,) = [s for s in probed["streams"] if s["codec_type"] == "video"]
    assert video["width"] == 640 * 2

    def tile(time_s: float) -> np.ndarray:
        image = frame_at(out, time_s)
        return image[:, column * 640 : (column + 1) * 640]

    off = tile((off_s + on_s) / 2)
    centre = off[120:240, 220:420]
    assert (centre > 200).mean() > 0.03  # the initials "DA", white
    background = off[10:60, 100:150]
    assert abs(float(np.median(background)) - 55) < 15  # the slate #2b3a4d
    before = tile(max(0.0, off_s - 1.0))
    assert abs(float(np.median(before[120:240, 220:420])) - 55) > 15  # the camera's picture
    print(f"camera off {off_s:.1f}-{on_s:.1f} s of the export, tile {column}")
