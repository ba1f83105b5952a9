"""The live ECG service's stream events, for tests to wait on instead of polling.

:class:`ecglive.service.EcgService` tells its ``on_stream`` hook when a stream starts,
resumes or ends, in the same step that lists it in the viewers' catalogue (its first
samples): a viewer who lists or subscribes after ``stream.started`` finds it.
"""

from __future__ import annotations

import asyncio

from ecg.device import Start
from ecglive.service import EcgService


class StreamEvents:
    """``(action, stream id)`` of every stream event of ``service``, the hook already
    installed (the audit trail) still told first."""

    def __init__(self, service: EcgService) -> None:
        self._loop = asyncio.get_running_loop()
        self._told = service.on_stream
        self._events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        service.on_stream = self._on_stream

    def _on_stream(self, action: str, start: Start) -> None:
        if self._told is not None:
            self._told(action, start)
        self._loop.call_soon_threadsafe(self._events.put_nowait, (action, str(start.stream)))

    async def until(self, action: str, stream: str, timeout_s: float = 30.0) -> None:
        """Return once ``stream`` has had ``action`` (``stream.started``...)."""
        async with asyncio.timeout(timeout_s):
            while await self._events.get() != (action, stream):
                pass
