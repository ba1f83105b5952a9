"""A connection that never sends ``watch`` (nor ``join``) is closed by the join timeout
like any other, whatever else it sends; one that watches is not."""

from __future__ import annotations

from api.edge import EdgeServer
from signaling import messages as m
from signaling.connections import ConnState
from signaling.messages import CloseCode
from tests.signaling.conftest import open_client
from tests.signaling.test_core import Harness, closes, error_of, types
from tests.signaling.test_server import closed_with


def test_pings_and_ecg_requests_do_not_put_off_the_join_timeout() -> None:
    """A would-be viewer that pings and lists but never watches: join_timeout, 4408, at
    join_timeout_s after it connected."""
    h = Harness(join_timeout_s=10.0)
    conn = h.open()
    h.now += 4.0
    assert types(h.send(conn, m.Ping()), conn) == ["pong"]
    h.now += 4.0
    listed = h.send(conn, m.EcgList())
    assert types(listed, conn) == ["error"]  # not a viewer: refused, nothing listed
    assert closes(listed, conn) == []
    h.now += 1.9
    assert h.core.tick(h.now) == []
    h.now += 0.1
    effects = h.core.tick(h.now)
    assert error_of(effects, conn).code == "join_timeout"
    assert closes(effects, conn) == [CloseCode.JOIN_TIMEOUT]


def test_a_watcher_is_not_closed_by_the_join_timeout() -> None:
    """After a valid watch the connection stays open past join_timeout_s."""
    h = Harness(join_timeout_s=10.0)
    conn, effects = h.watch("dr-zhou", role="expert")
    assert types(effects, conn)[0] == "watching"
    h.now += 60.0
    assert closes(h.core.tick(h.now), conn) == []
    assert h.core.connection_state(conn) is ConnState.WATCHING


async def test_a_connection_that_never_watches_is_closed_4408(server: EdgeServer) -> None:
    """Against the real server (join timeout 2 s): ping and ecg_list, no watch: closed 4408."""
    client = await open_client(server)
    await client.send(type="ping")
    assert (await client.expect("pong"))["type"] == "pong"
    await client.send(type="ecg_list")
    assert (await client.expect("error"))["code"] != "join_timeout"
    assert (await client.expect("error", timeout_s=10))["code"] == "join_timeout"
    assert (await closed_with(client))[0] == 4408
