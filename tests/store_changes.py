"""Wait for something the server writes off the event loop, woken by the store itself.

The server writes its audit rows, reading tasks and the like from worker threads, so a
test cannot await the write. Instead of polling, :class:`StoreChanges` listens to
SQLAlchemy's pool ``checkin`` event of the server's one engine: a connection returns to
the pool only after its transaction has ended, so every committed write wakes the
waiter, which checks its condition again. The condition is read on the test's own
thread (the event loop), and check-ins of that thread are ignored: the check does not
wake itself, and a write committed after the wake-up was cleared always wakes it again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from sqlalchemy import Engine, event


class StoreChanges:
    """Wakes :meth:`until` whenever another thread ends a transaction on ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._changed = asyncio.Event()
        event.listen(engine, "checkin", self._checked_in)

    def _checked_in(self, dbapi_connection: Any, record: Any) -> None:
        if threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._changed.set)

    async def until(
        self, condition: Callable[[], bool], what: str, timeout_s: float = 30.0
    ) -> None:
        """Return once ``condition()`` (a quick read of the store) holds; fail after
        ``timeout_s`` saying ``what`` never happened."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    self._changed.clear()
                    if condition():
                        return
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"{what}: not in the store after {timeout_s} s") from None

    def close(self) -> None:
        event.remove(self._engine, "checkin", self._checked_in)

    def __enter__(self) -> StoreChanges:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
