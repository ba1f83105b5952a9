"""docs/signaling.md against the real components, for the points a client implementer
found the document wrong about.

- The subscribe ``offer`` comes as soon as there is something to receive, so the first
  person in a room gets none until someone else publishes: the core relays whatever the
  backend offers (test_core_rooms); here the real SFU with aiortc peers on loopback.
- Live ECG on the real server and ECG service: per-sample ``null`` in ``samples_uv``,
  ``ecg_ended`` as ``ended`` then ``finalised``, nothing for what ended before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.edge import EdgeServer
from fixtures.make_fixtures import synthetic12
from media.sfu import PeerRole, Sfu
from sessions.tokens import verify_token
from teleconsult.app import install_ecg
from teleconsult.device_cmd import SimulatedRecord, simulate
from tests.media.peers import Client, wait_for
from tests.signaling.conftest import SECRET, make_token, open_client, ws_url
from tests.signaling.stream_events import StreamEvents


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


async def test_live_ecg_wire_points_of_the_document(server: EdgeServer, tmp_path: Path) -> None:
    """Conformance, over the real server and ECG service: samples_uv nulls are per sample
    (a lead with an invalid stretch mixes numbers and nulls); ecg_ended comes as ended,
    then finalised, once each; a viewer subscribing after finalisation gets no ecg_ended."""
    service = install_ecg(
        server,
        tmp_path / "streams",
        functools.partial(verify_token, SECRET),
        commit_interval_s=0.05,
        live_processes=0,
    )
    events = StreamEvents(service)
    source = SimulatedRecord.read(str(synthetic12()), duration_s=6.0)
    samples = source.samples.copy()
    # WFDB's invalid sample: lead I missing for ~1 s, not on chunk boundaries (100 samples).
    samples[1010:1490, 0] = -32768
    source = dataclasses.replace(source, samples=samples)
    viewer = await open_client(server)
    await viewer.send(type="watch", token=make_token("viewer-r1", room="r1", role="expert"))
    await viewer.expect("watching")
    started: asyncio.Queue[uuid.UUID] = asyncio.Queue()
    device = make_token("cart-1", room="ecg", role="device")
    task = asyncio.create_task(
        simulate(
            source, url=ws_url(server, "/device"), token=device, device="cart-1", room="r1",
            speed=8.0, on_started=started.put_nowait,
        )
    )  # fmt: skip
    stream = str(await asyncio.wait_for(started.get(), 10))
    # The cart's start is acknowledged before the catalogue lists it (with its first
    # samples, as the service tells stream.started).
    await events.until("stream.started", stream)
    await viewer.send(type="ecg_list")
    assert stream in [s["stream"] for s in (await viewer.expect("ecg_streams"))["streams"]]
    await viewer.send(type="ecg_subscribe", stream=stream)
    await viewer.expect("ecg_subscribed")
    mixed_lead = False
    ends: list[str] = []
    while "finalised" not in ends:
        message = await viewer.recv(20)
        if message["type"] == "ecg_data":
            first = message["samples_uv"][0]
            assert all(isinstance(lead, list) for lead in message["samples_uv"])
            if None in first and any(isinstance(v, int) for v in first):
                mixed_lead = True
            assert None not in message["samples_uv"][1]  # the other leads are whole
        elif message["type"] == "ecg_ended":
            ends.append(message["state"])
    await task
    assert mixed_lead
    assert ends == ["ended", "finalised"]
    late = await open_client(server)
    await late.send(type="watch", token=make_token("late-r1", room="r1", role="expert"))
    await late.expect("watching")
    await late.send(type="ecg_subscribe", stream=stream)
    subscribed = await late.expect("ecg_subscribed")
    assert subscribed["info"]["state"] == "finalised"
    await late.send(type="ping", ref="after")
    assert (await late.recv(10))["type"] == "pong"  # nothing (no ecg_ended) before it
