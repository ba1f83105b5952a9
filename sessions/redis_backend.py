"""Redis implementations of :class:`~sessions.store.Store` and :class:`~sessions.store.Bus`.

For deployments of several nodes: every node sees the same bans, rooms and audit log,
and events published on one node reach subscribers on all of them.

Keys (prefix ``teleconsult:`` by default):

- ``bans``: hash ``jti -> JSON ban``.
- ``rooms``: hash ``room -> first-used time`` (``HSETNX``: first use wins).
- ``audit``: list of JSON entries (``RPUSH``), and ``audit:<room>`` per room.

Durability is Redis's: run it with ``appendonly yes`` and ``appendfsync always`` where
bans and the audit log must survive a crash (docs/operations.md).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from typing import Any

import redis
import redis.asyncio

from sessions.errors import StoreError
from sessions.store import AuditEntry, Ban, Record, RoomRecord


class RedisStore:
    """A :class:`~sessions.store.Store` in Redis (synchronous client, short calls)."""

    def __init__(self, url: str, *, prefix: str = "teleconsult:") -> None:
        self._prefix = prefix
        try:
            self._redis: Any = redis.Redis.from_url(url, socket_timeout=5)
            self._redis.ping()
        except (redis.RedisError, ValueError) as exc:
            raise StoreError(f"cannot reach Redis at {url}: {exc}") from exc

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._redis, method)(*args)
        except redis.RedisError as exc:
            raise StoreError(f"Redis {method} failed: {exc}") from exc

    def ban(self, ban: Ban) -> None:
        self.write([ban])

    def banned_jtis(self) -> set[str]:
        return {key.decode() for key in self._call("hkeys", self._prefix + "bans")}

    def is_banned(self, jti: str) -> bool:
        return bool(self._call("hexists", self._prefix + "bans", jti))

    def banned_identities(self) -> set[tuple[str, str]]:
        rows = (json.loads(v) for v in self._call("hvals", self._prefix + "bans"))
        return {(row["room"], row["identity"]) for row in rows}

    def is_identity_banned(self, room: str, identity: str) -> bool:
        return (room, identity) in self.banned_identities()

    def save_room(self, room: str, time: str) -> None:
        self.write([RoomRecord(room=room, time=time)])

    def rooms(self) -> list[tuple[str, str]]:
        rooms = self._call("hgetall", self._prefix + "rooms")
        return sorted(((k.decode(), v.decode()) for k, v in rooms.items()), key=lambda r: r[1])

    def audit(self, entry: AuditEntry) -> None:
        self.write([entry])

    def write(self, records: Sequence[Record]) -> None:
        # One MULTI/EXEC transaction for the batch.
        pipe = self._redis.pipeline()
        for record in records:
            if isinstance(record, Ban):
                pipe.hsetnx(self._prefix + "bans", record.jti, json.dumps(asdict(record)))
            elif isinstance(record, RoomRecord):
                pipe.hsetnx(self._prefix + "rooms", record.room, record.time)
            else:
                data = json.dumps(asdict(record), sort_keys=True)
                pipe.rpush(self._prefix + "audit", data)
                pipe.rpush(f"{self._prefix}audit:{record.room}", data)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"Redis write failed: {exc}") from exc

    def audit_log(self, room: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        key = self._prefix + ("audit" if room is None else f"audit:{room}")
        return [AuditEntry(**json.loads(item)) for item in self._call("lrange", key, -limit, -1)]

    def health(self) -> str | None:
        try:
            self._call("ping")
        except StoreError:
            return "Redis unreachable"
        return None

    def close(self) -> None:
        self._redis.close()


class RedisBus:
    """A :class:`~sessions.store.Bus` over Redis publish/subscribe."""

    def __init__(self, url: str, *, prefix: str = "teleconsult:") -> None:
        self._prefix = prefix
        self._redis: Any = redis.asyncio.Redis.from_url(url)
        self._pubsubs: set[Any] = set()

    async def publish(self, channel: str, data: bytes) -> None:
        await self._redis.publish(self._prefix + channel, data)

    async def subscribe(self, channel: str) -> AsyncIterator[bytes]:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._prefix + channel)
        self._pubsubs.add(pubsub)
        return self._drain(pubsub)

    async def _drain(self, pubsub: Any) -> AsyncIterator[bytes]:
        try:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    yield message["data"]
        except redis.ConnectionError:
            return
        finally:
            self._pubsubs.discard(pubsub)

    async def close(self) -> None:
        for pubsub in list(self._pubsubs):
            await pubsub.aclose()
        await self._redis.aclose()
