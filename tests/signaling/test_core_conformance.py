"""docs/signaling.md against the real media backend: when the subscribe offer comes.

The document says the server's subscribe ``offer`` comes as soon as there is something
to receive, so the first person in a room gets none until someone else publishes; the
core relays whatever the backend offers (test_core_rooms). Here the real SFU
(``media.sfu.Sfu``) with real aiortc peers on loopback shows the backend side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from media.sfu import PeerRole, Sfu
from tests.media.peers import Client, wait_for


class RecordingClient(Client):
    """A client that keeps the SDP of every subscribe offer it receives."""

    def __init__(self, sfu: Sfu, participant_id: str, rgb: tuple[int, int, int]) -> None:
        super().__init__(sfu, participant_id, rgb)
        self.offer_sdps: list[str] = []

    async def send_offer(self, pc: PeerRole, sdp: str) -> None:
        self.offer_sdps.append(sdp)
        await super().send_offer(pc, sdp)


@pytest.fixture
async def sfu() -> AsyncIterator[Sfu]:
    backend = Sfu()
    yield backend
    await backend.close()


async def test_first_person_gets_a_subscribe_offer_only_once_someone_publishes(
    sfu: Sfu,
) -> None:
    """Conformance: alone in the room, no offer; the first offer carries the second
    person's tracks; the second person, arriving after a publisher, is offered at once."""
    first = RecordingClient(sfu, "first", (220, 30, 30))
    second = RecordingClient(sfu, "second", (30, 200, 30))
    try:
        await first.join("room")
        await second.join("room")
        await wait_for(lambda: first.offer_sdps and second.offer_sdps)
        # Offers are sent in order: had the SFU offered on the first join, the first
        # offer would hold no track of the second person.
        assert sfu.stream_id("second") in first.offer_sdps[0]
        assert sfu.stream_id("first") in second.offer_sdps[0]
        assert "m=video" in first.offer_sdps[0]
    finally:
        await first.close()
        await second.close()
