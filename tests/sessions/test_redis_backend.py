"""The Redis Store and Bus against a real redis-server on a free loopback port."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessions.errors import StoreError
from sessions.redis_backend import RedisBus, RedisStore
from sessions.store import AuditEntry, Ban, RoomRecord


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server (no persistence) for this module, stopped afterwards."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make sysdeps)")
    port = _free_port()
    folder: Path = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(10)


def test_store_bans_rooms_and_audit(redis_url: str) -> None:
    """The Redis Store keeps what the SQLite one keeps, shared by every client."""
    store = RedisStore(redis_url, prefix="t1:")
    other = RedisStore(redis_url, prefix="t1:")
    store.ban(Ban(jti="j1", room="r", identity="a", by="m", reason="", time="t"))
    store.save_room("r", "2026-01-01T00:00:00.000Z")
    store.save_room("r", "2027-01-01T00:00:00.000Z")
    store.audit(AuditEntry(time="t", room="r", actor="m", action="remove", detail={"k": "v"}))
    store.audit(AuditEntry(time="t", room="q", actor="x", action="join"))
    assert other.is_banned("j1")
    assert not other.is_banned("j2")
    assert other.banned_jtis() == {"j1"}
    assert other.rooms() == [("r", "2026-01-01T00:00:00.000Z")]
    assert [e.action for e in other.audit_log("r")] == ["remove"]
    assert other.audit_log("r")[0].detail == {"k": "v"}
    assert len(other.audit_log()) == 2
    other.write(
        [
            RoomRecord(room="q", time="2026"),
            AuditEntry(time="t", room="q", actor="y", action="leave"),
        ]
    )
    assert [e.action for e in store.audit_log("q")] == ["join", "leave"]
    store.close()
    other.close()


def test_unreachable_redis_is_a_clear_error() -> None:
    """A Redis URL nobody listens on gives StoreError naming it."""
    url = f"redis://127.0.0.1:{_free_port()}/0"
    with pytest.raises(StoreError, match="cannot reach Redis"):
        RedisStore(url)


async def test_bus_crosses_clients(redis_url: str) -> None:
    """A message published by one Bus reaches subscribers of another."""
    publisher, subscriber = RedisBus(redis_url), RedisBus(redis_url)
    messages = await subscriber.subscribe("audit")
    await publisher.publish("audit", b"hello")
    await publisher.publish("other", b"not for you")
    await publisher.publish("audit", b"again")
    got = [await asyncio.wait_for(anext(messages), 5) for _ in range(2)]
    assert got == [b"hello", b"again"]
    await publisher.close()
    await subscriber.close()
