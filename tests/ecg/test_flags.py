"""Rhythm and quality flags on signals synthesised to contain each condition, and on clean ones."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.ndimage import uniform_filter1d

from ecg.errors import ConfigError, SignalError
from ecg.filters import filter_zero_phase
from ecg.flags import (
    Flag,
    FlagConfig,
    FlagKind,
    RhythmState,
    all_leads_off,
    merge_episodes,
    quality_flags,
    quality_flush,
    quality_start,
    quality_step,
    rhythm_flags,
    rhythm_flush,
    rhythm_start,
    rhythm_step,
    running_median,
)
from fixtures.make_fixtures import regular_beats, synthetic_ecg

FS_HZ = 250.0


def _samples(times_s: NDArray[np.float64] | list[float]) -> NDArray[np.int64]:
    return np.round(np.asarray(times_s) * FS_HZ).astype(np.int64)


def _kinds(flags: list[Flag]) -> set[FlagKind]:
    return {flag.kind for flag in flags}


def _of(flags: list[Flag], kind: FlagKind) -> list[Flag]:
    return [flag for flag in flags if flag.kind is kind]


# --------------------------------------------------------------------------- rhythm


@pytest.mark.parametrize("rate_bpm", [60.0, 75.0, 95.0])
def test_regular_sinus_rhythm_has_no_rhythm_flag(rate_bpm: float) -> None:
    """A regular rhythm between 50 and 100 bpm raises nothing."""
    beats = _samples(regular_beats(60.0, rate_bpm))
    assert rhythm_flags(beats, FS_HZ, int(60 * FS_HZ)) == []


def test_regular_rhythm_with_physiological_jitter_is_not_irregular() -> None:
    """RR varying by ±2 % at random (sinus variability) is not AF."""
    rng = np.random.default_rng(4)
    rr_s = 0.8 * (1 + rng.uniform(-0.02, 0.02, 80))
    beats = _samples(0.5 + np.concatenate([[0.0], np.cumsum(rr_s)]))
    assert rhythm_flags(beats, FS_HZ, int(beats[-1] + FS_HZ)) == []


def test_bradycardia_spans_the_slow_beats() -> None:
    """40 bpm for 30 s in the middle of 70 bpm is one bradycardia episode there."""
    times = np.concatenate(
        [
            np.arange(0.5, 20.0, 60 / 70),
            np.arange(20.0, 50.0, 60 / 40),
            np.arange(50.0, 70, 60 / 70),
        ]
    )
    beats = _samples(times)
    flags = rhythm_flags(beats, FS_HZ, int(70 * FS_HZ))
    assert _kinds(flags) == {FlagKind.BRADYCARDIA}
    (brady,) = flags
    assert abs(brady.onset / FS_HZ - 20.0) < 3.0
    assert abs(brady.offset / FS_HZ - 50.0) < 3.0
    assert brady.measure == pytest.approx(40.0, abs=1.0)
    assert brady.lead is None


def test_tachycardia_over_a_whole_record() -> None:
    """130 bpm throughout is tachycardia from the first to the last beat."""
    beats = _samples(regular_beats(10.0, 130.0))
    flags = rhythm_flags(beats, FS_HZ, int(10 * FS_HZ))
    assert _kinds(flags) == {FlagKind.TACHYCARDIA}
    assert flags[0].onset == beats[0]
    assert flags[0].offset == beats[-1]
    assert flags[0].measure == pytest.approx(130.0, abs=1.0)


def test_short_rate_episode_is_dropped() -> None:
    """Three fast beats (shorter than min_rate_episode_s) are not tachycardia."""
    times = np.concatenate(
        [np.arange(0.5, 10.0, 0.8), [10.0, 10.45, 10.9, 11.35], np.arange(12.15, 20.0, 0.8)]
    )
    flags = rhythm_flags(_samples(times), FS_HZ, int(20 * FS_HZ))
    assert FlagKind.TACHYCARDIA not in _kinds(flags)


def test_pause_of_two_and_a_half_seconds() -> None:
    """A 2.5 s RR interval is a pause from one beat to the next, and nothing else."""
    times = np.concatenate([np.arange(0.5, 10.0, 0.8), np.arange(10.0 + 2.5, 20.0, 0.8)])
    times = np.sort(np.append(times, 10.0))
    beats = _samples(times)
    flags = rhythm_flags(beats, FS_HZ, int(20 * FS_HZ))
    assert _kinds(flags) == {FlagKind.PAUSE}
    (pause,) = flags
    assert pause.onset == _samples([10.0])[0]
    assert pause.offset == _samples([12.5])[0]
    assert pause.measure == pytest.approx(2.5)


def test_five_seconds_without_beats_is_asystole_not_pause() -> None:
    """A 5 s gap between beats is asystole (and not also a pause)."""
    times = np.concatenate([np.arange(0.5, 10.2, 0.8), np.arange(15.1, 25.0, 0.8)])
    flags = rhythm_flags(_samples(times), FS_HZ, int(25 * FS_HZ))
    assert _kinds(flags) == {FlagKind.ASYSTOLE}
    assert flags[0].measure == pytest.approx(5.0, abs=0.1)


def test_asystole_at_record_start_and_end() -> None:
    """No beat in the first 5 s nor in the last 6 s: asystole at both ends."""
    times = np.arange(5.0, 14.1, 0.8)
    n_samples = int((times[-1] + 6.0) * FS_HZ)
    flags = rhythm_flags(_samples(times), FS_HZ, n_samples)
    asystoles = _of(flags, FlagKind.ASYSTOLE)
    assert [(flag.onset, flag.offset) for flag in asystoles] == [
        (0, _samples([5.0])[0]),
        (_samples([times[-1]])[0], n_samples),
    ]


def test_record_without_beats_is_one_asystole() -> None:
    """A 10 s record with no beat at all is asystole over its whole length."""
    flags = rhythm_flags(np.array([], dtype=np.int64), FS_HZ, int(10 * FS_HZ))
    assert [(f.kind, f.onset, f.offset) for f in flags] == [(FlagKind.ASYSTOLE, 0, int(10 * FS_HZ))]


def test_short_record_without_beats_is_not_asystole() -> None:
    """Three seconds without a beat cannot show four seconds of asystole."""
    assert rhythm_flags(np.array([], dtype=np.int64), FS_HZ, int(3 * FS_HZ)) == []


def test_unreadable_stretch_is_not_asystole() -> None:
    """Where every lead is off, the missing beats are not called asystole."""
    times = np.concatenate([np.arange(0.5, 10.01, 0.8), np.arange(20.1, 30.0, 0.8)])
    beats = _samples(times)
    unreadable = [(int(10.5 * FS_HZ), int(19.8 * FS_HZ))]
    flags = rhythm_flags(beats, FS_HZ, int(30 * FS_HZ), unreadable=unreadable)
    assert FlagKind.ASYSTOLE not in _kinds(flags)


def test_random_rr_is_irregular() -> None:
    """RR drawn at random between 0.4 and 1.0 s (AF-like) is flagged irregular throughout."""
    rng = np.random.default_rng(7)
    rr_s = rng.uniform(0.4, 1.0, 60)
    beats = _samples(0.5 + np.concatenate([[0.0], np.cumsum(rr_s)]))
    flags = rhythm_flags(beats, FS_HZ, int(beats[-1] + FS_HZ))
    irregular = _of(flags, FlagKind.IRREGULAR)
    covered = sum(flag.offset - flag.onset for flag in irregular)
    assert covered > 0.8 * (beats[-1] - beats[0])
    assert all(flag.measure > FlagConfig().af_irregularity for flag in irregular)


def test_bigeminy_is_not_irregular() -> None:
    """Alternating short and long RR (bigeminy) is regular in its own way: no AF flag."""
    rr_s = np.tile([0.5, 1.1], 30)
    beats = _samples(0.5 + np.concatenate([[0.0], np.cumsum(rr_s)]))
    flags = rhythm_flags(beats, FS_HZ, int(beats[-1] + FS_HZ))
    assert FlagKind.IRREGULAR not in _kinds(flags)


def test_one_ectopic_beat_is_not_irregular() -> None:
    """One premature beat with its compensatory pause in a regular rhythm is not AF."""
    times = list(np.arange(0.5, 30.0, 0.8))
    times[15] -= 0.3
    flags = rhythm_flags(_samples(times), FS_HZ, int(31 * FS_HZ))
    assert FlagKind.IRREGULAR not in _kinds(flags)


def test_bad_beats_are_refused() -> None:
    """Unsorted or out-of-range beat samples are a SignalError."""
    with pytest.raises(SignalError):
        rhythm_flags(np.array([10, 5]), FS_HZ, 100)
    with pytest.raises(SignalError):
        rhythm_flags(np.array([10, 500]), FS_HZ, 100)


# --------------------------------------------------------------------------- quality


def _clean(duration_s: float = 20.0, n_leads: int = 3) -> NDArray[np.float64]:
    return synthetic_ecg(FS_HZ, duration_s, regular_beats(duration_s, 72.0), n_leads=n_leads)


def _quality(raw: NDArray[np.float64], **limits: NDArray[np.float64]) -> list[Flag]:
    filtered = filter_zero_phase(raw, FS_HZ)
    return quality_flags(raw, filtered, FS_HZ, adc_limits_mv=limits.get("adc_limits_mv"))


def test_clean_signal_has_no_quality_flag() -> None:
    """A clean synthetic ECG raises no quality flag on any lead."""
    assert _quality(_clean()) == []


def test_clean_signal_with_electrode_offset_has_no_flag() -> None:
    """A constant electrode offset is not baseline wander."""
    assert _quality(_clean() + 3.0) == []


def test_flat_lead_is_lead_off_on_that_lead_only() -> None:
    """A lead stuck at a constant is lead-off for the whole record; other leads clean."""
    raw = _clean()
    raw[:, 1] = 0.7
    flags = _quality(raw)
    assert [(f.kind, f.lead, f.onset, f.offset) for f in flags] == [
        (FlagKind.LEAD_OFF, 1, 0, raw.shape[0])
    ]


def test_disconnected_stretch_is_lead_off_with_onset_and_offset() -> None:
    """NaN from 5 to 9 s on lead 0 is lead-off over about that stretch."""
    raw = _clean()
    raw[int(5 * FS_HZ) : int(9 * FS_HZ), 0] = np.nan
    flags = _quality(raw)
    off = _of(flags, FlagKind.LEAD_OFF)
    assert len(off) == 1
    assert off[0].lead == 0
    assert abs(off[0].onset / FS_HZ - 5.0) <= 1.0
    assert abs(off[0].offset / FS_HZ - 9.0) <= 1.0


def test_clipped_lead_is_saturation() -> None:
    """A lead clipped at ±0.5 mV (flat tops at its extremes) is saturated; others clean."""
    raw = _clean()
    raw[:, 2] = np.clip(raw[:, 2] * 2.0, -0.5, 0.5)
    flags = _quality(raw)
    saturated = _of(flags, FlagKind.SATURATION)
    assert saturated
    assert {flag.lead for flag in flags} == {2}
    assert sum(flag.offset - flag.onset for flag in saturated) > 0.8 * raw.shape[0]


def test_samples_at_adc_limits_are_saturation() -> None:
    """Samples at the ADC's rails are saturation even without a flat top."""
    raw = _clean()
    limits = np.array([[-5.0] * 3, [5.0] * 3])
    raw[int(10 * FS_HZ), 0] = 5.0
    flags = _quality(raw, adc_limits_mv=limits)
    assert [(f.kind, f.lead) for f in flags] == [(FlagKind.SATURATION, 0)]
    assert flags[0].onset <= int(10 * FS_HZ) < flags[0].offset


def test_baseline_wander_at_0_3_hz() -> None:
    """An added 0.3 Hz, 1 mV sine on one lead is baseline wander there (diagnostic band)."""
    raw = _clean()
    t = np.arange(raw.shape[0]) / FS_HZ
    raw[:, 0] += 1.0 * np.sin(2 * np.pi * 0.3 * t)
    flags = _quality(raw)
    wander = _of(flags, FlagKind.BASELINE_WANDER)
    assert {flag.lead for flag in flags} == {0}
    assert sum(flag.offset - flag.onset for flag in wander) > 0.8 * raw.shape[0]
    assert all(flag.measure > 1.0 for flag in wander)


def test_monitoring_band_removes_most_wander() -> None:
    """The same wander measured on the monitoring-filtered signal is not flagged."""
    raw = _clean()
    t = np.arange(raw.shape[0]) / FS_HZ
    raw[:, 0] += 0.8 * np.sin(2 * np.pi * 0.1 * t)
    filtered = filter_zero_phase(raw, FS_HZ, mode="monitoring")
    assert quality_flags(raw, filtered, FS_HZ) == []
    assert _of(_quality(raw), FlagKind.BASELINE_WANDER)


def test_emg_like_noise_is_high_frequency_noise() -> None:
    """Added broadband noise (0.15 mV SD) from 8 to 14 s on lead 1 is noise there."""
    raw = _clean()
    rng = np.random.default_rng(11)
    span = slice(int(8 * FS_HZ), int(14 * FS_HZ))
    raw[span, 1] += rng.normal(0.0, 0.15, span.stop - span.start)
    flags = _quality(raw)
    noise = _of(flags, FlagKind.NOISE)
    assert {(flag.kind, flag.lead) for flag in flags} == {(FlagKind.NOISE, 1)}
    assert len(noise) == 1
    assert abs(noise[0].onset / FS_HZ - 8.0) <= 1.0
    assert abs(noise[0].offset / FS_HZ - 14.0) <= 1.0


def test_wander_mode_measures_the_raw_baseline_in_that_band() -> None:
    """wander_mode: 0.3 Hz wander flagged in diagnostic mode, 0.1 Hz removed in monitoring."""
    raw = _clean()
    t = np.arange(raw.shape[0]) / FS_HZ
    raw[:, 0] += 1.0 * np.sin(2 * np.pi * 0.3 * t)
    raw[:, 1] += 0.8 * np.sin(2 * np.pi * 0.1 * t)
    unfiltered = np.zeros_like(raw)  # the noise measure's input: nothing to flag there
    diagnostic = quality_flags(raw, unfiltered, FS_HZ, wander_mode="diagnostic")
    monitoring = quality_flags(raw, unfiltered, FS_HZ, wander_mode="monitoring")
    assert {f.lead for f in _of(diagnostic, FlagKind.BASELINE_WANDER)} == {0, 1}
    wander = _of(diagnostic, FlagKind.BASELINE_WANDER)
    assert sum(f.offset - f.onset for f in wander if f.lead == 0) > 0.8 * raw.shape[0]
    assert {f.lead for f in _of(monitoring, FlagKind.BASELINE_WANDER)} == {0}


@pytest.mark.parametrize(("run", "flagged"), [(5, True), (4, False), (12, True)])
def test_flat_top_across_a_window_edge(run: int, flagged: bool) -> None:
    """A plateau at the lead's maximum counts from flat_top_s (5 samples) across windows."""
    raw = _clean()
    window = int(FS_HZ)
    start = 3 * window - run // 2
    raw[start : start + run, 1] = raw[:, 1].max() + 0.5
    flags = _of(_quality(raw), FlagKind.SATURATION)
    assert bool(flags) is flagged
    if flagged:
        assert [(f.lead, f.onset, f.offset) for f in flags] == [(1, 2 * window, 4 * window)]
        assert flags[0].measure == pytest.approx(max(run // 2, run - run // 2) / window)


def test_noise_measure_is_the_robust_sd_of_the_residual() -> None:
    """Each noise flag's measure is the largest windowed 1.4826 x median |x - moving average|."""
    raw = _clean()
    rng = np.random.default_rng(5)
    raw[int(4 * FS_HZ) : int(12 * FS_HZ), 0] += rng.normal(0.0, 0.1, int(8 * FS_HZ))
    filtered = filter_zero_phase(raw, FS_HZ)
    flags = _of(quality_flags(raw, filtered, FS_HZ), FlagKind.NOISE)
    assert flags
    width = round(FlagConfig().noise_smooth_s * FS_HZ)
    residual = np.abs(filtered - uniform_filter1d(filtered, width, axis=0, mode="nearest"))
    for flag in flags:
        windows = residual[flag.onset : flag.offset, flag.lead].reshape(-1, int(FS_HZ))
        expected = 1.4826 * np.median(windows, axis=1).max()
        assert flag.measure == pytest.approx(expected, rel=1e-4)


def test_two_sample_signal() -> None:
    """A 2-sample signal gives flags without error (it is flat: lead off)."""
    raw = np.array([[0.1, 0.1], [0.1, 0.1]])
    flags = quality_flags(raw, raw, FS_HZ)
    assert {flag.kind for flag in flags} == {FlagKind.LEAD_OFF}


def test_mismatched_arrays_refused() -> None:
    """Raw and filtered arrays of different shapes are a SignalError."""
    with pytest.raises(SignalError):
        quality_flags(np.zeros((10, 2)), np.zeros((10, 3)), FS_HZ)


# --------------------------------------------------------------------------- shared


def test_merge_episodes_merges_touching_and_drops_short() -> None:
    """Touching episodes merge with the worst measure; short ones go."""
    flags = merge_episodes(
        FlagKind.NOISE, [(10, 20, 0.1), (0, 10, 0.3), (30, 32, 0.9)], min_samples=5, lead=0
    )
    assert [(f.onset, f.offset, f.measure) for f in flags] == [(0, 20, 0.3)]


@pytest.mark.parametrize(
    "changes",
    [
        {"bradycardia_bpm": 120.0},
        {"pause_s": 5.0},
        {"noise_mv": -1.0},
        {"quality_window_s": 0.0},
        {"af_window_rr": 2},
        {"wander_mv": float("nan")},
    ],
)
def test_config_validation(changes: dict[str, float]) -> None:
    """Inconsistent or out-of-range thresholds are ConfigErrors."""
    with pytest.raises(ConfigError):
        FlagConfig(**changes)  # type: ignore[arg-type]


def test_flag_validates_itself() -> None:
    """A flag with offset before onset, or a rhythm flag with a lead, is refused."""
    with pytest.raises(SignalError):
        Flag(FlagKind.PAUSE, 10, 5)
    with pytest.raises(SignalError):
        Flag(FlagKind.PAUSE, 0, 5, lead=1)
    with pytest.raises(SignalError):
        Flag(FlagKind.NOISE, 0, 5)


# --------------------------------------------------------------------------- streaming


def _eventful_beats(seed: int) -> tuple[NDArray[np.int64], int]:
    """Beats of a long stream with every rhythm condition, and its length in samples."""
    rng = np.random.default_rng(seed)
    rr_s: list[float] = []
    for _ in range(6):
        rr_s += list(rng.normal(0.8, 0.01, rng.integers(20, 60)))  # sinus
        choice = rng.integers(0, 5)
        if choice == 0:
            rr_s += [1.5] * int(rng.integers(3, 20))  # bradycardia
        elif choice == 1:
            rr_s += [0.45] * int(rng.integers(5, 40))  # tachycardia
        elif choice == 2:
            rr_s += [float(rng.uniform(2.1, 3.9))]  # pause
        elif choice == 3:
            rr_s += [float(rng.uniform(4.5, 9.0))]  # asystole
        else:
            rr_s += list(rng.uniform(0.4, 1.0, rng.integers(15, 50)))  # AF-like
    times = float(rng.uniform(0.2, 6.0)) + np.concatenate([[0.0], np.cumsum(rr_s)])
    n_samples = int((times[-1] + rng.uniform(0.1, 7.0)) * FS_HZ)
    return _samples(times), n_samples


@pytest.mark.parametrize("seed", range(8))
def test_streaming_rhythm_flags_equal_batch(seed: int) -> None:
    """Final flags from chunks of any size, plus the flush, are exactly the batch flags."""
    beats, n_samples = _eventful_beats(seed)
    expected = rhythm_flags(beats, FS_HZ, n_samples)
    assert len({flag.kind for flag in expected}) >= 2
    rng = np.random.default_rng(100 + seed)
    cuts = np.sort(rng.integers(1, n_samples, rng.integers(5, 200)))
    got, state = _stream_rhythm(beats, [*cuts.tolist(), n_samples], FlagConfig())
    key = lambda flag: (flag.onset, flag.kind.value)  # noqa: E731
    assert sorted(got, key=key) == sorted(expected, key=key)
    assert state.beats.size < beats.size


def _stream_rhythm(
    beats: NDArray[np.int64], cuts: list[int], config: FlagConfig
) -> tuple[list[Flag], RhythmState]:
    """Final flags of ``beats`` streamed up to each of ``cuts``, plus the flush."""
    state = rhythm_start(FS_HZ, config)
    got: list[Flag] = []
    previous = 0
    for cut in cuts:
        new = beats[(beats >= previous) & (beats < cut)]
        final, provisional, state = rhythm_step(new, cut, state)
        assert all(flag.offset > state.final_until for flag in provisional)
        got += final
        previous = cut
    return got + rhythm_flush(state), state


@pytest.mark.parametrize(
    "config",
    [
        FlagConfig(rate_median_beats=4),
        FlagConfig(rate_median_beats=1, af_window_rr=5),
        FlagConfig(rate_median_beats=7, min_af_episode_s=8.0),
        FlagConfig(pause_s=2.0, asystole_s=2.0),
    ],
)
def test_streaming_rhythm_equals_batch_with_other_settings(config: FlagConfig) -> None:
    """Even running-median widths, short AF windows, a minimum AF length, pause = asystole."""
    for seed in range(3):
        beats, n_samples = _eventful_beats(seed)
        expected = rhythm_flags(beats, FS_HZ, n_samples, config)
        got, _ = _stream_rhythm(beats, [*range(50, n_samples, 50), n_samples], config)
        key = lambda flag: (flag.onset, flag.kind.value)  # noqa: E731
        assert sorted(got, key=key) == sorted(expected, key=key)


def test_streaming_rhythm_history_stays_bounded_in_a_long_episode() -> None:
    """An hour of tachycardia: the state keeps a few beats, the episode shows as it goes."""
    beats = _samples(1.0 + 0.4 * np.arange(9000))  # 150 bpm
    state = rhythm_start(FS_HZ)
    chunk = int(0.2 * FS_HZ)
    sizes = []
    provisional: list[Flag] = []
    for cut in range(chunk, int(beats[-1]) + chunk, chunk):
        new = beats[(beats >= cut - chunk) & (beats < cut)]
        _, provisional, state = rhythm_step(new, cut, state)
        sizes.append(state.beats.size)
    assert max(sizes) <= FlagConfig().af_window_rr + FlagConfig().rate_median_beats + 3
    (running,) = provisional
    assert running.kind is FlagKind.TACHYCARDIA
    assert running.onset == beats[0]
    assert running.offset > beats[-10]
    assert running.measure == pytest.approx(150.0)
    streamed = beats[beats < state.n_samples]
    assert rhythm_flush(state) == rhythm_flags(streamed, FS_HZ, state.n_samples)


@pytest.mark.parametrize("seed", range(4))
def test_streaming_rhythm_with_unreadable_stretches_equals_batch(seed: int) -> None:
    """All-leads-off stretches learnt late (as quality flags come) give the batch flags."""
    beats, n_samples = _eventful_beats(seed)
    rng = np.random.default_rng(200 + seed)
    # Cut beats out of three stretches, as if every lead were off there (no beat found).
    stretches = []
    for onset_s in np.sort(rng.uniform(0, n_samples / FS_HZ - 20, 3)):
        onset, offset = _samples([onset_s, onset_s + float(rng.uniform(5.0, 12.0))])
        stretches.append((int(onset), int(offset)))
        beats = beats[(beats < onset) | (beats >= offset)]
    expected = rhythm_flags(beats, FS_HZ, n_samples, unreadable=stretches)
    assert rhythm_flags(beats, FS_HZ, n_samples) != expected
    lag = int(30 * FS_HZ)  # longer than the beats take to settle, so the lag decides
    state = rhythm_start(FS_HZ)
    got: list[Flag] = []
    previous = 0
    cuts = np.sort(rng.integers(1, n_samples, rng.integers(5, 200)))
    for cut in [*cuts.tolist(), n_samples]:
        judged = max(0, cut - lag)
        known = [(a, min(b, judged)) for a, b in stretches if a < judged]
        new = beats[(beats >= previous) & (beats < cut)]
        final, _, state = rhythm_step(new, cut, state, known, judged_until=judged)
        got += final
        previous = cut
    got += rhythm_flush(state, stretches)
    key = lambda flag: (flag.onset, flag.kind.value)  # noqa: E731
    assert sorted(got, key=key) == sorted(expected, key=key)


def test_all_leads_off_intersects_the_leads() -> None:
    """Only where every lead is off, whatever the order and overlap of the flags."""
    flags = [
        Flag(FlagKind.LEAD_OFF, 100, 500, lead=0),
        Flag(FlagKind.LEAD_OFF, 450, 900, lead=0),
        Flag(FlagKind.LEAD_OFF, 300, 700, lead=1),
        Flag(FlagKind.NOISE, 0, 1000, lead=1, measure=0.1),
        Flag(FlagKind.LEAD_OFF, 800, 1000, lead=1),
    ]
    assert all_leads_off(flags, 2) == [(300, 700), (800, 900)]
    assert all_leads_off(flags, 3) == []


def test_streaming_shows_an_ongoing_asystole_provisionally() -> None:
    """Five seconds without a beat at the stream's end is a provisional asystole."""
    beats = _samples(np.arange(0.5, 20.0, 0.8))
    state = rhythm_start(FS_HZ)
    _, provisional, state = rhythm_step(beats, int(30 * FS_HZ), state)
    assert [flag.kind for flag in provisional] == [FlagKind.ASYSTOLE]
    _, provisional, state = rhythm_step(_samples([30.5]), int(31 * FS_HZ), state)
    assert FlagKind.ASYSTOLE in {flag.kind for flag in provisional}
    assert all(flag.offset <= int(30.5 * FS_HZ) for flag in provisional)


def _stream_quality(
    raw: NDArray[np.float64], cuts: list[int], **options: float
) -> tuple[list[Flag], list[list[Flag]]]:
    filtered = filter_zero_phase(raw, FS_HZ)
    state = quality_start(raw.shape[1], FS_HZ, **options)  # type: ignore[arg-type]
    final: list[Flag] = []
    provisional: list[list[Flag]] = []
    for part in np.split(np.arange(raw.shape[0]), cuts):
        done, running, state = quality_step(raw[part], filtered[part], state)
        final += done
        provisional.append(running)
    return final + quality_flush(state), provisional


def _dirty(seed: int = 3) -> NDArray[np.float64]:
    raw = _clean(duration_s=33.0)
    rng = np.random.default_rng(seed)
    raw[int(8 * FS_HZ) : int(14 * FS_HZ), 1] += rng.normal(0.0, 0.15, int(6 * FS_HZ))
    raw[int(21 * FS_HZ) : int(27.5 * FS_HZ), 0] = np.nan
    raw[:, 2] = 0.4
    return raw


def _by_onset(flags: list[Flag]) -> list[Flag]:
    return sorted(flags, key=lambda f: (f.onset, f.lead or 0, f.kind.value))


@pytest.mark.parametrize("seed", range(4))
def test_streaming_quality_chunked_equals_one_shot(seed: int) -> None:
    """Quality flags of a stream do not depend on how it is cut into chunks."""
    raw = _dirty()
    rng = np.random.default_rng(seed)
    cuts = sorted(rng.integers(0, raw.shape[0], rng.integers(1, 60)).tolist())
    chunked, _ = _stream_quality(raw, cuts)
    one_shot, _ = _stream_quality(raw, [])
    assert _by_onset(chunked) == _by_onset(one_shot)


def test_streaming_quality_keeps_its_own_copy_of_the_samples() -> None:
    """A caller reusing (and scribbling on) one chunk buffer gets the one-shot flags."""
    raw = _dirty()
    filtered = filter_zero_phase(raw, FS_HZ)
    chunk = 250
    assert raw.shape[0] % chunk == 0
    raw_buffer, filtered_buffer = np.empty((chunk, raw.shape[1])), np.empty((chunk, raw.shape[1]))
    state = quality_start(raw.shape[1], FS_HZ)
    got: list[Flag] = []
    for start in range(0, raw.shape[0], chunk):
        raw_buffer[:] = raw[start : start + chunk]
        filtered_buffer[:] = filtered[start : start + chunk]
        final, _, state = quality_step(raw_buffer, filtered_buffer, state)
        got += final
        raw_buffer[:] = np.nan
        filtered_buffer[:] = 99.0
    one_shot, _ = _stream_quality(raw, [])
    assert _by_onset(got + quality_flush(state)) == _by_onset(one_shot)


def test_streaming_quality_matches_batch_away_from_block_edges() -> None:
    """Episodes crossing block edges are joined: the stream's flags are the batch flags."""
    raw = _dirty()
    streamed, _ = _stream_quality(raw, [1000, 5003])
    batch = _quality(raw)
    spans = [(f.kind, f.lead, f.onset, f.offset) for f in _by_onset(streamed)]
    assert spans == [(f.kind, f.lead, f.onset, f.offset) for f in _by_onset(batch)]
    np.testing.assert_allclose(
        [f.measure for f in _by_onset(streamed)], [f.measure for f in _by_onset(batch)]
    )
    assert {(f.kind, f.lead) for f in batch} == {
        (FlagKind.NOISE, 1),
        (FlagKind.LEAD_OFF, 0),
        (FlagKind.LEAD_OFF, 2),
    }


def test_streaming_quality_reports_running_episodes() -> None:
    """A lead flat since the start is provisional while the stream goes on."""
    raw = _dirty()
    _, provisional = _stream_quality(raw, [int(12 * FS_HZ)])
    assert (FlagKind.LEAD_OFF, 2) in {(f.kind, f.lead) for f in provisional[0]}


def test_streaming_quality_clean_stream_has_no_flag() -> None:
    """A clean stream gives no final and no provisional flag."""
    final, provisional = _stream_quality(_clean(duration_s=23.0), [777, 3000])
    assert final == []
    assert all(running == [] for running in provisional)


@pytest.mark.parametrize("width", [1, 2, 4, 5, 8])
@pytest.mark.parametrize("with_nan", [False, True])
def test_running_median_is_the_median_of_each_shrunken_window(width: int, with_nan: bool) -> None:
    """running_median equals np.median over each centred window, clipped at both ends."""
    rng = np.random.default_rng(7)
    for size in (0, 1, 3, 4, 9, 30):
        values = np.round(rng.uniform(40.0, 180.0, size), 1)  # rounded: ties happen
        if with_nan and size > 2:
            values[size // 2] = np.nan
        half = width // 2
        expected = [np.median(values[max(0, i - half) : i + width - half]) for i in range(size)]
        got = running_median(values, width)
        np.testing.assert_array_equal(got, np.asarray(expected, dtype=np.float64))
