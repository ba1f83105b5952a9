"""docs/signaling.md's promise on live provisional flags, checked on the live pipeline:
"quality flags [lag the signal] by up to one quality block (5 s)"; the provisional list
replaces the previous chunk's; a flag becomes final once (issue 13: the document did not
say the provisional flags may be stale for seconds)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ecg.flags import Flag, FlagKind
from ecg.live import LiveConfig, live_start, live_step
from fixtures.make_fixtures import synthetic12
from teleconsult.device_cmd import SimulatedRecord

CHUNK_S = 0.2  # what the server cuts while someone watches (docs/device-protocol.md)


@pytest.fixture(scope="module")
def record() -> SimulatedRecord:
    """40 s of the synthetic 12-lead fixture (500 Hz)."""
    source = SimulatedRecord.read(str(synthetic12()))
    return dataclasses.replace(source, samples=np.tile(source.samples, (4, 1)))


@pytest.mark.parametrize("onset_s", [10.0, 11.3, 12.6, 13.9, 14.99])
@pytest.mark.parametrize("how", ["flat", "invalid"])
def test_a_lead_off_is_provisional_within_one_quality_block(
    record: SimulatedRecord, onset_s: float, how: str
) -> None:
    """Lead I off (flat, or the device's invalid sample) from ``onset_s`` for 12 s: a
    provisional lead_off on it comes at most one quality block (plus the chunk) after the
    onset, stays in every chunk's provisional list until it is final, and is final once."""
    fs = record.fs_hz
    block_s = LiveConfig().quality_block_s
    samples = record.samples.copy()
    on, off = round(onset_s * fs), round((onset_s + 12.0) * fs)
    samples[on:off, 0] = -32768 if how == "invalid" else samples[on, 0]
    state = live_start(fs, record.adc_gain, record.baseline)
    step = round(CHUNK_S * fs)
    first_seen: int | None = None
    finals: list[Flag] = []
    for start in range(0, len(samples), step):
        update, state = live_step(samples[start : start + step], state)
        end = start + step
        provisional = [f for f in update.provisional_flags if _lead_off_on_i(f)]
        finals += [f for f in update.flags if _lead_off_on_i(f)]
        if first_seen is None and provisional:
            first_seen = end
        if first_seen is not None and not finals:
            assert provisional, f"the provisional flag went away at {end / fs:.1f} s"
    assert first_seen is not None
    assert (first_seen - on) / fs <= block_s + CHUNK_S
    (final,) = finals
    assert final.onset <= on + block_s * fs
    assert final.offset >= off - block_s * fs


def _lead_off_on_i(flag: Flag) -> bool:
    return flag.kind is FlagKind.LEAD_OFF and flag.lead == 0
