"""Rhythm from atrial activity as well as RR intervals: AF episodes, the rhythm of a record.

Design notes
------------
- **Atrial activity per beat, per lead, on what is there.** Each beat's atrial
  segment is the signal from ``p_start_s`` (350 ms) to ``p_end_s`` (80 ms) before its R
  peak, where a P wave conducted with a normal or long PR lies, band-passed 1–15 Hz
  (the P wave's band; causal Butterworth, so that a stream filters as a record does),
  its mean and linear trend removed (baseline wander). Nothing needs a 12-lead
  delineation: two ambulatory leads at 360 Hz are measured like twelve at 500 Hz.
- **P coherence.** Over a window of ``window_beats`` beats (40: about half a minute)
  the segments of the *non-premature* beats (an RR at least ``premature_ratio`` of
  the next one: ectopic beats and their T waves would otherwise blur the template) are
  averaged; the coherence of a lead is the energy of the average over the mean energy
  of the segments. A P wave at a fixed lag before each QRS adds up (coherence near 1:
  noise lowers it, not much); fibrillatory waves are not locked to the QRS and
  average out (near ``1 / n``). A record's coherence is the largest over its leads: a
  P wave needs one lead that shows it.
- **RR irregularity** of the same window: the median absolute difference between
  successive RR intervals of non-premature beats over their median. Restricting to
  non-premature beats removes what makes sinus rhythm with ectopy look irregular
  (the premature beat and its compensatory pause), and AF stays irregular among any
  subset of its beats.
- **Dominant morphology.** Ventricular ectopic beats are not always premature by 15 %
  (late, interpolated, fusion beats): both measures also leave out the beats whose QRS
  (R ± 50 ms, all leads) correlates below ``dominant_corr`` (0.9) with the window's
  medoid QRS, unless that would leave out half of the non-premature beats (multiform
  ectopy, paced and conducted beats mixed: then the dominant QRS is not the
  conducted one). On MIT-BIH this halved the non-AF time called AF in the
  ectopy-rich records (200, 207, 208) and cost some AF time in 203 and 217.
- **AF** is called for a beat when its window is irregular (> ``af_irregularity``) and
  atrial activity is not coherent (< ``af_coherence``), then smoothed by a majority
  over ``smooth_beats`` beats: AF is not called on irregular RR alone (sinus rhythm
  with frequent ectopy keeps coherent P waves), nor on absent P alone (junctional
  rhythm is regular). An episode runs from its first AF beat to the beat after its
  last.
- **Batch is streaming.** :func:`af_episodes` runs :func:`atrial_step` on the record
  in blocks of a minute (the state holds a block's beats, not a Holter's) then
  :func:`atrial_flush`. A beat's features are final once the beat
  after its window has arrived (the next RR decides whether the window's last beat is
  premature), its smoothed call ``smooth_beats // 2`` beats later: about 45 beats,
  half a minute, after the beat. Windows at the end of a stream are shifted back to
  stay full (known only at the end, so computed at the flush), as the batch does.
- **Each beat's quantities are computed once.** A beat is in some 40 windows; its
  detrended segment, the segment's energy per lead, its QRS shape and its correlations
  with the 39 beats before it are computed when it arrives, into ring buffers of the
  state (:mod:`ecg._rhythm_kernels`); a window only gathers them. Its average segment
  is summed in the order numpy summed the stacked segments, so every feature is the
  one the stacked computation gave, bit for bit; the correlations are summed in another
  order than the BLAS matrix product (within a few ulp; that product's own rounding
  depends on the BLAS kernel and thread count). The measures of a 1 s step of a
  12-lead 500 Hz stream take 2.3 times less CPU than the stacked computation with a
  single-threaded BLAS, and no BLAS call is left (the window's matrix product on a
  multi-threaded BLAS cost more than all the rest when the cores were busy).
- Chosen from published practice, not fitted to records: the P-wave search window
  (PR 120–270 ms plus the P wave), averaging over tens of beats as in P-wave
  signal averaging, RR irregularity after Dash et al. 2009 and Sarkar et al. 2008
  (successive differences); ``bench/ecg_af.py`` reports what they give on MIT-BIH.
- :func:`record_rhythm` gives the rhythm statement of a short record (a 10 s 12-lead):
  paced, AF, flutter-like, SVT, sinus (brady, tachy, arrhythmia), from the same
  features, the delineation's P waves when given, and pacing spikes
  (:func:`pacing_spikes`).
- **Pacing spikes are one-sample reversals in several leads at once.** A stimulus of
  0.1–2 ms moves one sample of a 250–1000 Hz record away from both its neighbours and
  back; the heart's own signal has no power at the Nyquist rate and never does that
  by as much as the QRS's steepest sample-to-sample change, and the stimulus reaches
  every electrode at the same instant, where an electrode's noise does not. A steepness
  ratio to the surroundings (the second difference over its neighbourhood's) missed the
  small bipolar spikes, which sit beside the QRS onset's steep slope. Band-limited
  recorders widen the spike past one sample (MIT-BIH's paced records: 10–15 ms at
  360 Hz): there it is not seen (``bench/ecg_rhythm_heldout.py``).
- :func:`ecg_presence` says whether a record holds an ECG at all: flat leads, a gain of
  0 and pure noise give beats to a detector that trusts its input (the MIT-BIH noise
  records gave 3,194 "beats" at 131/min). QRS complexes repeat their shape from beat
  to beat; noise does not.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from ecg._delineate_kernels import median_rows
from ecg._filters_kernels import N_SECTIONS_SHORT, pad_sections, sosfilt_samples_short
from ecg._rhythm_kernels import (
    correlate_previous,
    detrend_segment,
    dominant_rows,
    irregularity,
    spike_score,
    window_coherence,
    window_sum,
)
from ecg.errors import ConfigError, SignalError
from ecg.filters import sosfiltfilt_columns

__all__ = [
    "AtrialActivity",
    "AtrialConfig",
    "AtrialState",
    "Episode",
    "FlutterWaves",
    "Presence",
    "RecordRhythm",
    "RhythmCode",
    "af_episodes",
    "atrial_activity",
    "atrial_flush",
    "atrial_start",
    "atrial_step",
    "ecg_presence",
    "flutter_waves",
    "pacing_spikes",
    "record_rhythm",
    "rhythm_marks",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True, kw_only=True)
class AtrialConfig:
    """Settings of the atrial-activity measures and of the AF call (times in s).

    Parameters
    ----------
    band_low_hz, band_high_hz : float
        Pass band of the causal Butterworth filter of the atrial segments, Hz.
    p_start_s, p_end_s : float
        The atrial segment runs from ``p_start_s`` to ``p_end_s`` before the R peak.
    window_beats : int
        Beats per window of the coherence and irregularity measures.
    premature_ratio : float
        A beat whose RR is below this fraction of the next RR is premature (ectopic).
    qrs_half_s : float
        Half-width of the QRS compared between beats, s.
    dominant_corr : float
        A beat whose QRS correlates below this with the window's dominant QRS is of
        another morphology (ventricular ectopy, fusion, aberrancy).
    af_irregularity : float
        Irregularity (ratio) above which a window is irregular.
    af_coherence : float
        Coherence (0–1) below which a window has no organised atrial activity.
    smooth_beats : int
        Majority over this many beats smooths the per-beat AF calls.
    min_af_episode_s : float
        AF episodes shorter than this are dropped.
    """

    band_low_hz: float = 1.0
    band_high_hz: float = 15.0
    p_start_s: float = 0.35
    p_end_s: float = 0.08
    window_beats: int = 40
    premature_ratio: float = 0.85
    qrs_half_s: float = 0.05
    dominant_corr: float = 0.9
    af_irregularity: float = 0.06
    af_coherence: float = 0.25
    smooth_beats: int = 31
    min_af_episode_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.band_low_hz < self.band_high_hz:
            raise ConfigError("0 < 'band_low_hz' < 'band_high_hz' must be True")
        if not 0 <= self.p_end_s < self.p_start_s <= 1.0:
            raise ConfigError("0 <= 'p_end_s' < 'p_start_s' <= 1 must be True")
        if self.window_beats < 4 or self.smooth_beats < 1:
            raise ConfigError("'window_beats' must be >= 4 and 'smooth_beats' >= 1")
        if not 0 < self.premature_ratio <= 1:
            raise ConfigError("'premature_ratio' must be within (0, 1]")
        if not (0 < self.qrs_half_s <= 0.2 and -1 <= self.dominant_corr <= 1):
            raise ConfigError("need 0 < 'qrs_half_s' <= 0.2 and -1 <= 'dominant_corr' <= 1")
        for name in ("af_irregularity", "af_coherence", "min_af_episode_s"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name!r} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Episode:
    """One episode of a rhythm, ``[onset, offset)`` in samples.

    Attributes
    ----------
    code : str
        Statement code of the rhythm (``"AFIB"``).
    onset, offset : int
        First sample, first sample after.
    irregularity : float
        Mean RR irregularity of its beats' windows (ratio).
    coherence : float
        Mean P coherence of its beats' windows (0–1).
    n_beats : int
    """

    code: str
    onset: int
    offset: int
    irregularity: float
    coherence: float
    n_beats: int


@dataclass(frozen=True, eq=False)
class AtrialActivity:
    """Per-beat atrial measures of a record (batch; see :func:`atrial_activity`).

    Attributes
    ----------
    beats : ndarray of int64
    coherence : ndarray of float64
        P coherence of each beat's window, largest over leads (NaN: not measurable).
    coherence_per_lead : ndarray of float64, shape (n_beats, n_leads)
    irregularity : ndarray of float64
        RR irregularity of each beat's window (NaN: too few intervals).
    af : ndarray of bool
        Smoothed AF call per beat.
    premature : ndarray of bool
        Beats whose RR is below ``premature_ratio`` of the next RR.
    episodes : list of Episode
    """

    beats: IntArray
    coherence: FloatArray
    coherence_per_lead: FloatArray
    irregularity: FloatArray
    af: BoolArray
    premature: BoolArray
    episodes: list[Episode]


@dataclass(slots=True, eq=False)
class AtrialState:
    """State of the streaming atrial measures, updated in place by each step.

    Beats are numbered from 0 over the stream; the lists hold beats ``first_beat``
    onwards (older ones are dropped once nothing needs them). What each beat needs in
    every window it is in (its atrial segment and the segment's energy per lead, its QRS
    shape, its correlations with the ``window_beats - 1`` beats before it) is computed
    once, when the beat arrives, into ring buffers: row ``(head + k) % len(segments)``
    holds beat ``first_beat + k``; they grow (doubling) when a step brings more beats
    than they hold.
    """

    fs_hz: float
    config: AtrialConfig
    sos: FloatArray
    zi: FloatArray
    start_n: int
    end_n: int
    qrs_n: int
    tail: FloatArray  # filtered samples, (capacity, n_leads): the kept ones in [tail_lo, tail_hi)
    segments: FloatArray  # (rows, start_n - end_n, n_leads): detrended atrial segments
    energies: FloatArray  # (rows, n_leads): each segment's sum of squares per lead
    shapes: FloatArray  # (rows, 2 qrs_n n_leads): unit-norm QRS, all leads
    band: FloatArray  # (rows, window_beats): [r, d] = shape r . shape d beats before it
    trend: FloatArray  # (start_n - end_n, 1): the time axis of the linear detrend
    trend_norm: float  # its sum of squares
    tail_lo: int = 0
    tail_hi: int = 0
    head: int = 0
    n_samples: int = 0
    keep_beats: bool = False
    first_beat: int = 0
    samples: list[int] = field(default_factory=list)
    normal: list[bool | None] = field(default_factory=list)
    n_features: int = 0  # beats whose features are final
    calls: list[bool] = field(default_factory=list)  # per beat from first_beat, once final
    irr: list[float] = field(default_factory=list)
    coh: list[float] = field(default_factory=list)
    n_smoothed: int = 0
    last_window: tuple[tuple[int, int], tuple[float, float, FloatArray]] | None = None
    open: list[float] | None = None  # onset, irr sum, coh sum, beats, last AF beat sample
    history: dict[str, list[object]] = field(default_factory=dict)


def _bandpass(low_hz: float, high_hz: float, fs_hz: float) -> FloatArray:
    """Second-order Butterworth band-pass sections (a copy of the cached design: scipy's
    filters want a writeable array)."""
    return _bandpass_design(low_hz, high_hz, fs_hz).copy()


@functools.lru_cache(maxsize=64)
def _bandpass_design(low_hz: float, high_hz: float, fs_hz: float) -> FloatArray:
    """Designed once per band and rate: a design costs about 2 ms, as much as the rest
    of a 10 s record's rhythm. Read-only, shared."""
    sos = np.asarray(sps.butter(2, [low_hz, high_hz], "bandpass", fs=fs_hz, output="sos"))
    sos.flags.writeable = False
    return sos


def _as_2d(signal_mv: npt.ArrayLike) -> FloatArray:
    """Samples as float64 ``(n_samples, n_leads)``; 1-D input is one lead."""
    x = np.asarray(signal_mv, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x


def atrial_start(
    n_leads: int, fs_hz: float, config: AtrialConfig = AtrialConfig(), *, keep_beats: bool = False
) -> AtrialState:
    """Start the streaming atrial measures of ``n_leads`` leads at ``fs_hz`` Hz.

    ``keep_beats``: keep every beat's features (for :func:`atrial_activity`); a live
    stream leaves it off, so that its state stays bounded.
    """
    if n_leads < 1 or not (math.isfinite(fs_hz) and fs_hz > 0):
        raise SignalError(f"need n_leads >= 1 and fs_hz > 0, got {n_leads}, {fs_hz}")
    high = min(config.band_high_hz, 0.45 * fs_hz)
    low = min(config.band_low_hz, 0.5 * high)
    # The compiled biquad cascade of two sections (a second-order band-pass has two):
    # a live chunk is filtered without scipy's per-call overhead.
    sos = pad_sections(_bandpass(low, high, fs_hz), N_SECTIONS_SHORT)
    start_n = max(2, round(config.p_start_s * fs_hz))
    end_n = round(config.p_end_s * fs_hz)
    history: dict[str, list[object]] = {
        key: [] for key in ("beats", "coherence", "per_lead", "irr", "af", "premature")
    }
    qrs_n = max(1, round(config.qrs_half_s * fs_hz))
    # Rows for the beats a live stream keeps (see _trim) and a few chunks' worth more.
    rows = config.window_beats + config.smooth_beats + 16
    trend = np.linspace(-1.0, 1.0, start_n - end_n)[:, None]
    return AtrialState(
        fs_hz=float(fs_hz),
        config=config,
        sos=sos,
        zi=np.zeros((sos.shape[0], 2, n_leads)),
        start_n=start_n,
        end_n=end_n,
        qrs_n=qrs_n,
        tail=np.zeros((0, n_leads)),
        segments=np.zeros((rows, start_n - end_n, n_leads)),
        energies=np.zeros((rows, n_leads)),
        shapes=np.zeros((rows, 2 * qrs_n * n_leads)),
        band=np.zeros((rows, config.window_beats)),
        trend=trend,
        trend_norm=float((trend * trend).sum()),
        keep_beats=keep_beats,
        history=history,
    )


def atrial_step(
    chunk_mv: npt.ArrayLike, new_beats: npt.ArrayLike, state: AtrialState
) -> tuple[list[Episode], Episode | None, AtrialState]:
    """Feed the next samples and the beats detected in them (or before).

    Parameters
    ----------
    chunk_mv : array_like, shape (n, n_leads)
        The next samples in mV (NaN: not usable, taken as 0).
    new_beats : array_like of int
        R peaks (absolute samples) decided since the last step, increasing, each at
        least ``p_end_s`` before the end of the samples given so far.
    state : AtrialState
        Updated in place and returned.

    Returns
    -------
    final : list of Episode
        AF episodes that ended and can no longer change.
    provisional : Episode or None
        The AF episode open so far (its end may still move), or None.
    state : AtrialState
    """
    x = np.asarray(chunk_mv, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != state.zi.shape[2]:
        raise SignalError(f"expected samples of shape (n, {state.zi.shape[2]}), got {x.shape}")
    if not math.isfinite(float(np.add.reduce(x, axis=None))):  # a NaN or inf in it
        x = np.where(np.isfinite(x), x, 0.0)
    keep = state.start_n + round(1.0 * state.fs_hz)
    n = x.shape[0]
    _tail_room(state, n, keep)
    buffer_start = state.n_samples - (state.tail_hi - state.tail_lo)
    if n:
        y = state.tail[state.tail_hi : state.tail_hi + n]
        sosfilt_samples_short(state.sos, np.ascontiguousarray(x), state.zi, y)
    state.tail_hi += n
    buffer = state.tail[state.tail_lo : state.tail_hi]
    state.n_samples += n
    for beat in np.asarray(new_beats, dtype=np.int64).reshape(-1).tolist():
        _add_beat(state, int(beat), buffer, buffer_start)
    state.tail_lo = max(state.tail_lo, state.tail_hi - keep)
    final = _advance(state, at_end=False)
    return final, _provisional(state), state


def _tail_room(state: AtrialState, n: int, keep: int) -> None:
    """Room for ``n`` more filtered samples after the kept ones (at most ``keep``).

    The chunk is filtered into the array and the kept samples are moved to its start
    only when it is full, every few steps: a step neither joins the kept samples to the
    chunk nor copies out what it keeps. At ``2 keep + n`` rows or more the kept samples
    lie beyond their destination when they move.
    """
    if state.tail_hi + n <= state.tail.shape[0]:
        return
    kept = state.tail[state.tail_lo : state.tail_hi]
    rows = 2 * keep + n
    if state.tail.shape[0] < rows:
        state.tail = np.empty((rows, state.tail.shape[1]))
    state.tail[: len(kept)] = kept
    state.tail_lo, state.tail_hi = 0, len(kept)


def atrial_flush(state: AtrialState) -> list[Episode]:
    """End of stream: the features, calls and episodes still open."""
    return _advance(state, at_end=True)


def _add_beat(state: AtrialState, beat: int, buffer: FloatArray, buffer_start: int) -> None:
    if state.samples and beat <= state.samples[-1]:
        raise SignalError("beats must be strictly increasing")
    lo, hi = beat - state.start_n, beat - state.end_n
    a, b = max(lo, 0), max(hi, 0)
    if b > state.n_samples or (b > a and a < buffer_start):
        raise SignalError("a beat's atrial segment is no longer (or not yet) in the buffer")
    _reserve(state)
    row = (state.head + len(state.samples)) % state.segments.shape[0]
    segment = state.segments[row]
    segment[:] = 0.0
    if b > a:
        segment[a - lo :] = buffer[a - buffer_start : b - buffer_start]
    # Mean and linear trend removed: baseline wander is not atrial activity.
    if segment.shape[1] > 1:
        detrend_segment(segment, state.trend, state.trend_norm, state.energies[row])
    else:  # one lead: numpy sums a contiguous column pairwise, the kernel would not
        t = state.trend
        segment -= np.add.reduce(segment, axis=0, keepdims=True) / segment.shape[0]
        segment -= np.add.reduce(segment * t, axis=0, keepdims=True) / state.trend_norm * t
        np.add.reduce(segment * segment, axis=0, out=state.energies[row])
    index = state.first_beat + len(state.samples)
    if state.samples:
        # The previous beat's prematurity is known now that its next RR is.
        previous_rr = _rr(state, index - 1)
        if previous_rr is not None:
            state.normal[-1] = previous_rr >= state.config.premature_ratio * (
                beat - state.samples[-1]
            )
    _shape(state, beat, buffer, buffer_start, row)
    # Its correlations with the beats before it that can share a window with it.
    n_previous = min(len(state.samples), state.config.window_beats - 1)
    correlate_previous(state.shapes, row, n_previous, state.band)
    state.samples.append(beat)
    state.normal.append(None)


def _reserve(state: AtrialState) -> None:
    """Room in the ring buffers for one more beat: twice the rows when they are full,
    the kept beats moved in order to the first rows."""
    rows, n = state.segments.shape[0], len(state.samples)
    if n < rows:
        return
    order = (state.head + np.arange(n)) % rows

    def grown(old: FloatArray) -> FloatArray:
        new = np.zeros((2 * rows, *old.shape[1:]))
        new[:n] = old[order]
        return new

    state.segments = grown(state.segments)
    state.energies = grown(state.energies)
    state.shapes = grown(state.shapes)
    state.band = grown(state.band)
    state.head = 0


def _rows(state: AtrialState, lo: int, hi: int) -> IntArray:
    """Buffer rows of beats ``[lo, hi)``."""
    first = state.head + lo - state.first_beat
    rows: IntArray = np.arange(first, first + hi - lo) % state.segments.shape[0]
    return rows


def _shape(state: AtrialState, beat: int, buffer: FloatArray, buffer_start: int, row: int) -> None:
    """The beat's QRS (R ± ``qrs_half_s``, all leads, mean removed, unit norm) into
    buffer row ``row`` of ``state.shapes``: its morphology, compared with the window's
    dominant one. Samples beyond what has arrived (only at the end of a stream) count
    as 0."""
    half = state.qrs_n
    shape = np.zeros((2 * half, buffer.shape[1]))
    lo, hi = beat - half, beat + half
    a, b = max(lo, buffer_start, 0), min(hi, buffer_start + buffer.shape[0])
    if b > a:
        shape[a - lo : b - lo] = buffer[a - buffer_start : b - buffer_start]
    shape -= np.add.reduce(shape, axis=0, keepdims=True) / shape.shape[0]
    norm = math.sqrt(float(np.add.reduce(shape * shape, axis=None)))
    flat = state.shapes[row].reshape(shape.shape)
    if norm > 1e-9:
        np.divide(shape, norm, out=flat)
    else:
        flat[:] = shape


def _rr(state: AtrialState, index: int) -> int | None:
    """RR interval ending at beat ``index`` in samples (None for the first beat)."""
    k = index - state.first_beat
    if index == 0 or k <= 0:
        return None
    return state.samples[k] - state.samples[k - 1]


def _window(state: AtrialState, index: int, n_beats: int) -> tuple[int, int]:
    width = state.config.window_beats
    lo = max(0, index - width // 2)
    hi = min(n_beats, lo + width)
    return max(0, hi - width), hi


def _features(state: AtrialState, index: int, n_beats: int) -> tuple[float, float, FloatArray]:
    """(irregularity, coherence, coherence per lead) of beat ``index``'s window."""
    lo, hi = _window(state, index, n_beats)
    base = state.first_beat
    rows = _rows(state, lo, hi)
    # Which beats have the window's dominant QRS: the medoid (the beat most like the
    # others, by median correlation) and those that correlate with it at
    # dominant_corr or more.
    dominant = dominant_rows(state.band, rows, state.config.dominant_corr)
    plain = np.asarray(state.normal[lo - base : hi - base], dtype=bool)
    ok = plain & dominant
    if 2 * int(ok.sum()) < int(plain.sum()):
        # The dominant QRS is not that of most non-premature beats (multiform ectopy,
        # paced and conducted beats mixed, noise): morphology tells nothing here.
        ok = plain
    chosen = rows[ok]
    n_leads = state.zi.shape[2]
    per_lead = np.full(n_leads, np.nan)
    if len(chosen) >= 3 and n_leads > 1:
        window_coherence(state.segments, state.energies, chosen, per_lead)
    elif len(chosen) >= 3:
        # The chosen segments' mean and mean energy, in the order (and so to the bit)
        # of numpy's mean over the stacked segments (one lead: numpy sums its column
        # pairwise, the kernel would not).
        # (np.add.reduce and the division by the count are what np.mean does, without
        # its bookkeeping.)
        total = np.empty(state.segments.shape[1:])
        window_sum(state.segments, chosen, total)
        average = total / len(chosen)
        energy = np.add.reduce(state.energies[chosen], axis=0) / len(chosen)
        np.divide(np.add.reduce(average * average, axis=0), energy, per_lead, where=energy > 1e-12)
    # The largest coherence over the leads, NaN ones left out.
    measured = per_lead[~np.isnan(per_lead)]
    coherence = float(measured.max()) if np.isfinite(per_lead).any() else math.nan
    # Intervals between two non-premature beats.
    samples = np.asarray(state.samples[lo - base : hi - base], dtype=np.int64)
    rr = np.diff(samples)[ok[1:] & ok[:-1]].astype(np.float64)
    irr = irregularity(rr) if len(rr) >= 4 else math.nan
    return irr, coherence, per_lead


def _advance(state: AtrialState, *, at_end: bool) -> list[Episode]:
    config = state.config
    n = state.first_beat + len(state.samples)
    if at_end and state.samples and state.normal[-1] is None:
        # The last beat has no next RR: it counts as non-premature.
        state.normal[-1] = _rr(state, n - 1) is not None
    width = config.window_beats
    while state.n_features < n:
        index = state.n_features
        lo = max(0, index - width // 2)
        if not at_end and lo + width + 1 > n:
            break
        window = _window(state, index, n)
        if state.last_window is None or state.last_window[0] != window:
            # Beats near the ends of a record share one window (all of a 10 s one).
            state.last_window = (window, _features(state, index, n))
        irr, coh, per_lead = state.last_window[1]
        call = (
            math.isfinite(irr)
            and irr > config.af_irregularity
            and not (math.isfinite(coh) and coh >= config.af_coherence)
        )
        state.calls.append(call)
        state.irr.append(irr)
        state.coh.append(coh)
        if state.keep_beats:
            k = index - state.first_beat
            state.history["beats"].append(state.samples[k])
            state.history["coherence"].append(coh)
            state.history["per_lead"].append(per_lead)
            state.history["irr"].append(irr)
            state.history["premature"].append(not state.normal[k])
        state.n_features += 1
    final: list[Episode] = []
    half = config.smooth_beats // 2
    while state.n_smoothed < state.n_features:
        index = state.n_smoothed
        if not at_end and index + config.smooth_beats - half > state.n_features:
            break
        lo = max(0, index - half)
        hi = min(state.n_features if at_end else n, index + config.smooth_beats - half)
        votes = state.calls[lo - state.first_beat : hi - state.first_beat]
        af = 2 * sum(votes) > len(votes)
        if state.keep_beats:
            state.history["af"].append(af)
        final += _feed_episode(state, index, af)
        state.n_smoothed += 1
    if at_end:
        final += _close_episode(state, None)
    _trim(state)
    return final


def _feed_episode(state: AtrialState, index: int, af: bool) -> list[Episode]:
    k = index - state.first_beat
    has_next = k + 1 < len(state.samples)
    if af and has_next:
        irr, coh = state.irr[k], state.coh[k]
        if state.open is None:
            state.open = [float(state.samples[k]), 0.0, 0.0, 0.0, 0.0, 0.0]
        opened = state.open
        opened[1] += irr if math.isfinite(irr) else 0.0
        opened[2] += coh if math.isfinite(coh) else 0.0
        opened[3] += 1.0
        opened[4] = float(state.samples[k + 1])
        return []
    return _close_episode(state, index)


def _close_episode(state: AtrialState, index: int | None) -> list[Episode]:
    opened = state.open
    if opened is None:
        return []
    state.open = None
    episode = _episode(opened)
    if episode.offset - episode.onset < state.config.min_af_episode_s * state.fs_hz:
        return []
    return [episode]


def _episode(opened: list[float]) -> Episode:
    count = max(opened[3], 1.0)
    return Episode(
        "AFIB", int(opened[0]), int(opened[4]), opened[1] / count, opened[2] / count, int(count)
    )


def _provisional(state: AtrialState) -> Episode | None:
    return None if state.open is None else _episode(state.open)


def _trim(state: AtrialState) -> None:
    """Drop beats that no window, vote or episode can need any more."""
    config = state.config
    need = min(
        state.n_features - config.window_beats - 2,
        state.n_smoothed - config.smooth_beats - 2,
    )
    drop = need - state.first_beat
    if drop <= 0:
        return
    del state.samples[:drop], state.normal[:drop]
    del state.calls[:drop], state.irr[:drop], state.coh[:drop]
    state.head = (state.head + drop) % state.segments.shape[0]
    state.first_beat += drop


def af_episodes(
    signal_mv: npt.ArrayLike,
    beats: npt.ArrayLike,
    fs_hz: float,
    config: AtrialConfig = AtrialConfig(),
) -> list[Episode]:
    """AF episodes of a record (the streaming form in one step), by onset."""
    return atrial_activity(signal_mv, beats, fs_hz, config).episodes


# Block of samples atrial_activity feeds at a time, s.
BATCH_BLOCK_S = 60.0


def atrial_activity(
    signal_mv: npt.ArrayLike,
    beats: npt.ArrayLike,
    fs_hz: float,
    config: AtrialConfig = AtrialConfig(),
) -> AtrialActivity:
    """Per-beat P coherence, RR irregularity and AF calls of a record, and its AF episodes.

    Parameters
    ----------
    signal_mv : array_like, shape (n_samples, n_leads)
        The record in mV (1-D: one lead); NaN where a lead is not usable.
    beats : array_like of int
        R-peak samples, strictly increasing, inside the record.
    fs_hz : float
        Sampling rate in Hz.
    config : AtrialConfig
    """
    x = _as_2d(signal_mv)
    peaks = np.asarray(beats, dtype=np.int64).reshape(-1)
    if peaks.size and (peaks[0] < 0 or peaks[-1] >= x.shape[0] or np.any(np.diff(peaks) <= 0)):
        raise SignalError("beats must be strictly increasing sample indices inside the record")
    state = atrial_start(x.shape[1], fs_hz, config, keep_beats=True)
    # Fed in blocks (chunked equals batch), so that the state holds a block's beats and
    # not the whole record's; a beat is handed over once its QRS has arrived.
    block = max(1, round(BATCH_BLOCK_S * fs_hz))
    episodes: list[Episode] = []
    given = 0
    for lo in range(0, x.shape[0], block):
        hi = min(lo + block, x.shape[0])
        ready = int(np.searchsorted(peaks, hi - state.qrs_n, side="right"))
        episodes += atrial_step(x[lo:hi], peaks[given:ready], state)[0]
        given = ready
    episodes += atrial_step(x[:0], peaks[given:], state)[0]
    episodes += atrial_flush(state)
    h = state.history
    n_leads = x.shape[1]
    per_lead = np.asarray(h["per_lead"], dtype=np.float64).reshape(-1, n_leads)
    return AtrialActivity(
        beats=np.asarray(h["beats"], dtype=np.int64),
        coherence=np.asarray(h["coherence"], dtype=np.float64),
        coherence_per_lead=per_lead,
        irregularity=np.asarray(h["irr"], dtype=np.float64),
        af=np.asarray(h["af"], dtype=bool),
        premature=np.asarray(h["premature"], dtype=bool),
        episodes=episodes,
    )


# --------------------------------------------------------------------------- pacing


@dataclass(frozen=True, slots=True)
class Pacing:
    """Pacing spikes locked to the QRS complexes of a record.

    Attributes
    ----------
    assessable : bool
        False below 250 Hz, where a spike of 0.5–2 ms is averaged away.
    fraction : float
        Fraction of beats preceded by a spike at a consistent lag (0–1).
    lag_ms : float
        Median lag of the spikes before the R peak, ms (NaN without spikes).
    """

    assessable: bool
    fraction: float
    lag_ms: float


# A pacing spike is a pulse of 0.1-2 ms: at 250 Hz or more it moves one sample, away
# from both neighbours and back, and a filtered ECG does not (a one-sample reversal is
# power at the Nyquist rate, where the heart has none). A sample is a spike where its
# reversal is at least the lead's 99th percentile of sample-to-sample change (the QRS's
# steepest slopes; a spike is as steep as those, but turns within one sample) and
# SPIKE_MIN_MV, in SPIKE_LEADS leads at the same sample: the stimulus reaches every
# electrode at once, noise does not (both leads of a 2-lead record). The spikes of one
# pacemaker keep their lag to the QRS within SPIKE_LAG_S, artefacts do not.
SPIKE_PERCENTILE = 99.0
SPIKE_MIN_MV = 0.02
SPIKE_LEADS = 3
SPIKE_LAG_S = 0.01
PACING_MIN_FS_HZ = 250.0


def pacing_spikes(signal_mv: npt.ArrayLike, beats: npt.ArrayLike, fs_hz: float) -> Pacing:
    """Pacing spikes before the beats: one-sample reversals in several leads at once,
    at a constant lag before the QRS.

    Parameters
    ----------
    signal_mv : array_like, shape (n_samples, n_leads)
        The record as read (not filtered: filters smear the spikes), mV.
    beats : array_like of int
        Beat marks (:func:`rhythm_marks`).
    fs_hz : float
    """
    x = _as_2d(signal_mv)
    peaks = np.asarray(beats, dtype=np.int64).reshape(-1)
    if fs_hz < PACING_MIN_FS_HZ or x.shape[0] < 8 or x.shape[1] == 0 or peaks.size == 0:
        return Pacing(fs_hz >= PACING_MIN_FS_HZ, 0.0, math.nan)
    leads = min(SPIKE_LEADS, x.shape[1])
    score = spike_score(np.ascontiguousarray(x), SPIKE_PERCENTILE, SPIKE_MIN_MV, leads)
    # Ventricular spikes lie just before the QRS, atrial ones a PR interval before it.
    before, after = round(0.3 * fs_hz), round(0.05 * fs_hz)
    lags = []
    for beat in peaks.tolist():
        lo, hi = max(0, beat - before), min(x.shape[0], beat + after)
        if hi <= lo:
            continue
        k = lo + int(np.argmax(score[lo:hi]))
        if score[k] >= 1.0:
            lags.append(k - beat)
    if not lags:
        return Pacing(True, 0.0, math.nan)
    values = np.asarray(lags, dtype=np.float64)
    median = float(np.median(values))
    locked = int((np.abs(values - median) <= SPIKE_LAG_S * fs_hz).sum())
    return Pacing(True, locked / peaks.size, -1000.0 * median / fs_hz)


# --------------------------------------------------------------------------- presence


class Absence(enum.StrEnum):
    """Why a stretch holds no ECG."""

    NO_SIGNAL = "no_signal"  # every lead missing (NaN)
    FLAT = "flat"  # every lead flat: leads off, gain 0
    NOISE = "noise"  # signal without repeating QRS complexes


@dataclass(frozen=True, slots=True)
class Presence:
    """Whether a record (or a stretch of it) holds an ECG.

    Attributes
    ----------
    present : bool
    reason : Absence or None
        Why not, when not present.
    absent : list of (onset, offset, Absence)
        Windows (samples) without ECG.
    qrs_ratio : float
        Largest over leads of the RMS of the signal around the beats over its RMS
        midway between them (a QRS stands out; noise peaks do not); NaN without beats.
    """

    present: bool
    reason: Absence | None
    absent: list[tuple[int, int, Absence]]
    qrs_ratio: float


# In 10 s windows of the MIT-BIH noise records (bw, ma) the ratio's median is 1.6, its
# 90th percentile 2.2-2.5; in MIT-BIH's ECG windows (outside VF) its 0.1th percentile
# is 2.7, its median 24.
QRS_RATIO_MIN = 2.5
FLAT_PTP_MV = 0.02
PRESENCE_WINDOW_S = 10.0


def ecg_presence(
    signal_mv: npt.ArrayLike,
    beats: npt.ArrayLike,
    fs_hz: float,
    vf_episodes: list[tuple[int, int]] | None = None,
    window_s: float = PRESENCE_WINDOW_S,
) -> Presence:
    """Whether a record holds an ECG: per window of ``window_s`` (the last one joins the
    one before when shorter than half), every lead missing, flat, or no QRS standing out;
    the record holds none when at least half of its time is such windows.

    A window without beats but with signal is not called absent (it may be asystole,
    which is for the rhythm flags to say), nor one that overlaps a VF/VFL episode.

    Parameters
    ----------
    signal_mv : array_like, shape (n_samples, n_leads)
    beats : array_like of int
    fs_hz : float
    vf_episodes : list of (onset, offset), optional
    window_s : float
    """
    x = _as_2d(signal_mv)
    peaks = np.asarray(beats, dtype=np.int64).reshape(-1)
    n = x.shape[0]
    if n == 0:
        return Presence(False, Absence.NO_SIGNAL, [], math.nan)
    width = max(1, round(window_s * fs_hz))
    edges = list(range(0, n, width))
    if len(edges) > 1 and n - edges[-1] < width // 2:
        edges.pop()
    bounds = [*edges[1:], n]
    filtered = _qrs_band(x, fs_hz)
    absent: list[tuple[int, int, Absence]] = []
    ratios = []
    for onset, offset in zip(edges, bounds, strict=True):
        part = x[onset:offset]
        finite = np.isfinite(part)
        usable = finite.mean(axis=0) >= 0.5
        if not usable.any():
            absent.append((onset, offset, Absence.NO_SIGNAL))
            continue
        with np.errstate(invalid="ignore"):
            ptp = np.nanmax(part[:, usable], axis=0) - np.nanmin(part[:, usable], axis=0)
        if not (ptp >= FLAT_PTP_MV).any():
            absent.append((onset, offset, Absence.FLAT))
            continue
        inside = peaks[(peaks >= onset) & (peaks < offset)]
        if any(a < offset and b > onset for a, b in vf_episodes or []):
            continue
        ratio = _qrs_ratio(filtered, inside, fs_hz)
        if math.isfinite(ratio):
            ratios.append(ratio)
            if ratio < QRS_RATIO_MIN:
                absent.append((onset, offset, Absence.NOISE))
    # Noise peaks sometimes stand out of their neighbourhood as a QRS does (in 7-9 % of
    # the noise records' windows, in 5 of 8622 MIT-BIH ones the reverse): a record holds
    # no ECG when at least half of it is absent, and the windows say where.
    covered = sum(b - a for a, b, _ in absent)
    present = covered < 0.5 * n
    reason = None
    if not present:
        reason = max({r for _, _, r in absent}, key=lambda r: sum(1 for *_, s in absent if s is r))
    return Presence(present, reason, absent, max(ratios) if ratios else math.nan)


def _qrs_band(x: FloatArray, fs_hz: float) -> FloatArray:
    """5–30 Hz (or up to 0.4 fs) zero-phase band-pass, NaN as 0: the QRS band."""
    high = min(30.0, 0.4 * fs_hz)
    sos = _bandpass(5.0, high, fs_hz)
    clean: FloatArray = np.where(np.isfinite(x), x, 0.0)
    if clean.shape[0] <= 3 * 2 * (sos.shape[0] + 1):
        centred: FloatArray = clean - clean.mean(axis=0)
        return centred
    filtered = sosfiltfilt_columns(sos, clean)
    return filtered


def _qrs_ratio(filtered: FloatArray, beats: IntArray, fs_hz: float) -> float:
    half = max(1, round(0.05 * fs_hz))
    n = filtered.shape[0]
    inside = beats[(beats >= half) & (beats < n - half)]
    if inside.size < 2:
        return math.nan
    offsets = np.arange(-half, half)
    at_qrs = filtered[inside[:, None] + offsets[None, :]]
    middles = (inside[:-1] + inside[1:]) // 2
    at_middle = filtered[middles[:, None] + offsets[None, :]]
    qrs = np.sqrt((at_qrs**2).mean(axis=(0, 1)))
    between = np.sqrt((at_middle**2).mean(axis=(0, 1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(between > 1e-9, qrs / np.maximum(between, 1e-12), np.inf)
    ratio = ratio[qrs > 1e-9]
    return float(ratio.max()) if ratio.size else math.nan


# --------------------------------------------------------------------------- a record's rhythm


class RhythmCode(enum.StrEnum):
    """Rhythm statements (SCP-ECG acronyms as PTB-XL uses them)."""

    SR = "SR"
    SBRAD = "SBRAD"
    STACH = "STACH"
    SARRH = "SARRH"
    AFIB = "AFIB"
    AFLT = "AFLT"
    SVTAC = "SVTAC"
    PACE = "PACE"
    # No P wave, regular ventricular rhythm at a normal rate: junctional or
    # undetermined; said as such rather than forced into a class.
    UNDETERMINED = "RHYTHM?"


@dataclass(frozen=True, slots=True)
class RecordRhythm:
    """The rhythm of a short record, with the evidence for it.

    Attributes
    ----------
    code : RhythmCode or None
        None when not assessable (``reason`` says why).
    reason : str or None
    evidence : dict of str to float
        ``hr_bpm``, ``rr_range_ms``, ``irregularity``, ``p_coherence``,
        ``p_present_fraction`` (when delineated P waves were given),
        ``paced_fraction``, ``af_fraction``, and the thresholds compared with.
    """

    code: RhythmCode | None
    reason: str | None
    evidence: dict[str, float]


# Thresholds of the rhythm statements. Sinus bradycardia below 55/min: the AHA/ACC/HRS
# 2009 recommendations (part II) keep 60/min for uniformity, but cardiologists name it
# only clearly below that (in Spodick's surveys, Am J Cardiol 1992-93, most took
# 50-90/min as the normal resting rate). On LUDB's own beats, 12 of LUDB dev's 25
# unpaced sinus records under 60/min are labelled "sinus rhythm" (54.7-59.8/min, one
# at 48.5/min with pauses) and "sinus bradycardia" is written up to 56.2/min; PTB-XL's
# sample says "SR" at 54.8 and 56.2/min. 55/min, chosen on LUDB dev's odd records,
# agrees with 42/44 of them and 38/39 of the even ones (60/min: 34/44 and 34/39).
# Tachycardia above 100/min; sinus arrhythmia when the P-P (here the non-premature
# R-R) intervals vary by more than 0.16 s (Chou's criterion); SVT at 150/min or more
# without P waves; paced when spikes precede most beats.
BRADY_BPM = 55.0
TACHY_BPM = 100.0
SVT_BPM = 150.0
SARRH_RANGE_S = 0.16
PACED_FRACTION = 0.3
# Below this fraction of beats with a delineated P wave, the P waves are absent.
P_ABSENT_FRACTION = 0.25


# A narrow QRS reaches its R peak about 40 ms after its onset (half a normal QRS).
NARROW_R_LAG_S = 0.04


def rhythm_marks(beats: npt.ArrayLike, qrs_onsets: npt.ArrayLike, fs_hz: float) -> IntArray:
    """Beat marks that sit at the same place in every complex, for the rhythm measures.

    A detector marks a narrow complex on its R peak, but a wide one (paced, bundle
    branch block, ventricular) anywhere in it, from beat to beat: its RR intervals
    then vary by up to the QRS width (a regular paced rhythm read as irregular), the
    lag of a pacing spike to the mark varies as much, and the atrial segment before
    the mark reaches into the QRS. A beat marked more than ``NARROW_R_LAG_S`` after
    its delineated QRS onset is moved back to that lag after the onset; narrow
    complexes keep their R peak.

    Parameters
    ----------
    beats : array_like of int
        R peaks from the detector, increasing.
    qrs_onsets : array_like of int
        Each beat's QRS onset (negative where not delineated), same length.
    fs_hz : float

    Returns
    -------
    ndarray of int64
        The marks; ``beats`` unchanged when the lengths differ or the moved marks
        would not increase strictly.
    """
    peaks = np.asarray(beats, dtype=np.int64).reshape(-1)
    onsets = np.asarray(qrs_onsets, dtype=np.int64).reshape(-1)
    if onsets.shape != peaks.shape or peaks.size == 0:
        return peaks
    lag = round(NARROW_R_LAG_S * fs_hz)
    valid = (onsets >= 0) & (onsets <= peaks)
    marks = np.where(valid, np.minimum(peaks, onsets + lag), peaks)
    if marks.size > 1 and not bool((np.diff(marks) > 0).all()):
        return peaks
    return marks


def record_rhythm(
    signal_mv: npt.ArrayLike,
    beats: npt.ArrayLike,
    fs_hz: float,
    *,
    p_present: npt.ArrayLike | None = None,
    config: AtrialConfig = AtrialConfig(),
) -> RecordRhythm:
    """The rhythm statement of a short record (a 10 s ECG) from beats and atrial activity.

    Parameters
    ----------
    signal_mv : array_like, shape (n_samples, n_leads)
        The record as read, mV.
    beats : array_like of int
        R peaks.
    fs_hz : float
    p_present : array_like of bool, optional
        Per beat, whether the delineation found a P wave before it (with a PR within
        120–300 ms); without it, the P coherence alone decides.
    config : AtrialConfig
    """
    x = _as_2d(signal_mv)
    peaks = np.asarray(beats, dtype=np.int64).reshape(-1)
    if peaks.size < 3:
        return RecordRhythm(None, "fewer than 3 beats", {"n_beats": float(peaks.size)})
    rr_s = np.diff(peaks) / fs_hz
    hr_bpm = 60.0 / float(np.median(rr_s))
    # The short-record window is the whole record: every beat in one window.
    short = dataclasses.replace(
        config, window_beats=max(4, min(config.window_beats, peaks.size)), smooth_beats=1
    )
    activity = atrial_activity(x, peaks, fs_hz, short)
    coherence = (
        float(np.nanmedian(activity.coherence))
        if np.isfinite(activity.coherence).any()
        else math.nan
    )
    irregularity = (
        float(np.nanmedian(activity.irregularity))
        if np.isfinite(activity.irregularity).any()
        else math.nan
    )
    normal = ~activity.premature[1:]
    rr_normal = rr_s[normal] if normal.any() else rr_s
    rr_range = float(rr_normal.max() - rr_normal.min())
    pacing = pacing_spikes(x, peaks, fs_hz)
    evidence: dict[str, float] = {
        "hr_bpm": hr_bpm,
        "n_beats": float(peaks.size),
        "rr_range_ms": 1000.0 * rr_range,
        "irregularity": irregularity,
        "irregularity_min": config.af_irregularity,
        "p_coherence": coherence,
        "p_coherence_min": config.af_coherence,
        "paced_fraction": pacing.fraction,
        "paced_fraction_min": PACED_FRACTION,
        "brady_below_bpm": BRADY_BPM,
        "tachy_above_bpm": TACHY_BPM,
    }
    p_fraction = math.nan
    if p_present is not None:
        flags = np.asarray(p_present, dtype=bool).reshape(-1)
        if flags.size:
            p_fraction = float(flags.mean())
            evidence["p_present_fraction"] = p_fraction
    if pacing.fraction >= PACED_FRACTION:
        return RecordRhythm(RhythmCode.PACE, None, evidence)
    # Segments without a P wave still share some shape by chance (T-wave ends, the
    # filter's response), about 1 / n of n segments averaged: a short record's
    # threshold is six times that, never below the long-window one.
    n_normal = max(1, int(normal.sum()) + 1)
    coherence_min = max(config.af_coherence, 6.0 / n_normal)
    evidence["p_coherence_min"] = coherence_min
    coherent = math.isfinite(coherence) and coherence >= coherence_min
    if not math.isfinite(irregularity) and rr_s.size >= 3:
        # Too few non-premature pairs in so short a record: all intervals.
        irregularity = float(np.median(np.abs(np.diff(rr_s))) / np.median(rr_s))
        evidence["irregularity"] = irregularity
    # P waves need a coherent atrial segment; the delineation's P waves (when given)
    # can only take them away: it finds "P waves" among fibrillatory waves too.
    has_p = coherent and not (math.isfinite(p_fraction) and p_fraction < P_ABSENT_FRACTION)
    irregular = math.isfinite(irregularity) and irregularity > config.af_irregularity
    if not has_p:
        # Flutter waves are looked for only where no P wave is locked to the QRS: in a
        # sinus rhythm the residual of the QRST cancellation repeats at the heart rate,
        # and its harmonics fall in the flutter band. Flutter conducted at a fixed AV
        # delay (2:1, 3:1, 4:1) in most beats is not found: each F wave keeps its
        # place relative to those QRS, so the median QRST template holds the F waves
        # and the cancellation removes them. LUDB 35 (typical flutter, the sawtooth
        # plain in II, III, aVF and V1; 17 of 21 RR at 410-460 ms, 2:1 of waves near
        # 285/min, 4 at 530-610 ms): no delineated P wave (0 of 22 beats), an atrial
        # segment coherent with the QRS (0.78), no lead of the residual with a line
        # in the band: "no P waves found". The same with a synthetic sawtooth at
        # 285/min locked 2:1, 3:1 or 4:1 (0 of 12 leads), and in MIT-BIH 202's
        # regular flutter (128-138/min). It is found where the delay varies (the
        # synthetic test's 4:1) and in LUDB 52 (66/min, RR varying by 116 ms: 270/min
        # in 7 leads).
        flutter = flutter_waves(x, peaks, fs_hz)
        usable = int((np.isfinite(x).mean(axis=0) >= 0.5).sum())
        if flutter.n_leads:
            evidence["atrial_rate_per_min"] = flutter.rate_per_min
            evidence["flutter_leads"] = float(flutter.n_leads)
            evidence["flutter_concentration"] = flutter.concentration
        if flutter.n_leads >= min(FLUTTER_LEADS, max(usable, 2)):
            return RecordRhythm(RhythmCode.AFLT, None, evidence)
    if not has_p and irregular:
        return RecordRhythm(RhythmCode.AFIB, None, evidence)
    if not has_p and hr_bpm >= SVT_BPM:
        return RecordRhythm(RhythmCode.SVTAC, None, evidence)
    if not has_p:
        return RecordRhythm(RhythmCode.UNDETERMINED, "no P waves found", evidence)
    if hr_bpm < BRADY_BPM:
        return RecordRhythm(RhythmCode.SBRAD, None, evidence)
    if hr_bpm > TACHY_BPM:
        return RecordRhythm(RhythmCode.STACH, None, evidence)
    if rr_range > SARRH_RANGE_S:
        return RecordRhythm(RhythmCode.SARRH, None, evidence)
    return RecordRhythm(RhythmCode.SR, None, evidence)


# --------------------------------------------------------------------------- flutter waves


@dataclass(frozen=True, slots=True)
class FlutterWaves:
    """Regular atrial activity found in the QRST-cancelled residual of a record.

    Attributes
    ----------
    rate_per_min : float
        Atrial rate of the agreeing leads' spectral peak, /min (NaN: none).
    n_leads : int
        Leads whose residual has a sharp peak in the flutter band, at that rate.
    concentration : float
        Mean fraction of the 3–10 Hz residual power within 0.5 Hz of the peak.
    """

    rate_per_min: float
    n_leads: int
    concentration: float


# Typical and atypical flutter: regular atrial waves at 240-350/min (4.0-5.8 Hz).
FLUTTER_HZ = (4.0, 350.0 / 60.0)
# A sharp line: half the 3-10 Hz power within 0.5 Hz of the peak (a sinus residual or
# fibrillatory waves spread theirs), in at least FLUTTER_LEADS leads that agree
# within 0.25 Hz.
FLUTTER_CONCENTRATION = 0.5
FLUTTER_LEADS = 3


@functools.lru_cache(maxsize=16)
def _welch_window(nperseg: int) -> FloatArray:
    """``scipy.signal.welch``'s default window (periodic Hann) of ``nperseg`` samples,
    made once per length rather than by each call (read-only; welch does not write it)."""
    window = np.asarray(sps.get_window("hann_periodic", nperseg), dtype=np.float64)
    window.flags.writeable = False
    return window


def flutter_waves(signal_mv: npt.ArrayLike, beats: npt.ArrayLike, fs_hz: float) -> FlutterWaves:
    """Flutter waves: the median QRST complex of each lead is subtracted at every beat,
    the QRS itself blanked (±60 ms), and the residual's spectrum (Welch, 4 s segments)
    searched for a sharp peak at 240–350/min, the same in several leads.

    Needs at least 4 s and 3 beats; otherwise nothing is found.
    """
    x = _as_2d(signal_mv)
    peaks = np.asarray(beats, dtype=np.int64).reshape(-1)
    none = FlutterWaves(math.nan, 0, math.nan)
    if x.shape[0] < 4 * fs_hz or fs_hz < 30 or peaks.size < 3:
        return none
    sos = _bandpass(2.0, min(20.0, 0.4 * fs_hz), fs_hz)
    y = sosfiltfilt_columns(sos, np.where(np.isfinite(x), x, 0.0))
    pre, post = round(0.25 * fs_hz), round(0.45 * fs_hz)
    inside = peaks[(peaks >= pre) & (peaks < y.shape[0] - post)]
    if inside.size < 3:
        return none
    # Each lead's median beat as numpy.median takes it, by the delineation's kernel
    # (each sample sorted from the beats' order at the sample before: few moves).
    rows = inside[:, None] + np.arange(-pre, post)[None, :]
    y_rows = np.ascontiguousarray(y.T)  # lead-major once, not a copy per lead
    template = np.column_stack([median_rows(y_rows[lead], rows) for lead in range(y.shape[1])])
    residual = y.copy()
    for beat in inside.tolist():
        residual[beat - pre : beat + post] -= template
    half = round(0.06 * fs_hz)
    for beat in peaks.tolist():
        residual[max(0, beat - half) : beat + half] = 0.0
    nperseg = min(residual.shape[0], round(4 * fs_hz))
    freq, power = sps.welch(
        residual, fs=fs_hz, window=_welch_window(nperseg), nperseg=nperseg, axis=0
    )
    band = (freq >= 3.0) & (freq <= 10.0)
    found = []
    for lead in range(x.shape[1]):
        p = power[band, lead]
        total = float(p.sum())
        if not np.isfinite(x[:, lead]).mean() >= 0.5 or total <= 0:
            continue
        k = int(np.argmax(p))
        peak_hz = float(freq[band][k])
        share = float(p[np.abs(freq[band] - peak_hz) <= 0.5].sum()) / total
        if FLUTTER_HZ[0] <= peak_hz <= FLUTTER_HZ[1] and share >= FLUTTER_CONCENTRATION:
            found.append((peak_hz, share))
    if not found:
        return none
    rates = np.asarray([f for f, _ in found])
    centre = float(np.median(rates))
    agree = [(f, s) for f, s in found if abs(f - centre) <= 0.25]
    return FlutterWaves(60.0 * centre, len(agree), float(np.mean([s for _, s in agree])))
