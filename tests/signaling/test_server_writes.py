"""The server's group commit on the real SQL store: writes nobody waits for linger and
share one transaction; a server that closes writes what still lingers."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from pathlib import Path

import pytest

from sessions.store import AuditEntry, LocalBus, Record
from sessions.tokens import verify_token
from signaling.core import Core, CoreConfig
from signaling.server import ServerConfig, SignalingServer
from store.sessions import SqlSessionStore
from store.stores import open_store
from tests.signaling.conftest import SECRET, FakeMedia


class CountingStore(SqlSessionStore):
    """The real store, telling the test each batch it wrote (from the writer thread)."""

    def __init__(self, inner: SqlSessionStore, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(inner.engine)
        self.batches: asyncio.Queue[int] = asyncio.Queue()
        self._loop = loop

    def write(self, records: Sequence[Record]) -> None:
        super().write(records)
        self._loop.call_soon_threadsafe(self.batches.put_nowait, len(records))


def _server(store: SqlSessionStore, linger_s: float) -> SignalingServer:
    core = Core(
        config=CoreConfig(),
        verify=functools.partial(verify_token, SECRET),
        ice_servers=lambda identity: [],
    )
    return SignalingServer(
        core=core,
        media=FakeMedia(),
        store=store,
        bus=LocalBus(),
        config=ServerConfig(write_linger_s=linger_s),
    )


def _entry(n: int) -> AuditEntry:
    return AuditEntry(
        time="2026-12-02T18:00:00.000Z",
        actor=f"user-{n}",
        action="join",
        target=f"user-{n}",
        room="room-1",
    )


async def test_writes_nobody_waits_for_share_one_commit(tmp_path: Path) -> None:
    store = CountingStore(open_store(data_dir=tmp_path).signaling, asyncio.get_running_loop())
    server = _server(store, linger_s=0.05)
    for n in range(3):
        server.audit(_entry(n))
    assert await store.batches.get() == 3
    server.audit(_entry(3))
    assert await store.batches.get() == 1
    await server.close()
    assert [e.actor for e in store.audit_log(room="room-1")] == [f"user-{n}" for n in range(4)]


async def test_close_writes_what_lingers(tmp_path: Path) -> None:
    store = CountingStore(open_store(data_dir=tmp_path).signaling, asyncio.get_running_loop())
    server = _server(store, linger_s=1.0)  # far longer than the test waits
    server.audit(_entry(1))
    await server.close()
    assert store.batches.get_nowait() == 1
    assert [e.actor for e in store.audit_log(room="room-1")] == ["user-1"]


@pytest.mark.parametrize("bad_s", [-0.01, 1.5])
def test_linger_is_bounded(bad_s: float) -> None:
    with pytest.raises(ValueError, match="write_linger_s"):
        ServerConfig(write_linger_s=bad_s)
