"""The Redis :class:`~sessions.store.Bus`: what nodes share live.

Events published on one node (bans once durable, audit rows) reach the subscribers of
every node; what must persist is in the SQL store, not in Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio


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
