"""Two nodes of one deployment: one SQL store (a shared SQLite file here), one real Redis
as the Bus. A ban written on one node is enforced by the other at once, and by any node
that starts later (loaded from the store)."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from api.edge import EdgeConfig, EdgeServer
from sessions.redis_backend import RedisBus
from sessions.tokens import verify_token
from sessions.turn import IceConfig
from signaling.core import Core, CoreConfig
from signaling.server import ServerConfig, SignalingServer
from store.stores import open_store
from tests.redis import redis_server
from tests.signaling.conftest import SECRET, Client, FakeMedia, make_token


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path / "redis-data") as url:
        yield url


@asynccontextmanager
async def node(data_dir: Path, redis_url: str) -> AsyncIterator[EdgeServer]:
    """One node: its own engine on the shared store, its own Redis Bus client."""
    stores = open_store(data_dir=data_dir)
    store = stores.signaling
    ice = IceConfig()
    core = Core(
        config=CoreConfig(grace_s=1.0),
        verify=functools.partial(verify_token, SECRET),
        ice_servers=lambda identity: ice.ice_servers(identity, now_s=time.time()),
        banned=store.banned_jtis(),
        banned_identities=store.banned_identities(),
    )
    signaling = SignalingServer(
        core=core, media=FakeMedia(), store=store, bus=RedisBus(redis_url),
        config=ServerConfig(tick_interval_s=0.1),
    )  # fmt: skip
    server = EdgeServer(signaling=signaling, config=EdgeConfig(port=0))
    await server.start()
    try:
        yield server
    finally:
        await server.close()
        stores.close()


async def client(server: EdgeServer) -> Client:
    return Client(await connect(f"ws://127.0.0.1:{server.port}/ws"))


async def test_a_ban_on_one_node_closes_the_identity_on_the_other(
    tmp_path: Path, redis_url: str
) -> None:
    """dr-zhao is in the room on node A and watches it from node B with another token;
    the moderator on A removes (bans) him: B closes his viewer (removed, 4403) and
    refuses his next join; a node started afterwards refuses it too."""
    data = tmp_path / "var"
    data.mkdir()
    open_store(data_dir=data).close()  # the schema, once, before two nodes open it
    async with node(data, redis_url) as a, node(data, redis_url) as b:
        mod = await client(a)
        await mod.send(type="join", token=make_token("dr-li", moderator=True))
        await mod.expect("joined")
        guest = await client(a)
        await guest.send(type="join", token=make_token("dr-zhao"))
        waiting = await guest.expect("waiting")
        await mod.send(type="admit", participant_id=waiting["participant_id"])
        await guest.expect("joined")
        viewer = await client(b)
        await viewer.send(type="watch", token=make_token("dr-zhao", role="observer"))
        await viewer.expect("watching")

        await mod.send(type="remove", participant_id=waiting["participant_id"], reason="test")
        assert (await guest.expect("error"))["code"] == "removed"
        assert (await viewer.expect("error", timeout_s=10))["code"] == "removed"
        await viewer.ws.wait_closed()
        assert viewer.ws.close_code == 4403
        again = await client(b)
        await again.send(type="join", token=make_token("dr-zhao"))
        assert (await again.expect("error"))["code"] == "banned"

    async with node(data, redis_url) as later:
        late = await client(later)
        await late.send(type="join", token=make_token("dr-zhao"))
        assert (await late.expect("error"))["code"] == "banned"
