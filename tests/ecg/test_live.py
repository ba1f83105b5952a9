"""The live pipeline: chunked equals batch, beats as the batch detector, heart rate on real data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wfdb
from hypothesis import given, settings
from hypothesis import strategies as st

from ecg.detect import detect_qrs, detect_qrs_and_vf
from ecg.errors import SignalError
from ecg.live import (
    LiveChunker,
    LiveConfig,
    LiveUpdate,
    _activity_start,
    _activity_step,
    _median,
    live_flush,
    live_start,
    live_step,
    live_warm_up,
)
from fixtures.make_fixtures import synthetic12


def run(record: wfdb.Record, cuts: list[int]) -> list[LiveUpdate]:
    """Feed the record's digital samples through the live pipeline, cut at ``cuts``."""
    state = live_start(record.fs, record.adc_gain, record.baseline)
    updates = []
    for chunk in np.split(record.d_signal, cuts):
        update, state = live_step(chunk, state)
        updates.append(update)
    updates.append(live_flush(state))
    return updates


def joined(updates: list[LiveUpdate]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Display samples, beats and RR intervals of a whole run."""
    display = np.concatenate([u.display_mv for u in updates])
    beats = np.concatenate([u.beats for u in updates])
    rr = np.concatenate([u.rr_s for u in updates])
    return display, beats, rr


def test_chunked_equals_one_shot() -> None:
    """Cutting the stream anywhere changes neither display samples, beats, RR nor heart rate."""
    record = wfdb.rdrecord(str(synthetic12()), physical=False)
    rng = np.random.default_rng(11)
    cuts = np.sort(rng.choice(np.arange(1, record.sig_len), size=60, replace=False)).tolist()
    whole, chunked = run(record, []), run(record, cuts)
    for one, many in zip(joined(whole), joined(chunked), strict=True):
        np.testing.assert_allclose(one, many, rtol=1e-6, atol=1e-6)
    assert whole[-1].heart_rate_bpm == pytest.approx(chunked[-1].heart_rate_bpm)
    starts = [u.display_first_index for u in chunked]
    counts = [len(u.display_mv) for u in chunked]
    assert starts == np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()


def test_live_beats_are_the_batch_detectors_beats() -> None:
    """The live beats are those detect_qrs finds on the same record in mV."""
    record = wfdb.rdrecord(str(synthetic12()), physical=False)
    physical = wfdb.rdrecord(str(synthetic12())).p_signal
    _, beats, rr = joined(run(record, list(range(50, record.sig_len, 50))))
    np.testing.assert_array_equal(beats, detect_qrs(physical, record.fs))
    assert np.isnan(rr[0])
    np.testing.assert_allclose(rr[1:], np.diff(beats) / record.fs)


def test_display_rate_and_units() -> None:
    """A 500 Hz stream is shown at 125 Hz, in mV of the right size."""
    record = wfdb.rdrecord(str(synthetic12()), physical=False)
    display, _, _ = joined(run(record, []))
    assert run(record, [])[0].display_fs_hz == 125.0
    assert len(display) == record.sig_len // 4
    physical = wfdb.rdrecord(str(synthetic12())).p_signal
    # The band-passed display keeps the QRS: its peak-to-peak is most of the raw one's.
    ratio = np.ptp(display[250:], axis=0) / np.ptp(physical, axis=0)
    assert (ratio > 0.5).all()
    assert (ratio < 1.5).all()


def test_heart_rate_on_mitdb_100(ecg_dir: Path) -> None:
    """Over MIT-BIH 100's first minute the live heart rate matches the reference beats'."""
    path = str(ecg_dir / "mitdb" / "100")
    record = wfdb.rdrecord(path, physical=False, sampto=60 * 360)
    updates = run(record, list(range(36, record.sig_len, 36)))
    reference = wfdb.rdann(path, "atr", sampto=60 * 360).sample[1:]
    expected = 60.0 * 360 / np.median(np.diff(reference[-9:]))
    assert updates[-1].heart_rate_bpm == pytest.approx(expected, abs=2.0)
    beats = joined(updates)[1]
    assert abs(len(beats) - len(reference)) <= 2


def test_invalid_samples_are_a_lead_off() -> None:
    """Samples of -32768 (WFDB's invalid value) show as NaN and do not disturb the beats."""
    record = wfdb.rdrecord(str(synthetic12()), physical=False)
    clean = joined(run(record, []))[1]
    record.d_signal = record.d_signal.copy()
    record.d_signal[1000:3000, 0] = -32768
    display, beats, _ = joined(run(record, list(range(100, record.sig_len, 100))))
    assert np.isnan(display[1000 // 4 + 1 : 3000 // 4, 0]).all()
    assert np.isfinite(display[:, 1:]).all()
    assert len(beats) == len(clean)
    assert np.abs(beats - clean).max() <= 0.05 * record.fs  # within 50 ms


def test_unsupported_streams_are_refused() -> None:
    """Rates or gains the live pipeline cannot use raise SignalError; bad config ConfigError."""
    with pytest.raises(SignalError):
        live_start(50.0, [200.0], [0])
    with pytest.raises(SignalError):
        live_start(500.0, [200.0, 0.0], [0, 0])
    with pytest.raises(ValueError, match="display_fs_hz"):
        LiveConfig(display_fs_hz=0)
    state = live_start(500.0, [200.0], [0])
    with pytest.raises(SignalError):
        live_step(np.zeros((10, 2), np.int16), state)


def test_flags_chunked_equal_one_shot() -> None:
    """The final flags of a run do not depend on how the stream was cut, and come once each."""
    record = wfdb.rdrecord(str(synthetic12()), physical=False)
    # Lead 0 off for 6 s: a lead-off flag the quality path must report.
    record.d_signal[1000:4000, 0] = -32768
    rng = np.random.default_rng(5)
    cuts = np.sort(rng.choice(np.arange(1, record.sig_len), size=40, replace=False)).tolist()
    whole = [f for u in run(record, []) for f in u.flags]
    chunked = [f for u in run(record, cuts) for f in u.flags]
    assert sorted(whole, key=repr) == sorted(chunked, key=repr)
    assert len(set(chunked)) == len(chunked)
    assert any(f.kind == "lead_off" and f.lead == 0 for f in chunked)


def test_chunker_gathers_blocks_of_the_chunk_length() -> None:
    """Frames of 20 samples come out as blocks of 100, the rest at take(), in order."""
    chunker = LiveChunker(2, 500.0, chunk_s=0.2)
    data = np.arange(2 * 530, dtype=np.int16).reshape(-1, 2)
    blocks = [b for i in range(0, 530, 20) if (b := chunker.push(data[i : i + 20])) is not None]
    assert [len(b) for b in blocks] == [100] * 5
    tail = chunker.take()
    assert tail is not None
    np.testing.assert_array_equal(np.concatenate([*blocks, tail]), data)
    assert chunker.take() is None


def test_chunker_block_size_can_change_between_pushes() -> None:
    """Blocks follow chunk_samples as set before each push; nothing is lost or reordered."""
    chunker = LiveChunker(2, 500.0, chunk_s=0.2)
    data = np.arange(2 * 1200, dtype=np.int16).reshape(-1, 2)
    blocks = []
    for i in range(0, 1200, 100):
        chunker.chunk_samples = 500 if i < 700 else 100  # idle, then watched
        if (block := chunker.push(data[i : i + 100])) is not None:
            blocks.append(block)
    assert [len(b) for b in blocks] == [500, 300, 100, 100, 100, 100]
    np.testing.assert_array_equal(np.concatenate(blocks), data)
    assert chunker.take() is None


def test_warm_up_runs_the_pipeline_and_finds_the_synthetic_beats() -> None:
    """live_warm_up finds beats of its 0.8 s beat train, at most one per R wave."""
    found = live_warm_up(duration_s=6.0)
    assert 0 < found <= 6.0 / 0.8


def test_warm_up_loads_the_af_window_kernel() -> None:
    """The default warm-up is long enough for the AF window (10 RR intervals), so a fresh
    process has its irregularity kernel before the first real stream needs it."""
    script = (
        "from ecg import _flags_kernels\n"
        "from ecg.live import live_warm_up\n"
        "live_warm_up()\n"
        "print(len(_flags_kernels.irregularity.signatures))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) >= 1


def _digital(mv: np.ndarray) -> np.ndarray:
    """mV to int16 ADC units at 200 units/mV, baseline 0."""
    digital: np.ndarray = np.round(np.nan_to_num(mv, nan=-32768 / 200.0) * 200.0).astype(np.int16)
    return digital


def _stream(digital: np.ndarray, fs_hz: float, chunk: int) -> list[LiveUpdate]:
    state = live_start(fs_hz, [200.0] * digital.shape[1], [0] * digital.shape[1])
    updates = []
    for first in range(0, len(digital), chunk):
        update, state = live_step(digital[first : first + chunk], state)
        updates.append(update)
    updates.append(live_flush(state))
    return updates


def _beats_then(fs_hz: float, seconds_of_beats: float, after: str, after_s: float) -> np.ndarray:
    """A 2-lead synthetic beat train, then ``after``: "flat" (electrodes on, heart
    stopped: a little noise), or "off" (invalid samples, leads off)."""
    from tests.ecg.test_rhythm import sinus_times, synth

    signal, _ = synth(sinus_times(seconds_of_beats, 0.8), fs_hz, seconds_of_beats + 0.5)
    rng = np.random.default_rng(4)
    if after == "flat":
        tail = 0.05 * rng.standard_normal((round(after_s * fs_hz), 2))
    else:
        tail = np.full((round(after_s * fs_hz), 2), np.nan)
    return _digital(np.concatenate([signal, tail]))


def test_heart_rate_shows_nothing_after_the_asystole_limit() -> None:
    """Beats stop: within 0.2 s of 3 s without a beat the rate is None and no_beat says
    asystole (signal still there); a PAUSE critical value is shown meanwhile."""
    fs = 250.0
    digital = _beats_then(fs, 10.0, "flat", 6.0)
    updates = _stream(digital, fs, 50)
    beats = np.concatenate([u.beats for u in updates])
    last_beat_s = beats[-1] / fs
    after = round(last_beat_s * fs / 50)  # the first update past the last beat
    first_blank = next(i for i, u in enumerate(updates) if u.heart_rate_bpm is None and i > after)
    blank_at_s = (first_blank + 1) * 50 / fs
    assert blank_at_s - last_beat_s == pytest.approx(3.0, abs=0.25)
    assert updates[first_blank].no_beat == "asystole"
    assert updates[first_blank - 1].heart_rate_bpm is not None
    shown = [
        i for i, u in enumerate(updates) if any(c.code == "PAUSE" for c in u.provisional_critical)
    ]
    assert shown
    assert (shown[0] + 1) * 50 / fs - last_beat_s <= 3.25


def test_leads_off_is_said_as_such() -> None:
    """Every lead invalid after the beats: the rate goes blank and no_beat is leads_off."""
    fs = 250.0
    updates = _stream(_beats_then(fs, 10.0, "off", 6.0), fs, 50)
    assert updates[-2].heart_rate_bpm is None
    assert updates[-2].no_beat == "leads_off"
    assert all(u.no_beat is None for u in updates[:40])


def test_live_af_and_critical_values_equal_batch() -> None:
    """AF episodes and critical values of a stream, however cut, are the batch ones."""
    from ecg.critical import critical_values
    from ecg.rhythm import af_episodes
    from tests.ecg.test_rhythm import af_times, sinus_times, synth

    fs = 250.0
    times = np.concatenate([sinus_times(30.0, 0.8), 31.0 + af_times(90.0)])
    times = np.concatenate([times, times[-1] + 3.6 + sinus_times(4.0, 0.8)])  # a pause
    signal, _ = synth(times, fs, times[-1] + 1.0, p_wave=False, f_waves_mv=0.05)
    digital = _digital(signal)
    mv = digital.astype(np.float64) / 200.0
    runs = {}
    for chunk in (50, 333):
        updates = _stream(digital, fs, chunk)
        runs[chunk] = (
            [e for u in updates for e in u.af],
            [c for u in updates for c in u.critical],
            np.concatenate([u.beats for u in updates]),
        )
    assert runs[50][0] == runs[333][0]
    assert sorted(runs[50][1], key=repr) == sorted(runs[333][1], key=repr)
    beats = runs[50][2]
    np.testing.assert_array_equal(beats, runs[333][2])
    assert runs[50][0] == af_episodes(mv, beats, fs)
    assert runs[50][0]
    _, vf = detect_qrs_and_vf(mv, fs)
    batch_critical = critical_values(
        beats,
        fs,
        len(digital),
        af_episodes=[(e.onset, e.offset) for e in runs[50][0]],
        vf_episodes=vf,
    )
    assert sorted(runs[50][1], key=repr) == sorted(batch_critical, key=repr)
    assert "PAUSE" in [c.code for c in batch_critical]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 1200),
    st.integers(1, 3),
    st.sampled_from([0.001, 0.05, 1.0]),
    st.floats(0.0, 0.9),
    st.lists(st.integers(1, 400), min_size=1, max_size=30),
    st.integers(0, 2**32 - 1),
)
def test_activity_blocks_are_the_same_however_the_stream_is_cut(
    n: int, n_leads: int, scale_mv: float, off_share: float, cuts: list[int], seed: int
) -> None:
    """Where the last block with signal ended (asystole versus leads off) does not
    depend on the chunking, with leads off (NaN) anywhere; the references are one block
    at a time and a numpy form."""
    rng = np.random.default_rng(seed)
    mv = rng.normal(0.0, scale_mv, (n, n_leads))
    mv[rng.random(mv.shape) < off_share] = np.nan
    chunked = _activity_start(n_leads, 500.0)
    by_block = _activity_start(n_leads, 500.0)
    position = 0
    for size in cuts * (n // max(sum(cuts), 1) + 1):
        if position >= n:
            break
        _activity_step(mv[position : position + size], position, chunked)
        position += size
    for first in range(0, n, by_block.block):
        _activity_step(mv[first : first + by_block.block], first, by_block)
    assert chunked.last_active_end == by_block.last_active_end
    assert chunked.filled == by_block.filled == n % by_block.block
    np.testing.assert_array_equal(chunked.valid, by_block.valid)
    assert chunked.last_active_end == _last_active_end(mv, by_block.block)


def _last_active_end(mv: np.ndarray, block: int) -> int:
    """The end of the last whole block with signal, by numpy (the compiled pass's
    reference): a lead with half its samples finite and a peak-to-peak of 0.02 mV."""
    last = 0
    for first in range(0, len(mv) - block + 1, block):
        piece = mv[first : first + block]
        finite = np.isfinite(piece)
        low = np.where(finite, piece, np.inf).min(axis=0)
        high = np.where(finite, piece, -np.inf).max(axis=0)
        if ((2 * finite.sum(axis=0) >= block) & (high - low >= 0.02)).any():
            last = first + block
    return last


@given(st.lists(st.integers(1, 2**40), min_size=1, max_size=12))
def test_heart_rate_median_is_numpys(intervals: list[int]) -> None:
    """The RR intervals' median is np.median's, bit for bit."""
    assert _median(intervals) == float(np.median(np.asarray(intervals, dtype=np.int64)))
