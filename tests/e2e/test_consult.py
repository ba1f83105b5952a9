"""Consults end to end: real Chromium clients, the real server, the aiortc SFU."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.e2e.conftest import Consult, Turn, running_consult
from tests.e2e.pages import assert_sees_and_hears, screen, video_identities
from tests.web.browser import chromium, new_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


async def test_two_then_three_then_one_leaves(consult: Consult, browser: Browser) -> None:
    """Two see and hear each other; a third joins, all three do; one leaves, all told; a fourth."""
    a = await new_page(browser)
    b = await new_page(browser)
    await a.goto(consult.join_url("dr-a"))
    await b.goto(consult.join_url("dr-b"))
    await assert_sees_and_hears(a, "dr-b")
    await assert_sees_and_hears(b, "dr-a")

    c = await new_page(browser)
    await c.goto(consult.join_url("dr-c"))
    for page, others in ((a, ("dr-b", "dr-c")), (b, ("dr-a", "dr-c")), (c, ("dr-a", "dr-b"))):
        for identity in others:
            await assert_sees_and_hears(page, identity)

    await b.click("#leave")
    assert await screen(b) == "ended"
    for page in (a, c):
        await page.wait_for_function(
            "() => !document.querySelector('video[data-identity=\"dr-b\"]')"
        )
        notices = await page.evaluate("() => window.tc.notices")
        assert "Dr B left" in notices
    await assert_sees_and_hears(a, "dr-c")
    await assert_sees_and_hears(c, "dr-a")
    assert await video_identities(a) == {"dr-c"}
    assert consult.sfu.stats()["sessions"] == 2

    # A newcomer is carried by the m-sections the leaver freed (reused transceivers,
    # new a=msid stream): the browsers map them to the newcomer.
    d = await new_page(browser)
    await d.goto(consult.join_url("dr-d"))
    for page, expected in ((a, {"dr-c", "dr-d"}), (c, {"dr-a", "dr-d"})):
        await assert_sees_and_hears(page, "dr-d")
        assert await video_identities(page) == expected
    transceivers = await a.evaluate("() => window.tc.media.subscribePc.getTransceivers().length")
    assert transceivers == 4


async def test_waiting_room_admit_mute_remove_through_the_ui(
    consult: Consult, browser: Browser
) -> None:
    """An applicant waits until the expert clicks Admit; the expert mutes, then removes and
    bans them (after a confirmation)."""
    expert = await new_page(browser)
    await expert.goto(consult.join_url("expert"))
    await expert.wait_for_function("() => window.tc.screen === 'room'")
    applicant = await new_page(browser)
    await applicant.goto(consult.join_url("applicant", moderator=False))
    await applicant.wait_for_function("() => window.tc.screen === 'waiting'")
    await expert.click("#toggle-people")  # the knock badge's panel
    await expert.click("#waiting-list button.admit")
    await applicant.wait_for_function("() => window.tc.screen === 'room'")
    await assert_sees_and_hears(expert, "applicant")
    await assert_sees_and_hears(applicant, "expert")

    # Chat (in its drawer).
    await applicant.click("#toggle-chat")
    await applicant.fill("#chat-text", "ST elevation in V2-V4?")
    await applicant.press("#chat-text", "Enter")
    await expert.wait_for_function(
        "() => document.getElementById('chat-log').textContent.includes('ST elevation')"
    )

    tile = expert.locator(
        ".tile[data-participant] ", has=expert.locator("video[data-identity='applicant']")
    )
    await tile.locator(".tile-more").click()
    await tile.locator("button[data-action='mute-audio']").click()
    await applicant.wait_for_function(
        "() => document.getElementById('toggle-audio').dataset.muted === 'true'"
    )
    assert await applicant.evaluate(
        "() => window.tc.localStream.getAudioTracks().every((t) => !t.enabled)"
    )
    await tile.locator(".tile-more").click()
    await tile.locator("button[data-action='remove']").click()
    await expert.click("#remove-ban")  # remove asks first; this is "remove and ban"
    await applicant.wait_for_function("() => window.tc.screen === 'ended'")
    await expert.wait_for_function(
        "() => !document.querySelector('video[data-identity=\"applicant\"]')"
    )


async def test_resume_after_a_dropped_connection(consult: Consult, browser: Browser) -> None:
    """A client whose WebSocket drops reconnects with its resume id and gets media back."""
    a = await new_page(browser)
    b = await new_page(browser)
    await a.goto(consult.join_url("dr-a"))
    await b.goto(consult.join_url("dr-b"))
    await assert_sees_and_hears(a, "dr-b")
    participant_id = await b.evaluate("() => window.tc.me.participant_id")
    await b.evaluate("() => window.tc.signaling.drop()")
    await b.wait_for_function("() => window.tc.me.resumed === true", timeout=20000)
    assert await b.evaluate("() => window.tc.me.participant_id") == participant_id
    await assert_sees_and_hears(b, "dr-a")
    await assert_sees_and_hears(a, "dr-b")


async def test_relay_only_through_coturn(tmp_path: Path, coturn: Turn, browser: Browser) -> None:
    """Browsers and the server peer restricted to TURN relays still exchange video."""
    async with running_consult(tmp_path / "var", turn=coturn, relay=True) as consult:
        a = await new_page(browser)
        b = await new_page(browser)
        await a.goto(consult.join_url("dr-a", extra="&relay=1"))
        await b.goto(consult.join_url("dr-b", extra="&relay=1"))
        await assert_sees_and_hears(a, "dr-b")
        await assert_sees_and_hears(b, "dr-a")
        for page in (a, b):
            types = await page.evaluate(
                """async () => {
                    const stats = await window.tc.media.subscribePc.getStats();
                    const types = [];
                    stats.forEach((r) => {
                        if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') {
                            types.push(stats.get(r.localCandidateId).candidateType,
                                       stats.get(r.remoteCandidateId).candidateType);
                        }
                    });
                    return types;
                }"""
            )
            assert types, "no nominated candidate pair"
            assert set(types) == {"relay"}, types
