"""docs/device-protocol.md against the real server and ECG service, for the points a cart
implementer found the document looser or stricter than the server: the spellings of a
stream id and of ``start_time`` the server takes, that it answers and lists the id in
one form, and that a resume is "the same start" as values, not as text."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from api.edge import EdgeServer
from ecg.device import Frame
from ecglive.service import EcgService
from sessions.tokens import mint_token, verify_token
from teleconsult.app import install_ecg
from tests.signaling.conftest import SECRET, make_token, open_client, ws_url
from tests.signaling.stream_events import StreamEvents

STREAM = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")
CANONICAL = str(STREAM)  # lower case, hyphenated: what the server answers and lists


@pytest.fixture
def ecg(server: EdgeServer, tmp_path: Path) -> EcgService:
    verify = functools.partial(verify_token, SECRET)
    return install_ecg(
        server, tmp_path / "streams", verify, commit_interval_s=0.05, live_processes=0
    )


def start(stream: str, **changes: Any) -> dict[str, Any]:
    """A documented start message of cart-1 for room r1 (two leads at 500 Hz)."""
    message = {
        "type": "start", "version": 1, "device": "cart-1", "stream": stream,
        "patient": "P-1", "room": "r1", "fs_hz": 500, "leads": ["I", "II"],
        "adc_gain": [200, 200], "baseline": [0, 0], "resolution_bits": 16,
        "start_time": "2026-11-23T08:30:00Z",
    }  # fmt: skip
    return {**message, **changes}


class Cart:
    """One /device connection speaking the documented messages."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, kind: str) -> dict[str, Any]:
        """The next message of type ``kind`` (acks of other counts are skipped)."""
        while True:
            message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if message["type"] == kind or message["type"] == "error":
                return message

    async def frame(self, handle: int, first: int, n: int) -> None:
        samples = np.arange(first, first + n, dtype=np.int16).repeat(2).reshape(n, 2)
        await self.ws.send(Frame(handle, first, samples).serialize())

    async def acked(self, next_index: int) -> dict[str, Any]:
        """Acks until one says ``next_index``."""
        while True:
            ack = await self.recv("ack")
            if ack["type"] != "ack" or ack["next_index"] >= next_index:
                return ack


Carts = Callable[[], Awaitable[Cart]]  # the cart fixture: opens one more


@pytest.fixture
async def cart(server: EdgeServer, ecg: EcgService) -> AsyncIterator[Carts]:
    carts: list[Cart] = []

    async def made() -> Cart:
        token = mint_token(SECRET, identity="cart-1", name="cart", role="device", room="ecg")
        made = Cart(await connect(f"{ws_url(server, '/device')}?token={token}"))
        carts.append(made)
        return made

    yield made
    for each in carts:
        await each.ws.close()


async def test_stream_id_spellings_answered_and_listed_in_one_form(
    server: EdgeServer, ecg: EcgService, cart: Carts
) -> None:
    """Conformance: a stream id in upper case or as 32 hex digits is taken; started, ack,
    ended and ecg_streams carry it lower case and hyphenated; an end or a resume naming
    it in another accepted spelling is the same stream."""
    events = StreamEvents(ecg)
    first = await cart()
    await first.send(start(CANONICAL.upper()))
    started = await first.recv("started")
    assert (started["type"], started["stream"], started["next_index"]) == (
        "started", CANONICAL, 0,
    )  # fmt: skip
    await first.frame(started["handle"], 0, 500)
    ack = await first.acked(500)
    assert (ack["type"], ack["stream"], ack["next_index"]) == ("ack", CANONICAL, 500)
    await events.until("stream.started", CANONICAL)
    viewer = await open_client(server)
    await viewer.send(type="watch", token=make_token("viewer", room="r1", role="expert"))
    await viewer.expect("watching")
    await viewer.send(type="ecg_list")
    (listed,) = (await viewer.expect("ecg_streams"))["streams"]
    assert listed["stream"] == CANONICAL
    assert listed["start_time"] == "2026-11-23T08:30:00.000Z"  # the wire's form of times
    # Resumed on a new connection as 32 hex digits: the same stream, from what is durable.
    await first.ws.close()
    second = await cart()
    await second.send(start(STREAM.hex))
    resumed = await second.recv("started")
    assert (resumed["type"], resumed["stream"], resumed["next_index"]) == (
        "started", CANONICAL, 500,
    )  # fmt: skip
    await second.frame(resumed["handle"], 500, 500)
    await second.acked(1000)
    await second.send({"type": "end", "stream": CANONICAL.upper(), "total_samples": 1000})
    ended = await second.recv("ended")
    assert (ended["type"], ended["stream"], ended["total_samples"]) == (
        "ended", CANONICAL, 1000,
    )  # fmt: skip


@pytest.mark.parametrize(
    "spelling", ["{" + CANONICAL + "}", "urn:uuid:" + CANONICAL, CANONICAL[:-1], ""]
)
async def test_other_stream_id_spellings_are_bad_message(cart: Carts, spelling: str) -> None:
    """Conformance: braces, urn:uuid: and anything that is not a UUID get a fatal
    bad_message naming the field (nothing is stored, the cart must fix its id)."""
    device = await cart()
    await device.send(start(spelling))
    error = await device.recv("started")
    assert (error["type"], error["code"], error["fatal"]) == ("error", "bad_message", True)
    assert "stream" in error["reason"]


async def test_start_time_forms_and_a_resume_compared_as_values(cart: Carts) -> None:
    """Conformance: start_time in UTC is taken with Z, z, +00:00 or -00:00, T, t or a
    space, and up to nanoseconds; a resume whose fields are the same values written
    otherwise (500 as 500.0, Z as +00:00, the same instant) is the same start. Another
    offset is bad_message; another instant is start_mismatch."""
    forms = [
        "2026-11-23T08:30:00Z",
        "2026-11-23t08:30:00z",
        "2026-11-23 08:30:00+00:00",
        "2026-11-23T08:30:00.000000400-00:00",  # rounded to the microsecond
    ]
    for form in forms:
        device = await cart()
        values = {} if form == forms[0] else {"fs_hz": 500.0, "adc_gain": [200.0, 200]}
        await device.send(start(CANONICAL, start_time=form, **values))
        started = await device.recv("started")
        assert (started["type"], started["stream"]) == ("started", CANONICAL), form
        await device.ws.close()
    for form, code in [
        ("2026-11-23T16:30:00+08:00", "bad_message"),  # the same instant, not in UTC
        ("2026-11-23T08:30Z", "bad_message"),  # RFC 3339 needs the seconds
        ("2026-11-23T08:30:01Z", "start_mismatch"),
    ]:
        device = await cart()
        await device.send(start(CANONICAL, start_time=form))
        error = await device.recv("started")
        assert (error["type"], error["code"], error["fatal"]) == ("error", code, True), form
