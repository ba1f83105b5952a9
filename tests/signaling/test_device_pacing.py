"""Ingest pacing on /device: a cart sending faster than the configured multiple of real
time is slowed (its next message read later), never refused, and loses nothing."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np
import wfdb
from hypothesis import given
from hypothesis import strategies as st

from api.edge import EdgeServer
from api.ws_device import IngestPacer
from fixtures.make_fixtures import synthetic12
from sessions.tokens import verify_token
from teleconsult.app import install_ecg
from teleconsult.device_cmd import SimulatedRecord, simulate
from tests.signaling.conftest import SECRET, ws_url
from tests.signaling.test_device_endpoint import DEVICE, device_token


def test_the_pacer_lets_a_real_time_cart_through_and_holds_a_fast_one() -> None:
    """1 s of signal each second never waits; a burst over the budget waits for exactly
    the time the budget takes to refill."""
    pacer = IngestPacer(speed=10.0, burst_s=30.0)
    assert [pacer.spend(1.0, float(t)) for t in range(100)] == [0.0] * 100
    fast = IngestPacer(speed=10.0, burst_s=30.0)
    assert fast.spend(30.0, 0.0) == 0.0  # the whole burst at once
    assert math.isclose(fast.spend(5.0, 0.0), 0.5)  # 5 s more: 0.5 s at 10x
    assert math.isclose(fast.spend(0.0, 0.5), 0.0)  # refilled by then


@given(
    st.lists(
        st.tuples(st.floats(0, 5), st.floats(0, 2)), min_size=1, max_size=60
    ),  # (signal s, wall s before it)
    st.floats(1, 50),
    st.floats(1, 60),
)
def test_a_paced_sender_never_exceeds_burst_plus_speed_times_time(
    frames: list[tuple[float, float]], speed: float, burst_s: float
) -> None:
    """Whatever a device sends, if the reader waits as told, the signal taken by any
    moment is at most ``burst_s + speed * elapsed`` (plus the one frame that spent it)."""
    pacer = IngestPacer(speed=speed, burst_s=burst_s)
    now = taken = 0.0
    largest = 0.0
    for signal_s, pause_s in frames:
        now += pause_s
        wait = pacer.spend(signal_s, now)
        taken += signal_s
        largest = max(largest, signal_s)
        assert taken <= burst_s + speed * now + 1e-6 + largest
        now += wait


async def test_a_cart_sending_at_wire_speed_is_paced_and_stored_bit_exact(
    server: EdgeServer, tmp_path: Path
) -> None:
    """At 4x real time after a 2 s burst, the 10 s fixture sent as fast as possible takes
    at least (10 - 2) / 4 = 2 s to be taken; every sample is stored, on one connection."""
    server.config = dataclasses.replace(
        server.config, device_ingest_speed=4.0, device_ingest_burst_s=2.0
    )
    verify = functools.partial(verify_token, SECRET)
    ecg = install_ecg(server, tmp_path / "streams", verify, live_processes=0)
    source = SimulatedRecord.read(str(synthetic12()))
    signal_s = len(source.samples) / source.fs_hz
    result = await simulate(
        source, url=ws_url(server, "/device"), token=device_token(), device=DEVICE,
        speed=math.inf,
    )  # fmt: skip
    assert signal_s >= 10.0
    assert result.elapsed_s >= (signal_s - 2.0) / 4.0
    assert result.connections == 1  # slowed, never refused or dropped
    stored = wfdb.rdrecord(str(ecg.store.record_path(result.stream)), physical=False).d_signal
    np.testing.assert_array_equal(stored, source.samples)
