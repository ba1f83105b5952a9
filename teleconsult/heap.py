"""Give the C heap's free pages back to the system, now and then, in ``teleconsult serve``.

Why: under the soak's load (``bench/soak.py``) the server's resident memory kept rising
while what is in use rose much less. glibc's malloc keeps freed memory inside its
heaps and arenas (one per thread that allocates: the event loop, the store's writer,
the batch annotation, the media threads) and returns only the top of a heap; chunks
freed between live ones stay resident. Measured on a 16-minute soak with 150 carts
(``mallinfo2``, the server process): the heap's free bytes 6 -> 45 MiB while the bytes
in use went 132 -> 146 MiB. ``malloc_trim(0)`` walks every arena and returns each whole
free page (``MADV_DONTNEED``); the memory stays mapped, and is faulted in again when
it is used.

It is glibc's: elsewhere (musl, macOS) :func:`free_heap` does nothing and says so.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    found: Callable[[int], int] = trim
    return found


def free_heap() -> bool:
    """Return the C heap's whole free pages to the system (glibc ``malloc_trim(0)``).

    Returns
    -------
    bool
        True when glibc's ``malloc_trim`` ran (whether or not it found pages to
        return), False where there is none (another C library).

    Notes
    -----
    ctypes releases the GIL for the call, but malloc's arenas are locked while it walks
    them (~15 ms for a 200 MiB heap on the machine of ``bench/``): other threads'
    allocations wait meanwhile. Call it from a thread, not from the event loop.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


async def free_heap_every(every_s: float, trim: Callable[[], bool] = free_heap) -> None:
    """``trim`` (:func:`free_heap`) in a worker thread every ``every_s`` seconds until
    cancelled; returns at once where the C library has no ``malloc_trim``."""
    if _malloc_trim() is None:
        logger.info("no malloc_trim in this C library: the heap is not trimmed")
        return
    while True:
        await asyncio.sleep(every_s)
        began = time.perf_counter()
        await asyncio.to_thread(trim)
        logger.debug("heap trimmed in %.1f ms", 1000 * (time.perf_counter() - began))
