"""A viewer's listing costs the same among 100 large unfinished streams as among none
(issue 13: every ``ecg_list`` rescanned the sample file of every unfinished stream on the
event loop, 1.4-8.3 s with 51 of them; ``ecg_subscribe`` did it before checking the
viewer's right).

The cost is counted, not timed: every file the process opens or lists under the stream
store while the server answers (Python's audit events ``open``, ``os.listdir`` and
``os.scandir``, from any thread). None may be: what a listing needs is kept in memory.
"""

from __future__ import annotations

import functools
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.edge import EdgeServer
from ecg.device import Start
from ecg.streamstore import SAMPLES_FILE, START_FILE, StreamStore
from sessions.tokens import verify_token
from teleconsult.app import install_ecg
from tests.signaling.conftest import SECRET, Client, make_token, open_client

STREAMS = 100
SECONDS = 60  # of 12 leads at 500 Hz per stream: 720 kB of samples each
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
_TOUCHED: list[str] | None = None  # set while counting
_AUDITED = ("open", "os.listdir", "os.scandir")


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _TOUCHED is not None and event in _AUDITED and args and args[0] is not None:
        _TOUCHED.append(str(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one only counts when asked


@contextmanager
def touched(root: Path) -> Iterator[list[str]]:
    """The paths under ``root`` opened or listed while the block runs."""
    global _TOUCHED
    found: list[str] = []
    _TOUCHED = []
    try:
        yield found
    finally:
        seen, _TOUCHED = _TOUCHED, None
        found += [p for p in seen if p.startswith(str(root))]


def unfinished_streams(root: Path, count: int) -> list[str]:
    """``count`` streams of cart-1 for room r1, each SECONDS long, never ended."""
    store = StreamStore(root, fsync=False)
    rng = np.random.default_rng(13)
    samples = rng.integers(-2000, 2000, size=(SECONDS * 500, 12), dtype=np.int16)
    made = []
    for n in range(count):
        start = Start(
            version=1, device="cart-1", stream=uuid.uuid4(), patient=f"P-{n}", room="r1",
            fs_hz=500.0, leads=LEADS,
            adc_gain=[200.0] * 12, baseline=[0] * 12, resolution_bits=16,
            start_time=datetime(2026, 11, 23, 8, 0, n % 60, tzinfo=UTC),
        )  # fmt: skip
        writer = store.open("cart-1", start)
        writer.append(0, samples)
        writer.sync()
        writer.close()
        made.append(str(start.stream))
    return made


async def viewer(server: EdgeServer, room: str) -> Client:
    client = await open_client(server)
    await client.send(type="watch", token=make_token(f"viewer-{room}", room=room, role="expert"))
    await client.expect("watching")
    return client


async def listing_touches(server: EdgeServer, root: Path, room: str) -> tuple[int, list[str]]:
    """How many streams a viewer of ``room`` is listed, and the paths the answer touched."""
    client = await viewer(server, room)
    with touched(root) as paths:
        await client.send(type="ecg_list", ref="l")
        listed = (await client.expect("ecg_streams"))["streams"]
    return len(listed), paths


@pytest.mark.parametrize("count", [0, STREAMS])
async def test_listing_and_refusals_touch_no_stream_file(
    server: EdgeServer, tmp_path: Path, count: int
) -> None:
    """Among none or 100 unfinished streams: a listing for their room, one for an unrelated
    room, and a subscribe the token does not grant (not_found, as docs/signaling.md says:
    the stream does not exist for that viewer) open and list no file of the store."""
    root = tmp_path / "streams"
    made = unfinished_streams(root, count)
    install_ecg(
        server, root, functools.partial(verify_token, SECRET), live_processes=0,
        commit_interval_s=0.05,
    )  # fmt: skip
    assert await listing_touches(server, root, "r1") == (count, [])
    assert await listing_touches(server, root, "another-room") == (0, [])
    if made:
        outsider = await viewer(server, "another-room")
        with touched(root) as paths:
            await outsider.send(type="ecg_subscribe", stream=made[0], ref="s")
            error = await outsider.expect("error")
        assert (error["code"], error["ref"], paths) == ("not_found", "s", [])


def test_the_count_sees_opens_and_listings(tmp_path: Path) -> None:
    """The measure itself: the store's scan (files read, the folder listed, in another
    thread) is counted; what lies outside the root is not."""
    root = tmp_path / "streams"
    unfinished_streams(root, 1)
    with touched(root) as paths, ThreadPoolExecutor(1) as pool:
        pool.submit(StreamStore(root, fsync=False).streams).result()
        (tmp_path / "outside.txt").write_text("x")
    assert str(root) in paths  # listed
    assert any(p.endswith(SAMPLES_FILE) for p in paths)
    assert any(p.endswith(START_FILE) for p in paths)
    assert not any("outside" in p for p in paths)
