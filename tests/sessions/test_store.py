"""The embedded Store (SQLite) and Bus (in-process)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sessions.store import AuditEntry, Ban, LocalBus, RoomRecord, SqliteStore


def test_bans_rooms_and_audit_survive_reopening(tmp_path: Path) -> None:
    """What is written is there after closing and opening the database again."""
    store = SqliteStore(tmp_path)
    store.ban(Ban(jti="j1", room="r", identity="a", by="m", reason="rude", time="t"))
    store.save_room("r", "2026-01-01T00:00:00.000Z")
    store.save_room("r", "2027-01-01T00:00:00.000Z")
    for action in ("join", "remove"):
        store.audit(AuditEntry(time="t", room="r", actor="m", action=action, detail={"k": 1}))
    store.audit(AuditEntry(time="t", room="other", actor="x", action="join"))
    store.close()
    store = SqliteStore(tmp_path)
    assert store.is_banned("j1")
    assert not store.is_banned("j2")
    assert store.banned_jtis() == {"j1"}
    assert store.rooms() == [("r", "2026-01-01T00:00:00.000Z")]
    assert [e.action for e in store.audit_log("r")] == ["join", "remove"]
    assert store.audit_log("r")[0].detail == {"k": 1}
    assert len(store.audit_log()) == 3
    store.close()


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


def test_batch_write_is_one_transaction(tmp_path: Path) -> None:
    """write() stores a mixed batch; a failing batch stores none of it."""
    store = SqliteStore(tmp_path)
    store.write(
        [
            RoomRecord(room="r", time="t0"),
            AuditEntry(time="t1", room="r", actor="a", action="join"),
            Ban(jti="j", room="r", identity="a", by="m", reason="", time="t2"),
        ]
    )
    assert (store.rooms(), store.banned_jtis()) == ([("r", "t0")], {"j"})
    bad = AuditEntry(time="t3", room="r", actor="a", action="x", detail={"x": object()})
    with pytest.raises(TypeError):
        store.write([AuditEntry(time="t3", room="r", actor="a", action="leave"), bad])
    assert [e.action for e in store.audit_log("r")] == ["join"]
    store.close()
