"""The signaling server's Store on the SQL store (SQLite and PostgreSQL), and the
in-process Bus."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from sessions.errors import StoreError
from sessions.store import AuditEntry, Ban, ChatLine, LocalBus, RoomRecord, Store
from store.audit import verify
from store.engine import open_engine
from store.migrate import upgrade
from store.schema import bans
from store.sessions import SqlSessionStore
from tests.pg import Database, database

__all__ = ["database"]

T = "2026-12-02T09:00:00.000Z"


@pytest.fixture
def engine(database: Database) -> Iterator[Engine]:
    """An engine on an empty database at the newest schema."""
    engine = open_engine(url=database.url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_bans_rooms_and_audit_survive_reopening(engine: Engine, database: Database) -> None:
    """What is written is there after closing and opening the database again."""
    store: Store = SqlSessionStore(engine)
    store.ban(Ban(jti="j1", room="r", identity="a", by="m", reason="rude", time=T))
    store.save_room("r", "2026-01-01T00:00:00.000Z")
    store.save_room("r", "2027-01-01T00:00:00.000Z")
    for action in ("join", "remove"):
        store.audit(AuditEntry(time=T, room="r", actor="m", action=action, detail={"k": 1}))
    store.audit(AuditEntry(time=T, room="other", actor="x", action="join", patient="p9"))
    store.close()
    engine.dispose()
    again = open_engine(url=database.url)
    store = SqlSessionStore(again)
    assert store.is_banned("j1")
    assert not store.is_banned("j2")
    assert store.banned_jtis() == {"j1"}
    assert store.is_identity_banned("r", "a")
    assert not store.is_identity_banned("other", "a")
    assert store.banned_identities() == {("r", "a")}
    assert store.rooms() == [("r", "2026-01-01T00:00:00.000000Z")]
    assert [e.action for e in store.audit_log("r")] == ["join", "remove"]
    assert store.audit_log("r")[0].detail == {"k": 1}
    assert store.audit_log("r")[0].time == "2026-12-02T09:00:00.000000Z"
    assert len(store.audit_log()) == 3
    assert store.audit_log("other")[0].patient == "p9"
    assert [e.action for e in store.audit_log(limit=2)] == ["remove", "join"]
    assert verify(again).ok
    store.close()
    again.dispose()


def test_batch_write_is_one_transaction(engine: Engine) -> None:
    """write() stores a mixed batch; a failing batch stores none of it."""
    store = SqlSessionStore(engine)
    store.write(
        [
            RoomRecord(room="r", time=T),
            AuditEntry(time=T, room="r", actor="a", action="join"),
            Ban(jti="j", room="r", identity="a", by="m", reason="", time=T),
            RoomRecord(room="r", time="2030-01-01T00:00:00Z"),
        ]
    )
    assert store.rooms() == [("r", "2026-12-02T09:00:00.000000Z")]
    assert store.banned_jtis() == {"j"}
    bad = AuditEntry(time=T, room="r", actor="a", action="x", detail={"x": object()})
    with pytest.raises(TypeError):
        store.write(
            [
                AuditEntry(time=T, room="r", actor="a", action="leave"),
                Ban(jti="k", room="r", identity="b", by="m", reason="", time=T),
                bad,
            ]
        )
    assert [e.action for e in store.audit_log("r")] == ["join"]
    assert store.banned_jtis() == {"j"}
    assert verify(engine).ok


def test_chat_lines_are_kept_per_room_in_order_and_not_audited(engine: Engine) -> None:
    """A room's chat comes back in the order said, the last ``limit`` of it; other rooms'
    lines stay theirs; no chat text enters the audit trail."""
    store = SqlSessionStore(engine)
    lines = [
        ChatLine(time=T, room="consult-1", identity="dr-li", name="李医生", text=f"第 {i} 句")
        for i in range(5)
    ]
    store.write([lines[0], RoomRecord(room="consult-1", time=T), *lines[1:]])
    store.write([ChatLine(time=T, room="consult-2", identity="x", name="X", text="other")])
    said = [(line.identity, line.name, line.text) for line in lines]
    kept = store.chat_history("consult-1")
    assert [(line.identity, line.name, line.text) for line in kept] == said
    assert {line.room for line in kept} == {"consult-1"}
    assert [line.text for line in store.chat_history("consult-1", limit=2)] == [
        "第 3 句",
        "第 4 句",
    ]
    assert [line.text for line in store.chat_history("consult-2")] == ["other"]
    assert store.chat_history("nobody") == []
    assert store.audit_log() == []
    assert store.chat_history("consult-1")[0].time == "2026-12-02T09:00:00.000000Z"


def test_a_ban_written_twice_keeps_the_first(engine: Engine) -> None:
    """Banning a token id again is no error and keeps the first ban."""
    store = SqlSessionStore(engine)
    store.ban(Ban(jti="j", room="r", identity="a", by="m1", reason="first", time=T))
    store.ban(Ban(jti="j", room="r", identity="a", by="m2", reason="second", time=T))
    assert store.banned_jtis() == {"j"}


def test_a_failing_database_is_a_store_error_and_unhealthy(engine: Engine) -> None:
    """A write the database refuses raises StoreError and makes health() say so."""
    store = SqlSessionStore(engine)
    assert store.health() is None
    # The bans table gone: the database refuses the batch, audit row included.
    with engine.begin() as conn:
        bans.drop(conn)
    with pytest.raises(StoreError, match="cannot write to the store"):
        store.write(
            [
                AuditEntry(time=T, room="r", actor="m", action="remove"),
                Ban(jti="j", room="r", identity="a", by="m", reason="", time=T),
            ]
        )
    assert "cannot write" in (store.health() or "")
    assert store.audit_log() == []
    store.write([AuditEntry(time=T, room="r", actor="a", action="join")])
    assert store.health() is None


async def test_local_bus_delivers_to_subscribers_in_order() -> None:
    """Two subscribers of a channel get every message in order; others get none."""
    bus = LocalBus()
    first, second = await bus.subscribe("c"), await bus.subscribe("c")
    other = await bus.subscribe("d")
    for data in (b"1", b"2"):
        await bus.publish("c", data)
    assert [await anext(first), await anext(first)] == [b"1", b"2"]
    assert await anext(second) == b"1"
    await bus.close()
    got = [item async for item in other]
    assert got == []
    assert await asyncio.wait_for(anext(first, None), 1) is None
