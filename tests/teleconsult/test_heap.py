"""teleconsult.heap: the C heap's free pages returned to the system."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest

from api.edge_config import EdgeConfig
from teleconsult.heap import free_heap, free_heap_every

# In a process of its own, so that its RSS is its own: ~200 MiB of malloc'd blocks
# freed while the last block allocated (the heap's top) stays in use, so that the heap
# cannot shrink from the top by itself; then free_heap().
_FRAGMENTED = """
from teleconsult.heap import free_heap
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
blocks = [bytes(2000) for _ in range(100_000)]
pin = bytes(2000)
del blocks
before = rss_mib()
ran = free_heap()
print(before, rss_mib(), ran)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_free_heap_returns_the_free_pages_below_the_top_of_the_heap() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _FRAGMENTED], capture_output=True, text=True, check=True
    )
    before_mib, after_mib, ran = out.stdout.split()
    assert ran == "True"
    # The 200 MiB freed were still resident before, and are not after.
    assert float(before_mib) - float(after_mib) > 150.0


async def test_free_heap_every_trims_in_a_thread_until_cancelled() -> None:
    loop = asyncio.get_running_loop()
    three = asyncio.Event()
    threads: list[int] = []

    def trim() -> bool:
        threads.append(threading.get_ident())
        if len(threads) == 3:
            loop.call_soon_threadsafe(three.set)
        return free_heap()

    task = asyncio.create_task(free_heap_every(0.01, trim))
    await asyncio.wait_for(three.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert threading.get_ident() not in threads  # never on the event loop's thread


def test_the_period_is_validated() -> None:
    assert EdgeConfig(heap_trim_every_s=0).heap_trim_every_s == 0
    with pytest.raises(ValueError, match="heap_trim_every_s"):
        EdgeConfig(heap_trim_every_s=0.5)


# After a 4 MiB block is freed, glibc's threshold has risen past 1 MiB: a 1 MiB block
# comes from the heap, unless the threshold was fixed below it.
_LARGE = """
import ctypes, sys
from teleconsult.heap import map_large_blocks
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
fixed = sys.argv[1] == "fixed" and map_large_blocks(256 * 1024)
freed = bytearray(4 << 20)
del freed
alive = bytearray(1 << 20)
print(fixed, libc.mallinfo2().hblkhd)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_map_large_blocks_keeps_them_off_the_heap_after_a_larger_one_was_freed() -> None:
    def mapped(mode: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", _LARGE, mode], capture_output=True, text=True, check=True
        )
        fixed, mapped_bytes = out.stdout.split()
        return fixed, int(mapped_bytes)

    fixed, mapped_bytes = mapped("fixed")
    assert fixed == "True"
    assert mapped_bytes >= 1 << 20  # the live 1 MiB block is a mapping of its own
    _, glibc_own = mapped("own")
    assert glibc_own < 1 << 20  # glibc's risen threshold put it on the heap


def test_the_threshold_is_validated() -> None:
    assert EdgeConfig(heap_mmap_threshold_bytes=0).heap_mmap_threshold_bytes == 0
    with pytest.raises(ValueError, match="heap_mmap_threshold_bytes"):
        EdgeConfig(heap_mmap_threshold_bytes=64 * 1024 * 1024)
