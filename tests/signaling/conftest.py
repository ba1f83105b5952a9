"""A signaling server on a free loopback port (the edge: uvicorn, real sockets) with a
small fake media backend.

The fake backend stands in for ``media.sfu.Sfu`` where media is not what is tested: it
answers any SDP starting with ``v=0``, refuses other SDP with ``ValueError`` (as the
real one does), knows transceivers ``0`` and ``1`` only, offers on subscribe when a
participant joins, and reports one published video track per applied offer.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from api.edge import EdgeConfig, EdgeServer
from sessions.store import LocalBus
from sessions.tokens import mint_token, verify_token
from sessions.turn import IceConfig
from signaling.core import Core, CoreConfig
from signaling.ports import (
    IceServerDict,
    MediaListener,
    PeerRole,
    RecordingListener,
    TrackKind,
)
from signaling.server import ServerConfig, SignalingServer
from store.stores import open_store

SECRET = "q" * 40


class FakeMedia:
    """A MediaBackend that records calls and answers without WebRTC."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.listeners: dict[str, MediaListener] = {}
        self.on_recording: RecordingListener | None = None

    async def join(
        self,
        room_id: str,
        participant_id: str,
        listener: MediaListener,
        ice_servers: list[IceServerDict],
    ) -> None:
        self.calls.append(("join", participant_id))
        self.listeners[participant_id] = listener
        await listener.send_offer("subscribe", "v=0 subscribe offer")

    async def offer(self, participant_id: str, pc: PeerRole, sdp: str) -> str:
        self.calls.append(("offer", participant_id))
        if not sdp.startswith("v=0"):
            raise ValueError("not SDP")
        await self.listeners[participant_id].track_published(
            f"t-{participant_id}", "video", f"s-{participant_id}"
        )
        return "v=0 answer"

    async def answer(self, participant_id: str, pc: PeerRole, sdp: str) -> None:
        self.calls.append(("answer", participant_id))
        if not sdp.startswith("v=0"):
            raise ValueError("not SDP")

    async def candidate(
        self,
        participant_id: str,
        pc: PeerRole,
        candidate: str | None,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        self.calls.append(("candidate", participant_id))
        if sdp_mid not in ("0", "1", None):
            raise ValueError("unknown mid")

    async def set_paused(self, participant_id: str, kind: TrackKind, paused: bool) -> None:
        self.calls.append((f"paused-{kind}-{paused}", participant_id))

    async def set_receiving(self, participant_id: str, kind: TrackKind, receiving: bool) -> None:
        self.calls.append((f"receiving-{kind}-{receiving}", participant_id))

    async def leave(self, participant_id: str) -> None:
        self.calls.append(("leave", participant_id))
        self.listeners.pop(participant_id, None)

    def set_recording(self, room_id: str, on: bool) -> None:
        self.calls.append((f"recording-{on}", room_id))
        raise ValueError("this test backend does not record")

    def stats(self) -> dict[str, int]:
        return {"sessions": len(self.listeners)}

    async def close(self) -> None:
        self.calls.append(("close", ""))


def make_token(identity: str, *, moderator: bool = False, room: str = "r1", **kw: Any) -> str:
    """A token for ``identity`` signed with the test secret."""
    permissions = {"publish", "subscribe"} | ({"moderate"} if moderator else set())
    kw.setdefault("role", "expert" if moderator else "applicant")
    return mint_token(
        SECRET,
        identity=identity,
        name=identity,
        room=room,
        permissions=frozenset(permissions),
        **kw,
    )


class Client:
    """A participant over a real WebSocket, reading JSON messages."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, timeout_s: float = 5.0) -> dict[str, Any]:
        import asyncio

        data = await asyncio.wait_for(self.ws.recv(), timeout_s)
        message: dict[str, Any] = json.loads(data)
        return message

    async def expect(self, kind: str, timeout_s: float = 5.0) -> dict[str, Any]:
        """Read until a message of type ``kind`` (others are skipped)."""
        deadline = time.monotonic() + timeout_s
        while True:
            message = await self.recv(max(0.01, deadline - time.monotonic()))
            if message["type"] == kind:
                return message


@pytest.fixture
def web_dir(tmp_path: Path) -> Path:
    """A small web folder, and a secret file beside it that must never be served."""
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>teleconsult</title>")
    (web / "app.js").write_text("export const x = 1;\n")
    (web / "style.css").write_text("body{}\n")
    (web / "icon.svg").write_text("<svg/>")
    (web / "strings.json").write_text("{}")
    (tmp_path / "outside.txt").write_text("secret")
    return web


@pytest.fixture
async def server(tmp_path: Path, web_dir: Path) -> AsyncIterator[EdgeServer]:
    """A started server on 127.0.0.1 with a 1 s grace period and the fake media backend."""
    ice = IceConfig(stun_urls=["stun:127.0.0.1:3478"])
    stores = open_store(data_dir=tmp_path / "var")
    store = stores.signaling
    core = Core(
        config=CoreConfig(grace_s=1.0, join_timeout_s=2.0, burst=30, rate_per_s=20),
        verify=functools.partial(verify_token, SECRET),
        ice_servers=lambda identity: ice.ice_servers(identity, now_s=time.time()),
        banned=store.banned_jtis(),
        banned_identities=store.banned_identities(),
    )
    signaling = SignalingServer(
        core=core,
        media=FakeMedia(),
        store=store,
        bus=LocalBus(),
        config=ServerConfig(tick_interval_s=0.1),
    )
    server = EdgeServer(
        signaling=signaling,
        config=EdgeConfig(port=0, max_frame_bytes=128 * 1024),
        web_dir=web_dir,
    )
    await server.start()
    yield server
    await server.close()
    stores.close()


def ws_url(server: EdgeServer, path: str = "/ws") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def open_client(server: EdgeServer) -> Client:
    """Connect a client to ``/ws``."""
    return Client(await connect(ws_url(server)))
