"""The live pipeline of a device stream: display samples, beats, heart rate and flags.

``state = live_start(...)``, then ``update, state = live_step(samples, state)`` for each
block of digital samples as it is stored, and ``live_flush(state)`` when the stream ends.
Chunked equals batch: the output does not depend on how the stream was cut.

Design notes
------------
- **Digital in, mV inside.** Samples arrive as the device's int16 ADC units and are
  converted with the start message's gain and baseline, ``(x - baseline) / gain``;
  -32768, WFDB's invalid sample, becomes NaN (the filters and the detector treat NaN
  as an unusable stretch of that lead).
- **Two paths from the same mV.** The detector (:mod:`ecg.detect`) takes the raw mV, as
  its batch form does, so that live beats are the beats the batch engine would find;
  the display path runs the causal filter (:mod:`ecg.filters`, monitoring band by
  default: a calm baseline is what an expert watching a live trace wants) and is then
  block-averaged by an integer factor to about ``display_fs_hz`` (the block mean is a
  cheap anti-alias; the filter has already removed what lies above 40 Hz).
- **Heart rate** is the median of the last ``hr_beats`` RR intervals, in bpm, updated at
  each beat: robust to one missed or extra beat, and it settles within a few beats.
- **Flags** come from the streaming forms in :mod:`ecg.flags`: rhythm flags from the
  beats (:func:`~ecg.flags.rhythm_step`), quality flags from the raw and display-filtered
  mV (:func:`~ecg.flags.quality_step`, blocks of ``quality_block_s``). Each update
  carries the flags that became *final* (each exactly once over the stream) and the
  *provisional* ones that hold for now and may still change; the quality flags use the
  monitoring band here, the batch re-annotation of the stored record the diagnostic one.
- **Rhythm flags are re-evaluated when beats arrive or after 1 s of signal without
  one** (a step re-reads the recent beats, a third of the cost of a chunk otherwise);
  final flags are the same however often it runs, provisional ones lag by <= 1 s.
- **No beat, no rate.** When no beat has come for ``asystole_limit_s`` (3 s) the heart
  rate shows nothing (``heart_rate_bpm`` None) and ``no_beat`` says ``"asystole"``, or
  ``"leads_off"`` when no lead carried signal meanwhile (every 0.25 s block, aligned on
  the stream's samples, missing or flat on every lead): the last rate is never shown
  over a heart that stopped or a cart whose leads are off.
- **AF and critical values** come from the streaming forms of :mod:`ecg.rhythm` (AF
  from atrial activity and RR, final about 45 beats after a beat) and
  :mod:`ecg.critical` (a pause shown from its 3rd second, rate rules at the beat that
  completes them, VF/VFL from the detector); their final lists equal the batch ones.
  For ``AF_RVR_180`` an AF episode still open counts as going on to now.
- **Chunk size.** Each step has a fixed cost (filters, detector, flags), so callers
  feed blocks of ~200 ms rather than every device frame (:class:`LiveChunker`).
- **Warm-up.** The filters, the detector and the flags call compiled kernels (numba,
  cached on disk), loaded or compiled at their first call in a process: seconds of CPU.
  :func:`live_warm_up` runs the pipeline on a few seconds of a synthetic beat train so
  that a worker pays this before its first stream, not during it (its flush reaches the
  AF measures' kernels too: a window is measured at the end of a stream, however short).
- What the detector cannot take (a rate outside 100–2000 Hz, more than 15 leads) is
  refused by :func:`live_start` with :class:`~ecg.errors.SignalError`; the stream is
  then stored without live annotation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ecg._live_kernels import activity_blocks
from ecg.critical import (
    Critical,
    CriticalConfig,
    CriticalState,
    critical_flush,
    critical_start,
    critical_step,
)
from ecg.detect import DetectorConfig, DetectorState, detector_flush, detector_start, detector_step
from ecg.errors import ConfigError, SignalError
from ecg.filters import FilterMode, FilterState, filter_start, filter_step
from ecg.flags import (
    Flag,
    FlagConfig,
    QualityState,
    RhythmState,
    quality_flush,
    quality_start,
    quality_step,
    rhythm_flush,
    rhythm_start,
    rhythm_step,
)
from ecg.rhythm import AtrialConfig, AtrialState, Episode, atrial_flush, atrial_start, atrial_step

__all__ = [
    "LiveChunker",
    "LiveConfig",
    "LiveState",
    "LiveUpdate",
    "live_flush",
    "live_start",
    "live_step",
    "live_warm_up",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# The int16 value that means "no valid sample" (lead off), as in WFDB format 16.
INVALID_SAMPLE = -32768

_NO_RR: FloatArray = np.zeros(0)
_NO_RR.flags.writeable = False  # shared by every update without a beat


@dataclass(frozen=True)
class LiveConfig:
    """Settings of the live pipeline.

    Parameters
    ----------
    display_fs_hz : float
        Target rate of the display samples in Hz (the actual rate is ``fs_hz`` divided
        by an integer, at least this).
    mode : FilterMode
        Filter band of the display samples.
    mains_hz : float or None
        Mains notch frequency in Hz (None: no notch).
    hr_beats : int
        RR intervals whose median gives the heart rate.
    detector : DetectorConfig
        Settings of the QRS detector.
    flags : FlagConfig
        Rhythm and quality thresholds.
    quality_block_s : float
        Block of the streaming quality flags in s (a flag is known at most this late).
    asystole_limit_s : float
        With no beat for this long the heart rate shows nothing and the update says why
        (``no_beat``: ``"asystole"``, or ``"leads_off"`` when no lead carried signal).
    atrial : AtrialConfig
        The AF measures (:mod:`ecg.rhythm`).
    critical : CriticalConfig
        The critical values (:mod:`ecg.critical`).
    """

    display_fs_hz: float = 125.0
    mode: FilterMode = FilterMode.MONITORING
    mains_hz: float | None = 50.0
    hr_beats: int = 8
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    flags: FlagConfig = field(default_factory=FlagConfig)
    quality_block_s: float = 5.0
    asystole_limit_s: float = 3.0
    atrial: AtrialConfig = field(default_factory=AtrialConfig)
    critical: CriticalConfig = field(default_factory=CriticalConfig)

    def __post_init__(self) -> None:
        if not self.display_fs_hz > 0:
            raise ConfigError(f"display_fs_hz must be positive, got {self.display_fs_hz}")
        if self.hr_beats < 1:
            raise ConfigError(f"hr_beats must be >= 1, got {self.hr_beats}")
        if not self.asystole_limit_s > 0:
            raise ConfigError(f"asystole_limit_s must be positive, got {self.asystole_limit_s}")


@dataclass
class LiveState:
    """State of the live pipeline between chunks (see :func:`live_start`)."""

    config: LiveConfig
    fs_hz: float
    gain: FloatArray
    baseline: FloatArray
    factor: int
    carry: FloatArray  # filtered samples not yet forming a whole display block
    filter: FilterState
    detector: DetectorState
    rhythm: RhythmState
    quality: QualityState
    atrial: AtrialState
    critical: CriticalState
    activity: _Activity
    n_samples: int = 0
    n_display: int = 0
    recent_beats: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    heart_rate_bpm: float | None = None  # as of the last beat
    af_final: list[tuple[int, int]] = field(default_factory=list)  # AF episodes so far
    af_open: Episode | None = None


@dataclass(frozen=True, eq=False)
class LiveUpdate:
    """What one chunk adds to the live view.

    Attributes
    ----------
    display_first_index : int
        Index, in display samples, of the first row of ``display``.
    display_fs_hz : float
        Rate of the display samples in Hz.
    display_mv : ndarray of float32, shape (n, leads)
        Filtered, decimated samples in mV (NaN where the input had a lead off).
    beats : ndarray of int64
        R-peak sample indices (input rate, from the stream's start) decided by this chunk.
    rr_s : ndarray of float64
        The RR interval ending at each beat, in s (NaN for the stream's first beat).
    heart_rate_bpm : float or None
        Median heart rate over the last ``hr_beats`` intervals after this chunk; None
        before two beats and while no beat has come for ``asystole_limit_s``.
    flags : list of Flag
        Rhythm and quality flags that became final with this chunk (each flag of the
        stream appears once, in one update).
    provisional_flags : list of Flag
        Flags that hold after this chunk but may still grow, merge or vanish.
    no_beat : str or None
        ``"asystole"`` when no beat has come for ``asystole_limit_s`` while a lead
        carried signal, ``"leads_off"`` when none did; None otherwise.
    critical : list of Critical
        Critical values that became final with this chunk (each once over the stream).
    provisional_critical : list of Critical
        Critical values going on now (a pause still without its next beat, VF, a fast
        run).
    af : list of Episode
        AF episodes that became final with this chunk.
    provisional_af : Episode or None
        The AF episode open so far.
    """

    display_first_index: int
    display_fs_hz: float
    display_mv: npt.NDArray[np.float32]
    beats: IntArray
    rr_s: FloatArray
    heart_rate_bpm: float | None
    flags: list[Flag] = field(default_factory=list)
    provisional_flags: list[Flag] = field(default_factory=list)
    no_beat: str | None = None
    critical: list[Critical] = field(default_factory=list)
    provisional_critical: list[Critical] = field(default_factory=list)
    af: list[Episode] = field(default_factory=list)
    provisional_af: Episode | None = None


# Blocks of this length (aligned on the stream's sample indices, so chunking does not
# matter) tell whether any lead carried signal: at least half its samples valid and a
# peak-to-peak of FLAT_PTP_MV (the lead-off flags' threshold).
ACTIVITY_BLOCK_S = 0.25
FLAT_PTP_MV = 0.02


@dataclass
class _Activity:
    """The partial activity block and where the last block with signal ended."""

    block: int
    low: FloatArray
    high: FloatArray
    valid: npt.NDArray[np.int64]
    filled: int = 0
    last_active_end: int = 0


def _activity_start(n_leads: int, fs_hz: float) -> _Activity:
    block = max(1, round(ACTIVITY_BLOCK_S * fs_hz))
    return _Activity(
        block, np.full(n_leads, np.inf), np.full(n_leads, -np.inf), np.zeros(n_leads, np.int64)
    )


def _activity_step(mv: FloatArray, start: int, state: _Activity) -> None:
    """Fold samples ``[start, start + len(mv))`` into the activity blocks (one compiled
    pass over the samples, :func:`ecg._live_kernels.activity_blocks`)."""
    state.filled, state.last_active_end = activity_blocks(
        mv,
        start,
        state.block,
        FLAT_PTP_MV,
        state.low,
        state.high,
        state.valid,
        state.filled,
        state.last_active_end,
    )


def live_start(
    fs_hz: float,
    adc_gain: Sequence[float],
    baseline: Sequence[int],
    config: LiveConfig | None = None,
) -> LiveState:
    """Start the live pipeline of a stream.

    Parameters
    ----------
    fs_hz : float
        Sampling rate in Hz.
    adc_gain : sequence of float
        ADC units per mV, one per lead.
    baseline : sequence of int
        ADC value of 0 mV, one per lead.
    config : LiveConfig, optional

    Raises
    ------
    SignalError
        For a rate or lead count the detector does not support, or gains that are not
        one positive value per lead.
    """
    config = config or LiveConfig()
    gain = np.asarray(adc_gain, dtype=np.float64)
    zero = np.asarray(baseline, dtype=np.float64)
    if gain.ndim != 1 or gain.shape != zero.shape or not (gain > 0).all():
        raise SignalError("adc_gain and baseline must give one value per lead, gains > 0")
    n_leads = len(gain)
    factor = max(1, int(fs_hz // config.display_fs_hz))
    return LiveState(
        config=config,
        fs_hz=float(fs_hz),
        gain=gain,
        baseline=zero,
        factor=factor,
        filter=filter_start(n_leads, fs_hz, config.mode, config.mains_hz),
        detector=detector_start(n_leads, fs_hz, config.detector),
        rhythm=rhythm_start(fs_hz, config.flags),
        quality=quality_start(n_leads, fs_hz, config.flags, block_s=config.quality_block_s),
        atrial=atrial_start(n_leads, fs_hz, config.atrial),
        critical=critical_start(fs_hz, config.critical),
        activity=_activity_start(n_leads, fs_hz),
        carry=np.zeros((0, n_leads)),
    )


def live_step(samples: npt.NDArray[np.integer], state: LiveState) -> tuple[LiveUpdate, LiveState]:
    """Process the next block of digital samples, shape (n, leads).

    Returns the update for the live view and the state for the next block (``state``
    is updated in place and returned).
    """
    if samples.ndim != 2 or samples.shape[1] != len(state.gain):
        raise SignalError(f"expected samples of shape (n, {len(state.gain)}), got {samples.shape}")
    mv = (samples.astype(np.float64) - state.baseline) / state.gain
    mv[samples == INVALID_SAMPLE] = np.nan  # lead off: unusable for display and detection
    filtered, state.filter = filter_step(mv, state.filter)
    display = _decimate(filtered, state)
    found, state.detector = detector_step(mv, state.detector)
    beats = np.asarray(found, dtype=np.int64)
    _activity_step(mv, state.n_samples, state.activity)
    state.n_samples += len(samples)
    # Every step: the rhythm step is incremental (about 12 us), so pauses and asystole
    # open as soon as they are known.
    rhythm_final, rhythm_open, state.rhythm = rhythm_step(beats, state.n_samples, state.rhythm)
    quality_final, quality_open, state.quality = quality_step(mv, filtered, state.quality)
    flags = (rhythm_final + quality_final, rhythm_open + quality_open)
    af_final, state.af_open, state.atrial = atrial_step(mv, beats, state.atrial)
    critical = _critical(beats, state, af_final, at_end=False)
    return _update(display, beats, state, flags, af_final, critical), state


def live_flush(state: LiveState) -> LiveUpdate:
    """End of stream: the beats and flags still undecided (no more display samples)."""
    beats = np.asarray(detector_flush(state.detector), dtype=np.int64)
    empty = np.zeros((0, len(state.gain)))
    rhythm_final, _, state.rhythm = rhythm_step(beats, state.n_samples, state.rhythm)
    final = rhythm_final + rhythm_flush(state.rhythm) + quality_flush(state.quality)
    af_final, _, state.atrial = atrial_step(empty, beats, state.atrial)
    af_final += atrial_flush(state.atrial)
    state.af_open = None
    critical = _critical(beats, state, af_final, at_end=True)
    return _update(empty, beats, state, (final, []), af_final, critical)


def _critical(
    beats: IntArray, state: LiveState, af_final: list[Episode], *, at_end: bool
) -> tuple[list[Critical], list[Critical]]:
    """Final and provisional critical values after this chunk's beats."""
    state.af_final += [(e.onset, e.offset) for e in af_final]
    af = list(state.af_final)
    if state.af_open is not None:
        # An AF episode still open goes on to now, as far as a fast run can tell.
        af.append((state.af_open.onset, state.n_samples))
    vf = list(state.detector.vf_episodes)
    final, provisional, state.critical = critical_step(
        beats, state.n_samples, state.critical, vf_episodes=vf, af_episodes=af
    )
    if at_end:
        final += critical_flush(state.critical, vf)
        provisional = []
    # Only the AF episodes a fast run could still overlap are kept.
    keep_from = state.n_samples - round(60.0 * state.fs_hz)
    state.af_final = [(a, b) for a, b in state.af_final if b >= keep_from]
    return final, provisional


def _beat_absence(state: LiveState) -> tuple[float | None, str | None]:
    """The heart rate to show and why no beat has come (None while beats come)."""
    last_beat = int(state.recent_beats[-1]) if len(state.recent_beats) else None
    since = state.n_samples - (last_beat if last_beat is not None else 0)
    if since < state.config.asystole_limit_s * state.fs_hz:
        return state.heart_rate_bpm, None
    silent = state.n_samples - state.activity.last_active_end
    return None, (
        "leads_off" if silent >= state.config.asystole_limit_s * state.fs_hz else "asystole"
    )


def live_warm_up(fs_hz: float = 500.0, n_leads: int = 12, duration_s: float = 12.0) -> int:
    """Run the pipeline once on a synthetic beat train; return the beats it found.

    Loads (or compiles) every kernel the live pipeline calls, so that the first real
    stream of a process does not wait for it. 12 s: the AF window's irregularity kernel
    runs only once 10 RR intervals are in (``af_window_rr``); 6 s never reached it, and
    the first real stream compiled it. The trace: a narrow Gaussian R wave of
    1.5 mV and a T wave every 0.8 s on every lead, a lead off (invalid samples) for 0.2 s on the
    first lead, in 200 ms chunks, then a flush.
    """
    n = round(duration_s * fs_hz)
    phase_s = (np.arange(n) / fs_hz + 0.1) % 0.8
    # R wave (sigma 20 ms: narrower ones are not QRS-like to the detector) and T wave.
    mv = 1.5 * np.exp(-0.5 * ((phase_s - 0.4) / 0.02) ** 2)
    mv += 0.3 * np.exp(-0.5 * ((phase_s - 0.65) / 0.04) ** 2)
    digital = np.repeat(np.round(mv * 1000.0).astype(np.int16)[:, None], n_leads, axis=1)
    digital[n // 2 : n // 2 + round(0.2 * fs_hz), 0] = INVALID_SAMPLE
    state = live_start(fs_hz, [1000.0] * n_leads, [0] * n_leads)
    chunk = max(1, round(0.2 * fs_hz))
    found = 0
    for first in range(0, n, chunk):
        update, state = live_step(digital[first : first + chunk], state)
        found += len(update.beats)
    return found + len(live_flush(state).beats)


class LiveChunker:
    """Gathers device frames into blocks of about ``chunk_s`` for :func:`live_step`.

    Parameters
    ----------
    n_leads : int
        Columns of every block.
    fs_hz : float
        Sampling rate in Hz.
    chunk_s : float
        Duration of a block in s.

    Attributes
    ----------
    chunk_samples : int
        Samples per block; a caller may change it between pushes (a stream nobody
        watches can go in longer, cheaper blocks: chunked equals batch).
    """

    def __init__(self, n_leads: int, fs_hz: float, chunk_s: float = 0.2) -> None:
        self.n_leads = n_leads
        self.chunk_samples = max(1, round(chunk_s * fs_hz))
        self._parts: list[npt.NDArray[np.int16]] = []
        self._pending = 0

    def push(self, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16] | None:
        """Add samples; return a whole block once ``chunk_samples`` have gathered, else None."""
        self._parts.append(samples)
        self._pending += len(samples)
        if self._pending < self.chunk_samples:
            return None
        return self.take()

    def take(self) -> npt.NDArray[np.int16] | None:
        """Whatever is gathered (None if nothing): at the end of a stream."""
        if not self._pending:
            return None
        block = self._parts[0] if len(self._parts) == 1 else np.concatenate(self._parts)
        self._parts, self._pending = [], 0
        return block


def _by_onset(flags: list[Flag]) -> list[Flag]:
    return sorted(flags, key=lambda f: (f.onset, f.lead if f.lead is not None else -1, f.kind))


def _decimate(filtered: FloatArray, state: LiveState) -> FloatArray:
    joined = np.concatenate([state.carry, filtered]) if len(state.carry) else filtered
    whole = len(joined) // state.factor * state.factor
    state.carry = joined[whole:]
    blocks = joined[:whole].reshape(-1, state.factor, joined.shape[1])
    # What blocks.mean(axis=1) computes (the same sum, then the division), without the
    # wrapper's dtype and count bookkeeping, a third of this function's time.
    return np.asarray(np.add.reduce(blocks, axis=1) / state.factor, dtype=np.float64)


def _median(values: list[int]) -> float:
    """``float(np.median(values))`` of a few ints, without its 8 us of array calls: the
    middle value, or the mean of the two middle ones (as floats, as numpy adds them)."""
    ordered = sorted(values)
    k = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[k])
    return (float(ordered[k - 1]) + float(ordered[k])) / 2.0


def _update(
    display: FloatArray,
    beats: IntArray,
    state: LiveState,
    flags: tuple[list[Flag], list[Flag]],
    af_final: list[Episode],
    critical: tuple[list[Critical], list[Critical]],
) -> LiveUpdate:
    if len(beats):
        history = np.concatenate([state.recent_beats, beats])
        rr_s = np.diff(np.concatenate([state.recent_beats[-1:], beats])) / state.fs_hz
        if len(state.recent_beats) == 0:
            rr_s = np.concatenate([[np.nan], rr_s])  # the stream's first beat has no RR
        state.recent_beats = history[-(state.config.hr_beats + 1) :]
        intervals = np.diff(state.recent_beats)
        if len(intervals):
            state.heart_rate_bpm = float(60.0 * state.fs_hz / _median(intervals.tolist()))
    else:
        # Most chunks have no beat: the rate stays as of the last one, nothing to redo.
        rr_s = _NO_RR
    first = state.n_display
    state.n_display += len(display)
    # One construction with the beat absence, AF episodes and critical values.
    heart_rate, no_beat = _beat_absence(state)
    return LiveUpdate(
        display_first_index=first,
        display_fs_hz=state.fs_hz / state.factor,
        display_mv=display.astype(np.float32),
        beats=beats,
        rr_s=np.asarray(rr_s, dtype=np.float64),
        heart_rate_bpm=heart_rate,
        flags=_by_onset(flags[0]),
        provisional_flags=_by_onset(flags[1]),
        no_beat=no_beat,
        critical=critical[0],
        provisional_critical=critical[1],
        af=af_final,
        provisional_af=state.af_open,
    )
