"""Rhythm from atrial activity: AF episodes, chunked equals batch, no-ECG detection,
pacing spikes, flutter waves and the rhythm of a short record."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import wfdb
from hypothesis import given, settings
from hypothesis import strategies as st

from ecg.detect import detect_qrs, detect_qrs_and_vf
from ecg.measure import measure
from ecg.rhythm import (
    BRADY_BPM,
    TACHY_BPM,
    Absence,
    AtrialConfig,
    RhythmCode,
    af_episodes,
    atrial_activity,
    atrial_flush,
    atrial_start,
    atrial_step,
    ecg_presence,
    flutter_waves,
    pacing_spikes,
    record_rhythm,
    rhythm_marks,
)

FloatArray = npt.NDArray[np.float64]
LIMB_LEADS = {"i": "I", "ii": "II", "iii": "III", "avr": "aVR", "avl": "aVL", "avf": "aVF"}


def _wave(t_s: FloatArray, centre_s: float, width_s: float, height_mv: float) -> FloatArray:
    return height_mv * np.exp(-0.5 * ((t_s - centre_s) / width_s) ** 2)


def synth(
    beats_s: npt.ArrayLike,
    fs_hz: float = 500.0,
    duration_s: float | None = None,
    *,
    p_wave: bool = True,
    pr_s: float = 0.16,
    f_waves_mv: float = 0.0,
    flutter_hz: float = 0.0,
    spike_mv: float = 0.0,
    n_leads: int = 2,
    noise_mv: float = 0.01,
    seed: int = 0,
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """A synthetic ECG: a QRS (1.2 mV), T wave and optionally a P wave ``pr_s`` before
    each beat, fibrillatory waves (band-limited noise 4-9 Hz), flutter waves (a sawtooth
    at ``flutter_hz``), pacing spikes 10 ms before each QRS; the R-peak samples too."""
    rng = np.random.default_rng(seed)
    times = np.asarray(beats_s, dtype=np.float64)
    n = round((duration_s or times[-1] + 1.0) * fs_hz)
    t = np.arange(n) / fs_hz
    x = np.zeros(n)
    for beat in times:
        lo, hi = max(0, round((beat - 0.5) * fs_hz)), min(n, round((beat + 0.6) * fs_hz))
        seg = t[lo:hi]
        x[lo:hi] += _wave(seg, beat, 0.012, 1.2) - _wave(seg, beat + 0.03, 0.01, 0.25)
        x[lo:hi] += _wave(seg, beat + 0.3, 0.05, 0.3)
        if p_wave:
            x[lo:hi] += _wave(seg, beat - pr_s, 0.025, 0.15)
        if spike_mv:
            k = round((beat - 0.04) * fs_hz)
            if 0 <= k < n:
                x[k] += spike_mv
    if f_waves_mv:
        from scipy import signal as sps

        sos = sps.butter(2, [4.0, 9.0], "bandpass", fs=fs_hz, output="sos")
        f = sps.sosfiltfilt(sos, rng.standard_normal(n))
        x += f_waves_mv * f / np.std(f)
    if flutter_hz:
        from scipy import signal as sps

        # A sawtooth, smoothed: the steep limb of a flutter wave takes tens of ms.
        saw = 0.15 * (2.0 * ((t * flutter_hz) % 1.0) - 1.0)
        x += sps.sosfiltfilt(sps.butter(2, 20.0, fs=fs_hz, output="sos"), saw)
    signal = np.stack([x * (1.0 - 0.3 * k) for k in range(n_leads)], axis=1)
    signal += noise_mv * rng.standard_normal(signal.shape)
    peaks = np.round(times * fs_hz).astype(np.int64)
    return signal, peaks[peaks < n]


def sinus_times(
    duration_s: float, rr_s: float, jitter_s: float = 0.01, seed: int = 1
) -> FloatArray:
    """Beat times of a regular rhythm with a little physiological jitter."""
    rng = np.random.default_rng(seed)
    rr = rr_s + jitter_s * rng.standard_normal(int(duration_s / rr_s))
    return 0.6 + np.cumsum(rr)


def af_times(duration_s: float, seed: int = 2) -> FloatArray:
    """Beat times of AF: RR drawn at random between 0.4 and 1.0 s."""
    rng = np.random.default_rng(seed)
    return 0.6 + np.cumsum(rng.uniform(0.4, 1.0, int(duration_s / 0.7)))


def test_af_is_called_on_irregular_rr_without_p_waves() -> None:
    """Irregular RR with fibrillatory waves and no P: one AF episode over most of it."""
    signal, beats = synth(af_times(120.0), p_wave=False, f_waves_mv=0.05)
    episodes = af_episodes(signal, beats, 500.0)
    covered = sum(e.offset - e.onset for e in episodes)
    assert covered > 0.8 * (beats[-1] - beats[0])
    assert all(e.code == "AFIB" and e.coherence < AtrialConfig().af_coherence for e in episodes)


def test_irregular_rr_with_p_waves_is_not_af() -> None:
    """The same irregular RR with a P wave before every QRS is not AF (RR alone is not)."""
    signal, beats = synth(af_times(120.0), p_wave=True)
    assert af_episodes(signal, beats, 500.0) == []


def test_regular_rhythm_without_p_waves_is_not_af() -> None:
    """A regular junctional-like rhythm (no P wave) is not AF: it is not irregular."""
    signal, beats = synth(sinus_times(120.0, 0.8), p_wave=False, f_waves_mv=0.03)
    assert af_episodes(signal, beats, 500.0) == []


def test_sinus_rhythm_with_frequent_premature_beats_is_not_af() -> None:
    """Every third beat premature (coupling 0.5, pause 1.1): P waves present, no AF."""
    rr = np.tile([0.8, 0.5, 1.1], 60)
    signal, beats = synth(0.6 + np.cumsum(rr), p_wave=True)
    assert af_episodes(signal, beats, 500.0) == []


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 120_000), min_size=1, max_size=12, unique=True))
def test_atrial_chunked_equals_batch(cuts: list[int]) -> None:
    """Cutting the stream anywhere gives the batch AF episodes, each once."""
    times = np.concatenate([sinus_times(60.0, 0.8), 60.6 + af_times(80.0)[:-1]])
    signal, beats = synth(times, p_wave=False, f_waves_mv=0.05, duration_s=142.0)
    # P waves only in the sinus part.
    sinus, _ = synth(times[times < 60.6], p_wave=True, duration_s=142.0, noise_mv=0.0)
    signal[: sinus.shape[0]] += 0.0 * sinus
    batch = af_episodes(signal, beats, 500.0)
    state = atrial_start(signal.shape[1], 500.0)
    found = []
    edges = [0, *sorted(c for c in cuts if c < signal.shape[0]), signal.shape[0]]
    given_until = 0
    for lo, hi in itertools.pairwise(edges):
        # Beats are handed over when the stream is 0.3 s past them, as the detector does.
        ready = beats[(beats >= given_until) & (beats + 150 <= hi)]
        given_until = int(ready[-1]) + 1 if ready.size else given_until
        final, _, state = atrial_step(signal[lo:hi], ready, state)
        found += final
    found += atrial_step(signal[:0], beats[beats >= given_until], state)[0]
    found += atrial_flush(state)
    assert found == batch
    assert batch


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(1, 30_000), min_size=1, max_size=25),
    st.integers(0, 400),
    st.sampled_from([1, 3, 12]),
)
def test_atrial_per_beat_measures_chunked_equal_batch(
    cuts: list[int], lag: int, n_leads: int
) -> None:
    """Per-beat coherence (per lead), irregularity, AF calls and prematurity of a stream
    cut anywhere, its beats handed over late or early, equal the batch ones bit for bit:
    the cached per-beat quantities (ring buffers that wrap, trim and grow when a chunk
    brings many beats) give what a fresh computation of the whole record gives."""
    times = np.concatenate([sinus_times(50.0, 0.8), 50.6 + af_times(60.0)[:-1]])
    rr = np.diff(times)
    times[1:][rr > 0.9] -= 0.3  # some premature beats in the sinus part
    signal, beats = synth(times, p_wave=False, f_waves_mv=0.05, duration_s=112.0, n_leads=n_leads)
    sinus, _ = synth(times[times < 50.6], p_wave=True, duration_s=112.0, n_leads=n_leads)
    signal += sinus
    batch = atrial_activity(signal, beats, 500.0)
    state = atrial_start(n_leads, 500.0, keep_beats=True)
    episodes = []
    given_until = lo = 0
    for size in itertools.cycle(cuts):
        if lo >= signal.shape[0]:
            break
        hi = min(lo + size, signal.shape[0])
        ready = beats[(beats >= given_until) & (beats + 40 + lag <= hi)]
        given_until = int(ready[-1]) + 1 if ready.size else given_until
        episodes += atrial_step(signal[lo:hi], ready, state)[0]
        lo = hi
    episodes += atrial_step(signal[:0], beats[beats >= given_until], state)[0]
    episodes += atrial_flush(state)
    h = state.history
    np.testing.assert_array_equal(np.asarray(h["beats"]), batch.beats)
    np.testing.assert_array_equal(np.asarray(h["coherence"]), batch.coherence)
    np.testing.assert_array_equal(
        np.asarray(h["per_lead"]).reshape(-1, n_leads), batch.coherence_per_lead
    )
    np.testing.assert_array_equal(np.asarray(h["irr"]), batch.irregularity)
    np.testing.assert_array_equal(np.asarray(h["af"]), batch.af)
    np.testing.assert_array_equal(np.asarray(h["premature"]), batch.premature)
    assert episodes == batch.episodes
    assert batch.af.any()
    assert not batch.af.all()
    assert batch.premature.any()


def test_atrial_state_stays_bounded() -> None:
    """A long stream keeps a bounded number of beats in its state."""
    signal, beats = synth(af_times(600.0), p_wave=False, f_waves_mv=0.05)
    state = atrial_start(2, 500.0)
    for lo in range(0, signal.shape[0], 5000):
        chunk_beats = beats[(beats >= lo - 150) & (beats < lo + 5000 - 150)]
        atrial_step(signal[lo : lo + 5000], chunk_beats, state)
        assert len(state.samples) <= AtrialConfig().window_beats + AtrialConfig().smooth_beats + 8


def test_atrial_activity_per_beat_arrays_line_up() -> None:
    """Per-beat arrays have one value per beat; premature beats are flagged."""
    rr = np.tile([0.8, 0.5, 1.1], 20)
    signal, beats = synth(0.6 + np.cumsum(rr))
    activity = atrial_activity(signal, beats, 500.0)
    n = beats.size
    assert activity.coherence.shape == activity.irregularity.shape == activity.af.shape == (n,)
    assert activity.coherence_per_lead.shape == (n, 2)
    assert activity.premature[1:-1:3].all()  # the 0.5 s beats
    assert not activity.premature[2::3].any()
    assert np.nanmedian(activity.coherence) > 0.7


def test_bad_beats_are_refused() -> None:
    """Beats outside the record or not increasing raise SignalError, a ValueError."""
    signal, beats = synth(sinus_times(10.0, 0.8))
    with pytest.raises(ValueError, match="increasing"):
        atrial_activity(signal, beats[::-1], 500.0)
    with pytest.raises(ValueError, match="inside"):
        atrial_activity(signal, np.array([signal.shape[0] + 5]), 500.0)


def test_af_on_mitdb_221_and_none_on_100(ecg_dir: Path) -> None:
    """MIT-BIH 221 (AF throughout): most of it is AF; 100 (sinus): none of it."""
    for name, low, high in (("221", 0.8, 1.0), ("100", 0.0, 0.0)):
        record = wfdb.rdrecord(str(ecg_dir / "mitdb" / name))
        signal = record.p_signal
        beats = detect_qrs(signal, record.fs)
        covered = sum(e.offset - e.onset for e in af_episodes(signal, beats, record.fs))
        assert low <= covered / signal.shape[0] <= high


# --------------------------------------------------------------------------- presence


def test_noise_records_hold_no_ecg(ecg_dir: Path) -> None:
    """The MIT-BIH noise records (bw, ma) hold no ECG, though the detector finds 'beats'."""
    for name in ("bw", "ma"):
        record = wfdb.rdrecord(str(ecg_dir / "noise" / name), sampto=360 * 120)
        beats, vf = detect_qrs_and_vf(record.p_signal, record.fs)
        assert beats.size > 50
        presence = ecg_presence(record.p_signal, beats, record.fs, vf)
        assert not presence.present
        assert presence.reason is Absence.NOISE


def test_real_ecg_is_present(ecg_dir: Path) -> None:
    """MIT-BIH 100, 105 (noisy) and 207 (ventricular flutter) hold an ECG; at most one of
    their 180 windows of 10 s reads as noise."""
    for name in ("100", "105", "207"):
        record = wfdb.rdrecord(str(ecg_dir / "mitdb" / name))
        beats, vf = detect_qrs_and_vf(record.p_signal, record.fs)
        presence = ecg_presence(record.p_signal, beats, record.fs, vf)
        assert presence.present
        assert len(presence.absent) <= 3 if name == "105" else len(presence.absent) <= 1


def test_flat_gain_zero_and_missing_records() -> None:
    """A flat record (gain 0) is FLAT, an all-NaN one NO_SIGNAL, an empty one too."""
    flat = np.full((5000, 12), 0.3)
    assert ecg_presence(flat, np.array([100, 900]), 500.0).reason is Absence.FLAT
    nan = np.full((5000, 2), np.nan)
    assert ecg_presence(nan, np.zeros(0, np.int64), 500.0).reason is Absence.NO_SIGNAL
    assert not ecg_presence(np.zeros((0, 2)), np.zeros(0, np.int64), 500.0).present


def test_flat_stretch_is_absent_only_there() -> None:
    """Ten seconds of flat line inside a real trace are absent; the record is present."""
    signal, beats = synth(sinus_times(40.0, 0.8))
    signal[10_000:15_000] = 0.0
    beats = beats[(beats < 10_000) | (beats >= 15_000)]
    presence = ecg_presence(signal, beats, 500.0)
    assert presence.present
    assert [(a, b, r) for a, b, r in presence.absent] == [(10_000, 15_000, Absence.FLAT)]


# --------------------------------------------------------------------------- short records


def test_record_rhythm_rates() -> None:
    """Sinus at 75, 50 and 120/min: SR, SBRAD, STACH, with the rate as evidence."""
    for rr_s, code in ((0.8, RhythmCode.SR), (1.2, RhythmCode.SBRAD), (0.5, RhythmCode.STACH)):
        signal, beats = synth(sinus_times(10.0, rr_s), duration_s=11.0, n_leads=12)
        rhythm = record_rhythm(signal, beats, 500.0)
        assert rhythm.code is code
        assert rhythm.evidence["hr_bpm"] == pytest.approx(60.0 / rr_s, rel=0.05)


def test_sinus_bradycardia_only_clearly_below_60_per_minute() -> None:
    """A sinus rhythm at 57/min (under the AHA's 60, over ``BRADY_BPM``) is SR, at
    52/min SBRAD; the rate thresholds it was compared with are in the evidence."""
    assert 50.0 < BRADY_BPM < 57.0
    for hr_bpm, code in ((57.0, RhythmCode.SR), (52.0, RhythmCode.SBRAD)):
        signal, beats = synth(sinus_times(12.0, 60.0 / hr_bpm, 0.002), n_leads=12)
        rhythm = record_rhythm(signal, beats, 500.0)
        assert rhythm.code is code
        assert rhythm.evidence["hr_bpm"] == pytest.approx(hr_bpm, rel=0.02)
        assert rhythm.evidence["brady_below_bpm"] == BRADY_BPM
        assert rhythm.evidence["tachy_above_bpm"] == TACHY_BPM


def test_record_rhythm_af_and_svt() -> None:
    """Irregular without P is AFIB; regular at 180/min without a delineated P is SVTAC.

    At 180/min the atrial segment holds the previous beat's T wave, as regular as a P
    wave would be: there the delineation's P waves decide.
    """
    signal, beats = synth(af_times(10.0, seed=5), p_wave=False, f_waves_mv=0.05, n_leads=12)
    assert record_rhythm(signal, beats, 500.0).code is RhythmCode.AFIB
    signal, beats = synth(sinus_times(10.0, 1 / 3.0, 0.002), p_wave=False, n_leads=12)
    no_p = np.zeros(beats.size, bool)
    assert record_rhythm(signal, beats, 500.0, p_present=no_p).code is RhythmCode.SVTAC


def test_record_rhythm_delineated_p_waves_veto() -> None:
    """Delineated P waves absent from most beats take the P waves away (no sinus)."""
    rr = np.random.default_rng(6).uniform(0.75, 1.2, 12)  # irregular, never short
    signal, beats = synth(0.6 + np.cumsum(rr), p_wave=True, n_leads=12)
    assert record_rhythm(signal, beats, 500.0).code in (RhythmCode.SARRH, RhythmCode.SR)
    no_p = np.zeros(beats.size, bool)
    assert record_rhythm(signal, beats, 500.0, p_present=no_p).code is RhythmCode.AFIB


def test_pacing_spikes_make_a_paced_rhythm() -> None:
    """A 3 mV spike 40 ms before every QRS: PACE; none below 250 Hz (not assessable)."""
    signal, beats = synth(sinus_times(10.0, 0.8), spike_mv=3.0, n_leads=12)
    pacing = pacing_spikes(signal, beats, 500.0)
    assert pacing.fraction > 0.9
    assert pacing.lag_ms == pytest.approx(40.0, abs=4.0)
    assert record_rhythm(signal, beats, 500.0).code is RhythmCode.PACE
    clean, beats = synth(sinus_times(10.0, 0.8), n_leads=12)
    assert pacing_spikes(clean, beats, 500.0).fraction < 0.2
    assert not pacing_spikes(clean[::5], beats // 5, 100.0).assessable


def test_small_bipolar_spikes_in_every_lead_make_a_paced_rhythm() -> None:
    """A 0.15 mV one-sample spike before each QRS in all leads at once (a bipolar
    pacemaker's, an eighth of the QRS): PACE; the same spike in one lead only (an
    electrode's artefact), at random instants (noise) or lost samples (NaN): not paced."""
    signal, beats = synth(sinus_times(10.0, 0.8), n_leads=12)
    spikes = beats - round(0.01 * 500.0)
    paced = signal.copy()
    paced[spikes] += 0.15
    assert pacing_spikes(paced, beats, 500.0).fraction > 0.9
    assert record_rhythm(paced, beats, 500.0).code is RhythmCode.PACE
    one_lead = signal.copy()
    one_lead[spikes, 0] += 0.15
    assert pacing_spikes(one_lead, beats, 500.0).fraction < 0.2
    scattered = signal.copy()
    rng = np.random.default_rng(5)
    scattered[spikes - rng.integers(0, 150, spikes.size)] += 0.15
    assert pacing_spikes(scattered, beats, 500.0).fraction < 0.3
    lost = signal.copy()
    lost[spikes] = np.nan  # a sample lost in every lead is no spike
    assert pacing_spikes(lost, beats, 500.0).fraction < 0.2


def test_ludb_bipolar_pacing_is_paced_and_sinus_records_are_not(ecg_dir: Path) -> None:
    """LUDB 90 (complete AV block, bipolar ventricular pacing, spikes of 0.1-0.5 mV):
    spikes before most beats, marked as the statements mark them; LUDB 1 and 2 (sinus,
    unpaced): before hardly any."""
    folder = ecg_dir / "ludb-dev"
    if not (folder / "90.hea").exists():
        pytest.skip(f"LUDB records not found under {folder}")
    for name, low, high in (("90", 0.5, 1.0), ("1", 0.0, 0.15), ("2", 0.0, 0.15)):
        raw = wfdb.rdrecord(str(folder / name), physical=False)
        signal = (raw.d_signal - np.asarray(raw.baseline)) / 1000.0  # µV samples
        beats = detect_qrs(signal, raw.fs)
        names = [LIMB_LEADS.get(n, n.upper()) for n in raw.sig_name]
        onsets = measure(signal, raw.fs, names, beats).delineation.beat_fiducials.column("qrs_on")
        marks = rhythm_marks(beats, onsets, raw.fs)  # wide complexes at their onset
        assert low <= pacing_spikes(signal, marks, raw.fs).fraction <= high, name


def test_rhythm_marks_hold_wide_complexes_at_their_onset() -> None:
    """Marks up to 120 ms after a regular QRS onset come back to 40 ms after it; marks
    within 40 ms (narrow complexes), beats without an onset, and inputs that would not
    stay increasing keep the detector's marks."""
    fs = 500.0
    onsets = 300 + 500 * np.arange(10)
    late = onsets + np.random.default_rng(4).integers(25, 60, onsets.size)
    marks = rhythm_marks(late, onsets, fs)
    assert np.array_equal(marks, onsets + 20)
    narrow = onsets + np.random.default_rng(5).integers(10, 20, onsets.size)
    assert np.array_equal(rhythm_marks(narrow, onsets, fs), narrow)
    missing = onsets.copy()
    missing[3] = -1
    assert rhythm_marks(late, missing, fs)[3] == late[3]
    assert np.array_equal(rhythm_marks(late, onsets[:-1], fs), late)
    crowded = np.array([100, 130])
    assert np.array_equal(rhythm_marks(crowded, np.array([100, 50]), fs), crowded)


def test_wide_complexes_marked_anywhere_stay_paced_and_regular() -> None:
    """Paced beats at a regular 75/min, the detector's mark anywhere up to 80 ms late:
    on those marks the spikes' lag wanders and the RR look irregular; on the marks
    held at the QRS onset the rhythm is paced and regular."""
    signal, beats = synth(sinus_times(10.0, 0.8, 0.002), spike_mv=3.0, n_leads=12)
    shift = np.random.default_rng(7).integers(0, 40, beats.size)
    late = beats + shift
    onsets = beats - 20  # the QRS taken to begin 40 ms before the synthetic R peak
    assert pacing_spikes(signal, late, 500.0).fraction < 0.5
    assert record_rhythm(signal, late, 500.0).evidence["rr_range_ms"] > 50.0
    rhythm = record_rhythm(signal, rhythm_marks(late, onsets, 500.0), 500.0)
    assert rhythm.code is RhythmCode.PACE
    assert rhythm.evidence["rr_range_ms"] < 20.0


def test_flutter_waves_at_300_per_minute() -> None:
    """Sawtooth atrial waves at 5 Hz, 4:1 conduction with a varying AV delay: flutter at
    300/min, AFLT. (Waves locked to the QRS at a fixed delay would sit in the atrial
    segment like P waves, and cancel with the QRST template: not found.)"""
    times = 0.6 + 0.8 * np.arange(1, 13) + np.random.default_rng(3).normal(0.0, 0.04, 12)
    signal, beats = synth(times, p_wave=False, flutter_hz=5.0, n_leads=12)
    waves = flutter_waves(signal, beats, 500.0)
    assert waves.rate_per_min == pytest.approx(300.0, abs=10.0)
    assert waves.n_leads >= 3
    assert record_rhythm(signal, beats, 500.0).code is RhythmCode.AFLT
    clean, beats = synth(sinus_times(10.0, 0.8), n_leads=12)
    assert flutter_waves(clean, beats, 500.0).n_leads == 0


@pytest.mark.parametrize("ratio", [2, 3, 4])
def test_flutter_locked_to_the_qrs_is_neither_af_nor_sinus(ratio: int) -> None:
    """Sawtooth waves at 285/min conducted every ``ratio``-th wave at a fixed AV delay,
    no P wave delineated. The F waves sit in the median QRST template and cancel with
    it (flutter_waves finds none today), but whatever is found the rhythm is not AF
    (the RR are regular) nor sinus (no P wave): flutter or undetermined."""
    flutter_hz = 4.75
    rr_s = ratio / flutter_hz
    times = 0.6 + rr_s * np.arange(int(9.0 / rr_s))
    signal, beats = synth(times, duration_s=10.0, p_wave=False, flutter_hz=flutter_hz, n_leads=12)
    rhythm = record_rhythm(signal, beats, 500.0, p_present=np.zeros(beats.size, dtype=bool))
    assert rhythm.code in (RhythmCode.AFLT, RhythmCode.UNDETERMINED)
    if rhythm.code is RhythmCode.AFLT:
        assert rhythm.evidence["atrial_rate_per_min"] == pytest.approx(285.0, abs=10.0)


@settings(max_examples=40, deadline=None)
@given(
    duration_s=st.floats(2.0, 12.0),
    fs_hz=st.sampled_from([100.0, 128.0, 250.0, 360.0, 500.0, 1000.0]),
    n_leads=st.integers(1, 12),
    nan_run=st.booleans(),
    clip=st.booleans(),
    spikes=st.booleans(),
)
def test_short_records_degrade_without_exception(
    duration_s: float, fs_hz: float, n_leads: int, nan_run: bool, clip: bool, spikes: bool
) -> None:
    """Any length from 2 s, rate from 100 Hz, lead count, NaN runs, clipping, spikes:
    a rhythm or a reason, never an exception."""
    times = sinus_times(duration_s, 0.75)
    times = times[times < duration_s - 0.2]
    signal, _ = synth(times, fs_hz, duration_s, n_leads=n_leads, spike_mv=2.0 if spikes else 0.0)
    if nan_run:
        signal[: signal.shape[0] // 3, 0] = np.nan
    if clip:
        signal = np.clip(signal, -0.2, 0.4)
    beats = detect_qrs(signal, fs_hz) if signal.shape[0] else np.zeros(0, np.int64)
    rhythm = record_rhythm(signal, beats, fs_hz)
    assert rhythm.code is not None or rhythm.reason
    ecg_presence(signal, beats, fs_hz)
    atrial_activity(signal, beats, fs_hz)
