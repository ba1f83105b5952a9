"""Keep the C heap of ``teleconsult serve`` close to what is in use: large blocks mapped
on their own, and the free pages given back now and then.

Why: under the soak's load (``bench/soak.py``) the server's resident memory kept rising
while what is in use rose much less. glibc's malloc keeps freed memory inside its
heaps and arenas (one per thread that allocates: the event loop, the store's writer,
the batch annotation, the media threads) and returns only the top of a heap; chunks
freed between live ones stay resident. Measured on a 16-minute soak with 150 carts
(``mallinfo2`` logged by a wrapper outside the repository, the machine loaded): the
heap's free bytes 6 -> 45 MiB while the bytes in use went 132 -> 146 MiB.
``malloc_trim(0)`` walks every arena and returns each whole free page
(``MADV_DONTNEED``); the memory stays mapped, and is faulted in again when it is used.

The second measure, :func:`map_large_blocks`: glibc serves a block of at least
``M_MMAP_THRESHOLD`` (128 KiB at first) with a mapping of its own, unmapped when freed;
but each time such a block is freed the threshold rises to its size (up to 32 MiB), so
that after the first large block freed, later ones of that size (pickled job batches,
WebSocket messages, numpy arrays) come from the heap, between small long-lived blocks:
the holes they leave behind are free bytes the heap cannot return. In the soak the main
heap grew from 123 to 135 MiB of address space in 10 minutes (``/proc/PID/smaps``, the
second server) while the bytes in use stayed level (138-155 MiB, ``mallinfo2``) and
the free ones were 75-91 MiB. A fixed threshold keeps large blocks off the heap.

It is glibc's: elsewhere (musl, macOS) both do nothing and say so.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import platform
import time
from collections.abc import Callable
from typing import Protocol, cast

logger = logging.getLogger(__name__)


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


class _GlibcMalloc(Protocol):
    """What of glibc this module calls (both there since glibc 2.8)."""

    def mallopt(self, param: int, value: int) -> int: ...
    def malloc_trim(self, pad: int) -> int: ...


@functools.cache
def _glibc() -> _GlibcMalloc | None:
    """The C library when it is glibc, else None (musl, macOS: neither call exists)."""
    name = ctypes.util.find_library("c")
    if platform.libc_ver()[0] != "glibc" or name is None:
        return None
    libc = ctypes.CDLL(name)
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return cast(_GlibcMalloc, libc)


def map_large_blocks(threshold_bytes: int) -> bool:
    """Serve every block of at least ``threshold_bytes`` with a mapping of its own, from
    now on and for the whole process (glibc ``mallopt(M_MMAP_THRESHOLD)``, which also
    stops the threshold's rise; at most 32 MiB on 64-bit glibc).

    Returns
    -------
    bool
        True when glibc took it, False where the C library is not glibc or it refused.
    """
    glibc = _glibc()
    return glibc is not None and bool(glibc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes))


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
    them (15.5 ms for 200 MiB freed below a live block, the heap of
    ``tests/teleconsult/test_heap.py``, timed once on the machine of ``bench/``): other
    threads' allocations wait meanwhile. Call it from a thread, not from the event loop.
    """
    glibc = _glibc()
    if glibc is None:
        return False
    glibc.malloc_trim(0)
    return True


async def free_heap_every(every_s: float, trim: Callable[[], bool] = free_heap) -> None:
    """``trim`` (:func:`free_heap`) in a worker thread every ``every_s`` seconds until
    cancelled; returns at once where the C library has no ``malloc_trim``."""
    if _glibc() is None:
        logger.info("no malloc_trim in this C library: the heap is not trimmed")
        return
    while True:
        await asyncio.sleep(every_s)
        began = time.perf_counter()
        await asyncio.to_thread(trim)
        logger.debug("heap trimmed in %.1f ms", 1000 * (time.perf_counter() - began))
