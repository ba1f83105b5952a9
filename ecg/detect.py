"""Multi-lead QRS detection, one algorithm for streams and for recorded ECGs.

Design notes
------------
- **Batch is streaming.** :func:`detect_qrs` runs :func:`detector_step` once over the
  whole record and then :func:`detector_flush`, so the two forms agree by construction
  (exactly in practice; the moving sums restart per chunk, which could move a tie by
  one sample). Every stage is causal and carries its state: block averaging to the
  internal rate, ``sosfilt`` with ``zi``, moving windows with their tails, per-block
  statistics aligned on absolute sample indices (so chunk boundaries do not matter),
  and a decision that looks at most ``lookahead_s`` past a candidate.
- **Bounded latency.** A candidate is decided as soon as ``lookahead_s`` of signal
  beyond it has arrived, never later: there is no search-back. What search-back buys
  (a small beat after a long gap) comes instead from halving the threshold once the
  time since the last beat exceeds ``gap_factor`` mean RR intervals, which is known
  when the candidate is decided. The envelope lags the R peak by ``window_s / 2`` and
  the R peak is placed at most ``LOCATE_S`` before the envelope's centre, so
  ``lookahead_s + window_s / 2 + LOCATE_S`` (+ two internal samples) stays within
  300 ms; :class:`DetectorConfig` refuses settings that break this.
- **Internal rate.** Input at 100–2000 Hz is block-averaged by an integer factor to
  about ``internal_fs_hz`` (100 Hz: 120 Hz for MIT-BIH's 360 Hz); averaging is a cheap
  anti-alias low-pass and the QRS energy used (5–20 Hz) is well inside the band. Every
  later stage runs on a fraction of the samples; that is most of the speed.
- **Per-lead envelope, normalised.** Each lead is band-passed (Butterworth 5–20 Hz,
  causal), squared, averaged over ``window_s`` and square-rooted: an RMS envelope. It
  is divided by the lead's typical beat level, the median of the per-block
  (``block_s``) maxima of the last ``history_blocks`` blocks, and clipped at 3, so
  every lead speaks in "beats" whatever its gain.
- **Fusion of leads.** The detection function is the weighted mean of the normalised
  envelopes. A lead's weight is the product of: its peakiness over past blocks (beats
  stand out of the envelope's median; noise does not; fast complexes fill the period
  and are not peaky either, so when no lead is, the lead of largest beat level keeps a
  floor weight and the fusion never goes silent: a wide-QRS tachycardia at 180/min was
  lost before); its local calm (its noise
  floor: the running minimum of its envelope over ``FLOOR_S``, averaged over the last
  ``noise_s``; a minimum ignores beats and T waves, so a lead is not penalised for big
  beats, while a burst of noise lifts it; above ``ACTIVITY_CALM`` the weight falls
  with the square, so a lead in a burst of noise yields to the others within a
  beat); its visibility (how high its envelope stood at the last detected beats: a
  lead in which beats do not show, but artefacts do, fades out); and zero where the
  lead is unusable — missing (NaN or ±inf), or flat for ``flat_s`` (lead off, stuck
  at a rail), counted from the first sample of the flat run so the step onto the rail
  is excluded too, and for ``settle_s`` after. A flat, saturated or missing lead
  therefore neither creates nor hides beats: the other leads carry detection. When no
  lead is usable, nothing is detected.
- **Decision.** Candidates are local maxima of the fused function that dominate it
  from ``SUPPRESS_S`` before to ``DOMINATE_AHEAD_S`` after (further ahead than behind,
  so that a large P wave is not taken for the QRS whose envelope is already rising in
  the look-ahead). Each is valued with the leads' weights at that moment and each
  lead's own peak within ±``LOCATE_S``, then compared with a Pan–Tompkins-style
  adaptive threshold between running noise and signal levels (``threshold``); stricter
  for premature candidates (``premature_*``) while they may still be the last beat's
  T wave — within the longest normal QT for the mean RR (``qtc_s``, Bazett), and only
  once ``RR_LEARNT`` RR intervals are measured, since the start-up mean RR would make
  every other beat at 250/min premature —, for likely T waves (``t_wave_*``), and
  within ``refractory_s`` of a beat nothing is accepted.
- **VF/VFL.** Ventricular fibrillation and flutter are a rhythm, not beats: a causal
  VF-filter-leakage detector (:mod:`ecg.detect_vf`) runs on the block-averaged leads,
  and while it says VF/VFL no candidate is accepted (asked at the candidate's decision
  time, so chunking does not matter). Blocks that end in VF/VFL keep the statistics of
  the block before, so that beats are scaled and weighted as before VF when it ends.
  The episodes are :attr:`DetectorState.vf_episodes` and :func:`detect_qrs_and_vf`.
- **Location.** The R peak is the sample of largest deflection from the local baseline
  (the mean of the signal 100 ms either side), summed over leads with the weights the
  beat was decided with, within ±``LOCATE_S`` of the envelope's centre. It is measured
  on the block-averaged signal, not the band-passed one, whose delay depends on QRS
  width (wide paced beats were otherwise placed 160 ms late), and mapped to the centre
  of its block in input coordinates.
- **Compiled kernels.** The sequential and per-sample parts (block averaging, NaN/inf hold
  and flat runs, band-pass and moving RMS, block maxima and medians, lead weights,
  candidates, the decision loop, R-peak location, VF leakage) are numba kernels in
  :mod:`ecg._detect_kernels` (per-sample stages), :mod:`ecg._detect_decide` (lead
  weights and the decision loop: the rules accuracy work changes, in a file of their
  own so that editing them recompiles little) and :mod:`ecg._detect_vf_kernels`,
  each one loop doing the work of several numpy passes;
  this module keeps the state, the block statistics and the bookkeeping between
  chunks. The kernels repeat the numpy code's floating-point operations in the same
  order, so compiling them moved no beat. They take float64, C-contiguous, lead-major
  arrays (the buffers are made contiguous before a decision), so each compiles once;
  ``cache=True`` keeps the machine code in ``__pycache__`` (the first call in a fresh
  clone compiles them all, see ``ecg/_jit.py``).
- **Start-up.** The first block has no history: the scale is the running maximum so
  far, floored at ``START_SCALE_MV`` so that baseline noise before the first beat is
  not normalised up to a beat; candidates start one envelope window in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from ecg._detect_decide import decide_candidates, lead_weights
from ecg._detect_kernels import (
    band_rms,
    block_average,
    block_max_median,
    find_candidates,
    history_median,
    hold_and_flag,
    locate_peaks,
)
from ecg.detect_vf import (
    VfConfig,
    VfState,
    vf_active_at,
    vf_start,
    vf_step,
)
from ecg.errors import ConfigError, SignalError
from ecg.filters import sosfilt_rows_zi

__all__ = [
    "DetectorConfig",
    "DetectorState",
    "VfConfig",
    "detect_qrs",
    "detect_qrs_and_vf",
    "detector_flush",
    "detector_start",
    "detector_step",
]

MIN_FS_HZ = 100.0
MAX_FS_HZ = 2000.0
MAX_LEADS = 15
MAX_LATENCY_S = 0.3
# How far before the envelope's centre an R peak may be placed, in seconds.
LOCATE_S = 0.06
# A candidate must be the largest peak of the detection function from SUPPRESS_S before
# it to DOMINATE_AHEAD_S after it, in s. Looking further ahead than behind: a P wave
# 0.12-0.2 s before its QRS (large P waves, long PR) is no longer taken for a beat when
# the look-ahead already shows the QRS's envelope rising above it (MIT-BIH 108: 32 false
# beats before, 23 after). Bounded by the look-ahead (see detector_start).
SUPPRESS_S = 0.1
DOMINATE_AHEAD_S = 0.12
# A lead whose beats reach this (normalised envelope) at detected beats is fully
# visible; below it, its weight falls with the square of the shortfall.
VISIBLE = 1.0
# Candidates below this value of the detection function are not considered.
CANDIDATE_FLOOR = 0.05
# Floor of a lead's scale in the first block, in mV of band-passed RMS envelope.
START_SCALE_MV = 0.08
# Noise floor (mean of the normalised envelope's running minimum) above which a lead
# is down-weighted.
ACTIVITY_CALM = 0.08
# Least block weight of the most peaky lead (see _peaky_weight).
BEST_LEAD_WEIGHT = 0.05
# RR intervals measured before a beat can be called premature: until then the mean RR
# still leans on the start-up guess (0.8 s; after 8 intervals of 0.24 s it is 0.43 s),
# and at 250/min every other beat would read premature. A plain mean of the first
# intervals would learn faster, but also from the waves taken for beats at start-up.
RR_LEARNT = 8
# Window of the running minimum that measures a lead's noise floor, in seconds.
FLOOR_S = 0.25

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_Arr = TypeVar("_Arr", FloatArray, IntArray)


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Validated settings of the QRS detector (all times in seconds).

    Parameters
    ----------
    internal_fs_hz : float
        Target rate in Hz after block averaging (the actual rate is ``fs_hz`` divided
        by the nearest integer factor that does not go below it).
    band_low_hz, band_high_hz : float
        Pass band of the causal Butterworth band-pass, in Hz.
    window_s : float
        Length of the moving RMS window that makes each lead's envelope.
    refractory_s : float
        No second beat within this time after a beat.
    lookahead_s : float
        How far past a candidate peak the decision may look.
    threshold : float
        Fraction of the way from the noise level to the signal level of the
        detection function above which a candidate is a beat.
    gap_factor : float
        After ``gap_factor`` times the mean RR interval without a beat, the threshold
        is halved (replaces search-back).
    premature_factor, premature_threshold : float
        A candidate sooner than ``premature_factor`` times the mean RR interval after
        the last beat must reach ``premature_threshold`` times the signal level.
    t_wave_s : float
        A candidate closer than this to the previous beat and smaller than
        ``t_wave_ratio`` times it is taken for a T wave.
    t_wave_ratio : float
        See ``t_wave_s``.
    qtc_s : float
        Longest normal heart-rate-corrected QT interval (Bazett), s. The premature
        rule applies only while a candidate may still be the last beat's T wave, that
        is within ``qtc_s * sqrt(mean RR)`` of it; a premature beat later than that
        faces the ordinary threshold. 0.44 s is the usual upper limit of normal QTc.
    block_s : float
        Length of the blocks over which per-lead amplitude and quality are measured.
    history_blocks : int
        How many past blocks the per-lead amplitude and quality are the median of.
    flat_s : float
        A lead that does not change for this long is unusable (lead off, rail).
    settle_s : float
        Margin after an unusable stretch during which the lead is still ignored.
    noise_s : float
        How far back a lead's local activity (its noise level) is measured.
    vf : VfConfig
        The VF/VFL detector (:mod:`ecg.detect_vf`); no beat is detected during VF/VFL.
    """

    # Rates and filters
    internal_fs_hz: float = 100.0
    band_low_hz: float = 5.0
    band_high_hz: float = 20.0
    window_s: float = 0.1
    # Decision
    refractory_s: float = 0.2
    lookahead_s: float = 0.16
    threshold: float = 0.3
    gap_factor: float = 1.5
    premature_factor: float = 0.5
    premature_threshold: float = 0.8
    t_wave_s: float = 0.36
    t_wave_ratio: float = 0.6
    qtc_s: float = 0.44
    # Lead quality
    block_s: float = 2.0
    history_blocks: int = 8
    flat_s: float = 0.1
    settle_s: float = 0.3
    noise_s: float = 1.0
    # Rhythm
    vf: VfConfig = field(default_factory=VfConfig)

    def __post_init__(self) -> None:
        positive = {
            "internal_fs_hz": self.internal_fs_hz,
            "band_low_hz": self.band_low_hz,
            "window_s": self.window_s,
            "refractory_s": self.refractory_s,
            "lookahead_s": self.lookahead_s,
            "block_s": self.block_s,
            "flat_s": self.flat_s,
            "settle_s": self.settle_s,
            "noise_s": self.noise_s,
            "qtc_s": self.qtc_s,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive finite number, got {value!r}")
        if not 50.0 <= self.internal_fs_hz <= 500.0:
            raise ConfigError(
                f"internal_fs_hz must be within 50..500 Hz, got {self.internal_fs_hz}"
            )
        if not self.band_low_hz < self.band_high_hz < 0.45 * self.internal_fs_hz:
            raise ConfigError(
                "'band_low_hz' < 'band_high_hz' < 0.45 * 'internal_fs_hz' must be True, got "
                f"{self.band_low_hz}, {self.band_high_hz}, {self.internal_fs_hz}"
            )
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must be within (0, 1), got {self.threshold}")
        if not 0.0 <= self.premature_factor < 1.0:
            raise ConfigError(
                f"premature_factor must be within [0, 1), got {self.premature_factor}"
            )
        if not 0.0 < self.premature_threshold <= 1.0:
            raise ConfigError(
                f"premature_threshold must be within (0, 1], got {self.premature_threshold}"
            )
        if not 0.0 < self.t_wave_ratio <= 1.0:
            raise ConfigError(f"t_wave_ratio must be within (0, 1], got {self.t_wave_ratio}")
        if not (math.isfinite(self.gap_factor) and self.gap_factor >= 1.0):
            raise ConfigError(f"gap_factor must be >= 1, got {self.gap_factor}")
        if self.flat_s > SUPPRESS_S:
            raise ConfigError(f"flat_s must be <= {SUPPRESS_S} s, got {self.flat_s}")
        if self.history_blocks < 1:
            raise ConfigError(f"history_blocks must be >= 1, got {self.history_blocks}")
        if self.t_wave_s < 0:
            raise ConfigError(f"t_wave_s must be >= 0, got {self.t_wave_s}")
        # A beat is located up to LOCATE_S before the envelope's centre, which lags the
        # candidate by window_s / 2; two internal samples cover the block rounding.
        latency_s = self.lookahead_s + self.window_s / 2 + LOCATE_S + 2.0 / self.internal_fs_hz
        if latency_s > MAX_LATENCY_S:
            raise ConfigError(
                "lookahead_s + window_s / 2 + 0.06 s + 2 / internal_fs_hz must keep the "
                f"beat latency within {MAX_LATENCY_S} s, got {latency_s:.3f} s"
            )


class DecisionLevels(NamedTuple):
    """What the decision loop carries from candidate to candidate (and chunk to chunk).

    ``noise`` and ``level`` are the running noise and signal levels of the detection
    function, ``rr_s`` the mean RR interval in s and ``rr_count`` how many intervals it
    has measured, ``last_i`` and ``last_f`` the last beat's internal index and value.
    """

    noise: float = 0.1
    level: float = 1.0
    rr_s: float = 0.8
    rr_count: int = 0
    last_i: int = -(10**9)
    last_f: float = 0.0


@dataclass(slots=True)
class DetectorState:
    """Everything the detector carries from one chunk to the next.

    Indices named ``*_i`` are absolute sample indices at the internal rate; ``fs_hz``
    is the input rate and ``factor`` the block-averaging factor. Arrays are stored lead
    by lead, ``(n_leads, n)``, so that every stage runs on contiguous memory.
    """

    config: DetectorConfig
    fs_hz: float
    n_leads: int
    factor: int
    internal_fs_hz: float
    sos: FloatArray
    window_n: int
    block_n: int
    flat_n: int
    settle_n: int
    noise_n: int
    reach_n: int
    suppress_n: int
    ahead_n: int
    # Input and filter memory
    pending: FloatArray
    last_value: FloatArray
    unchanged_n: IntArray
    last_bad_i: IntArray
    sq_tail: FloatArray
    # Per-block statistics of the last history_blocks completed blocks
    block_max: FloatArray
    block_peaky: FloatArray
    cur_env: FloatArray
    run_max: FloatArray
    # Buffers at the internal rate, starting at absolute index buf_start_i
    buf_d: FloatArray
    buf_iscale: FloatArray
    buf_env: FloatArray
    buf_bad: BoolArray
    buf_weight: FloatArray
    vf: VfState
    zi: FloatArray | None = None
    # Inverse scale and weight, (n_leads, 1), of block stats_block (see _block_stats)
    stats_block: int = -1
    stats_inv_scale: FloatArray = field(default_factory=lambda: np.ones((0, 1)))
    stats_weight: FloatArray = field(default_factory=lambda: np.ones((0, 1)))
    n_input: int = 0
    n_internal: int = 0
    blocks_done: int = 0
    buf_start_i: int = 0
    # Decision memory
    next_cand_i: int = 0
    visibility: FloatArray = field(default_factory=lambda: np.ones(0))
    levels: DecisionLevels = field(default_factory=DecisionLevels)

    @property
    def vf_episodes(self) -> list[tuple[int, int | None]]:
        """VF/VFL episodes so far, ``(onset, offset)`` in input samples.

        The onset is when the trailing window first measured VF/VFL (up to
        ``config.vf.hop_s`` after its evidence was complete), the offset when it no
        longer did; ``None`` while the episode lasts. No beat is detected in between.
        """
        k = self.factor
        return [
            (int(on or 0) * k, None if off is None else int(off) * k)
            for on, off in self.vf.episodes
        ]


def _as_2d(chunk_mv: npt.ArrayLike, n_leads: int | None) -> FloatArray:
    x = np.asarray(chunk_mv, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise SignalError(f"expected a (n_samples, n_leads) array, got shape {x.shape}")
    if n_leads is not None and x.shape[1] != n_leads:
        raise SignalError(f"expected {n_leads} leads, got {x.shape[1]}")
    return x


def detector_start(
    n_leads: int, fs_hz: float, config: DetectorConfig = DetectorConfig()
) -> DetectorState:
    """Return the initial state for a stream of ``n_leads`` leads at ``fs_hz`` Hz.

    Raises
    ------
    SignalError
        For a rate outside 100–2000 Hz or a lead count outside 1–15.
    """
    if not (isinstance(n_leads, int | np.integer) and 1 <= n_leads <= MAX_LEADS):
        raise SignalError(f"n_leads must be within 1..{MAX_LEADS}, got {n_leads!r}")
    if not (
        isinstance(fs_hz, float | int | np.number)
        and math.isfinite(fs_hz)
        and MIN_FS_HZ <= fs_hz <= MAX_FS_HZ
    ):
        raise SignalError(f"fs_hz must be within {MIN_FS_HZ:g}..{MAX_FS_HZ:g} Hz, got {fs_hz!r}")
    factor = max(1, int(fs_hz // config.internal_fs_hz))
    internal_fs = fs_hz / factor
    high = min(config.band_high_hz, 0.45 * internal_fs)
    sos = np.ascontiguousarray(
        sps.butter(2, [config.band_low_hz, high], btype="bandpass", fs=internal_fs, output="sos"),
        dtype=np.float64,
    )
    n = int(n_leads)
    window_n = max(1, round(config.window_s * internal_fs))
    suppress_n = max(1, round(SUPPRESS_S * internal_fs))
    lookahead_n = max(1, round(config.lookahead_s * internal_fs))
    # A candidate's dominance is judged on columns the decision has without waiting:
    # up to ahead_n after it, whose lead weights look reach_n further (see _lead_weights).
    ahead_n = max(1, min(round(DOMINATE_AHEAD_S * internal_fs), lookahead_n - 1))
    return DetectorState(
        config=config,
        fs_hz=float(fs_hz),
        n_leads=n,
        factor=factor,
        internal_fs_hz=internal_fs,
        sos=sos,
        window_n=window_n,
        block_n=max(1, round(config.block_s * internal_fs)),
        flat_n=max(2, round(config.flat_s * internal_fs)),
        settle_n=round(config.settle_s * internal_fs),
        noise_n=round(config.noise_s * internal_fs),
        reach_n=max(0, lookahead_n - ahead_n - 1),
        suppress_n=suppress_n,
        ahead_n=ahead_n,
        pending=np.zeros((n, 0)),
        last_value=np.full(n, np.nan),
        unchanged_n=np.zeros(n, np.int64),
        last_bad_i=np.full(n, -(10**9), np.int64),
        sq_tail=np.zeros((n, window_n - 1)),
        block_max=np.zeros((n, 0)),
        block_peaky=np.zeros((n, 0)),
        cur_env=np.zeros((n, 0)),
        run_max=np.zeros(n),
        next_cand_i=window_n,
        visibility=np.ones(n),
        buf_d=np.zeros((n, 0)),
        buf_iscale=np.zeros((n, 0)),
        buf_env=np.zeros((n, 0)),
        buf_bad=np.zeros((n, 0), bool),
        buf_weight=np.zeros((n, 0)),
        vf=vf_start(n, internal_fs, config.vf),
    )


def _decimate(x: FloatArray, state: DetectorState) -> FloatArray:
    """Block-average the new input (plus the carried remainder) by ``state.factor``.

    ``x`` is ``(n_samples, n_leads)``, C-contiguous; the result is ``(n_leads,
    n_internal)``, a new array (buffers never alias the caller's array).
    """
    d, state.pending = block_average(state.pending, x, state.factor)
    return d


def _lead_quality(d: FloatArray, state: DetectorState) -> tuple[FloatArray, BoolArray, IntArray]:
    """Replace NaN and ±inf by the last valid value (in place); flag them and flat stretches.

    Holding the last valid value keeps the filters from seeing a step from NaN (an
    infinite sample would have poisoned them for the rest of the stream). Flat is
    no change over ``flat_n`` samples (the length of the current unchanged run is
    carried). Where a run becomes long enough to be flat, the whole run is bad from its
    first sample (the step onto a rail is part of the fault): the onsets ``(lead,
    run_start_i, onset_i)`` are returned for the caller to mark the columns before the
    chunk, which are still undecided because flat_s <= SUPPRESS_S (see _decide).
    """
    bad, onsets = hold_and_flag(
        d, state.last_value, state.unchanged_n, state.flat_n, state.n_internal
    )
    return d, bad, onsets


def _envelope(d: FloatArray, state: DetectorState) -> FloatArray:
    """Band-pass each lead causally and take its moving RMS over ``window_s``."""
    if state.zi is None:
        # Start in steady state on the first sample: no step transient at power-on.
        state.zi = sosfilt_rows_zi(state.sos, d[:, 0])
    env, state.sq_tail = band_rms(d, state.sos, state.zi, state.sq_tail)
    return env


def _history_median(hist: FloatArray, first_b: int, blocks: IntArray, depth: int) -> FloatArray:
    """Median over blocks ``b - depth .. b - 1`` (those that exist) for each ``b``.

    ``hist`` holds one column per block starting at absolute block ``first_b``; every
    ``b`` in ``blocks`` must have at least one earlier block in ``hist``. Computed by
    :func:`ecg._detect_kernels.history_median` (``np.median`` cost 30 µs a call).
    """
    return history_median(np.ascontiguousarray(hist), first_b, blocks, depth)


def _block_stats(env: FloatArray, state: DetectorState) -> tuple[FloatArray, FloatArray]:
    """Per-sample scale and weight of each lead from the statistics of past blocks.

    A block's statistics are known when it ends, so the scale and weight of a sample
    depend only on earlier blocks: causal, and identical for any chunking because
    blocks are aligned on absolute indices.
    """
    depth = state.config.history_blocks
    block_n = state.block_n
    n_leads, n = env.shape
    start = state.n_internal
    first_b = state.blocks_done - state.block_max.shape[1]
    cur = _append(state.cur_env, env)
    n_new = cur.shape[1] // block_n
    all_max, all_peaky = state.block_max, state.block_peaky
    if n_new:
        bmax, bmedian = block_max_median(np.ascontiguousarray(cur), n_new, block_n)
        peaky = bmax / np.maximum(bmedian, 1e-12)
        _hold_during_vf(bmax, peaky, all_max, all_peaky, state)
        all_max = np.concatenate([all_max, bmax], axis=1)
        all_peaky = np.concatenate([all_peaky, peaky], axis=1)
    if n_new or cur is env:
        # A copy: env is normalised in place by the caller, and a slice would hold on
        # to the whole chunk.
        state.cur_env = cur[:, n_new * block_n :].copy()
    else:
        state.cur_env = cur  # a fresh concatenation, owned by nobody else
    state.blocks_done += n_new
    b0 = start // block_n
    b1 = (start + n - 1) // block_n
    skip = start - b0 * block_n
    if b1 == b0 == state.stats_block:
        # A block's scale and weight depend on earlier blocks only: a chunk within the
        # block of the previous one reuses them (most live chunks are shorter than it).
        inv_scale = np.repeat(state.stats_inv_scale, n, axis=1)
        weight = np.repeat(state.stats_weight, n, axis=1)
    else:
        touched = np.arange(b0, b1 + 1)
        scale_b = np.ones((n_leads, touched.shape[0]))
        weight_b = np.ones((n_leads, touched.shape[0]))
        known = touched > first_b if all_max.shape[1] else np.zeros(touched.shape, bool)
        if known.any():
            scale_b[:, known] = _history_median(all_max, first_b, touched[known], depth)
            peaky_b = _history_median(all_peaky, first_b, touched[known], depth)
            weight_b[:, known] = _peaky_weight(peaky_b, scale_b[:, known])
        inv_b = 1.0 / np.maximum(scale_b, 1e-9)
        # Columns per touched block, so that the repeats come out C-contiguous.
        counts = np.full(touched.shape[0], block_n)
        counts[0] -= skip
        counts[-1] = n - counts[:-1].sum()
        inv_scale = np.repeat(inv_b, counts, axis=1)
        weight = np.repeat(weight_b, counts, axis=1)
        state.stats_block = b1
        state.stats_inv_scale = inv_b[:, -1:].copy()
        state.stats_weight = weight_b[:, -1:].copy()
    if b0 == 0:
        # First block: no history yet; the running maximum so far is causal. Its floor
        # (an envelope a QRS of about 0.3 mV reaches) keeps the baseline noise before
        # the first beat from being normalised up to a beat.
        m = min(n, block_n - skip)
        floor = np.maximum(state.run_max, START_SCALE_MV)[:, None]
        run = np.maximum.accumulate(np.maximum(env[:, :m], floor), axis=1)
        state.run_max = run[:, -1].copy()
        inv_scale[:, :m] = 1.0 / np.maximum(run, 1e-9)
    keep = min(depth, all_max.shape[1])
    state.block_max = all_max[:, all_max.shape[1] - keep :]
    state.block_peaky = all_peaky[:, all_peaky.shape[1] - keep :]
    return inv_scale, weight


def _clamp(x: _Arr, lo: float, hi: float) -> _Arr:
    """``np.clip``, without its per-call dispatch on the small arrays of live chunks.

    ``np.clip`` costs several µs a call whatever the size, two plain ufuncs cost about
    1 µs each on a few columns but are many times slower than it on whole records.
    """
    out: _Arr = np.clip(x, lo, hi) if x.size > 256 else np.minimum(np.maximum(x, lo), hi)
    return out


def _peaky_weight(peaky: FloatArray, scale_mv: FloatArray) -> FloatArray:
    """Block weight of each lead (rows) from its peakiness, per block (columns).

    Peakiness (block maximum over median of the envelope) separates beats from noise
    at ordinary rates, but falls below 2 in every lead when fast complexes fill the
    beat period (a wide-QRS tachycardia at 180/min, SVT at 220/min): then every weight
    would be zero and the fused signal silent. So the lead with the largest beat level
    ``scale_mv`` (median block maximum of the envelope, mV) keeps at least
    ``BEST_LEAD_WEIGHT``; amplitude, not peakiness, picks it because a low-amplitude
    lead of pure noise is more peaky than a train of fast wide complexes. Only the
    leads' relative weights matter to the fusion, so this changes nothing while any
    lead is peaky enough; VF/VFL, whose waves would pass too, is told by
    :mod:`ecg.detect_vf`.
    """
    weight: FloatArray = _clamp((peaky - 2.0) / 4.0, 0.0, 1.0)
    best = scale_mv >= scale_mv.max(axis=0, keepdims=True)
    return np.where(best, np.maximum(weight, BEST_LEAD_WEIGHT), weight)


def _hold_during_vf(
    bmax: FloatArray,
    peaky: FloatArray,
    hist_max: FloatArray,
    hist_peaky: FloatArray,
    state: DetectorState,
) -> None:
    """Give blocks that end in VF/VFL the statistics of the block before them.

    VF waves are neither beats nor noise of a lead: counted, they would scale beats down
    and take the leads' weights away for ``history_blocks`` blocks after VF ends.
    """
    if not state.vf.episodes:
        return
    for j in range(bmax.shape[1]):
        end_i = (state.blocks_done + j + 1) * state.block_n
        if not vf_active_at(state.vf, end_i):
            continue
        if j > 0:
            bmax[:, j], peaky[:, j] = bmax[:, j - 1], peaky[:, j - 1]
        elif hist_max.shape[1]:
            bmax[:, j], peaky[:, j] = hist_max[:, -1], hist_peaky[:, -1]


_Buf = TypeVar("_Buf", FloatArray, BoolArray)


def _append(buffer: _Buf, new: _Buf) -> _Buf:
    """Append columns; an empty buffer takes the new array as it is (no copy)."""
    if buffer.shape[1] == 0:
        return new
    return np.concatenate([buffer, new], axis=1)


def detector_step(chunk_mv: npt.ArrayLike, state: DetectorState) -> tuple[IntArray, DetectorState]:
    """Feed the next chunk; return the beats it decides and the new state.

    Parameters
    ----------
    chunk_mv : array_like
        ``(n_samples, n_leads)`` samples in mV (1-D for one lead); NaN (or ±inf) marks
        samples where a lead is not usable.
    state : DetectorState
        From :func:`detector_start` or the previous step; updated in place and returned.

    Returns
    -------
    beats : ndarray of int64
        R-peak sample indices (absolute, input coordinates, sorted) decided by this
        chunk: each beat is returned by the step that brings the stream to at most
        its R peak + 300 ms.
    state : DetectorState
    """
    x = np.ascontiguousarray(_as_2d(chunk_mv, state.n_leads))
    state.n_input += x.shape[0]
    d = _decimate(x, state)
    if d.shape[1]:
        d, bad, onsets = _lead_quality(d, state)
        vf_step(d, bad, state.vf)
        env = _envelope(d, state)
        inv_scale, weight = _block_stats(env, state)
        # Store both signals normalised by the lead's beat amplitude.
        env *= inv_scale
        np.minimum(env, 3.0, out=env)
        state.buf_d = _append(state.buf_d, d)
        state.buf_iscale = _append(state.buf_iscale, inv_scale)
        state.buf_env = _append(state.buf_env, env)
        state.buf_bad = _append(state.buf_bad, bad)
        state.buf_weight = _append(state.buf_weight, weight)
        for lead, start_i, onset_i in onsets.tolist():
            lo = max(0, start_i - state.buf_start_i)
            state.buf_bad[lead, lo : onset_i - state.buf_start_i] = True
        state.n_internal += d.shape[1]
    return _decide(state, final=False), state


def detector_flush(state: DetectorState) -> IntArray:
    """End of stream: return the beats still undecided (their look-ahead is cut short)."""
    return _decide(state, final=True)


def _lead_weights(state: DetectorState, lo: int, hi: int) -> FloatArray:
    """Weight of each lead on buffer columns ``lo:hi``.

    The block weight (peakiness of past blocks) is divided by the square of the lead's
    noise floor (beyond ``ACTIVITY_CALM``): the running minimum of its normalised
    envelope over ``FLOOR_S``, averaged from ``noise_s`` before to ``reach`` after the
    column. A clean lead's floor is a few hundredths of its beat level, a lead in a
    burst of noise sits at several tenths, so the fusion follows the cleaner leads
    within a beat or two. A lead weighs nothing within ``settle_s`` after and ``reach``
    before a bad sample (missing, flat). ``reach`` is the look-ahead that the decision of
    the last candidate of a chunk can use without waiting, which keeps chunked equal to
    batch. Computed by :func:`ecg._detect_decide.lead_weights`.
    """
    return lead_weights(
        state.buf_env,
        state.buf_weight,
        state.buf_bad,
        lo,
        hi,
        max(2, round(FLOOR_S * state.internal_fs_hz)),
        state.noise_n,
        state.settle_n,
        state.reach_n,
        state.buf_start_i - state.last_bad_i,
        ACTIVITY_CALM,
    )


def _contiguous_buffers(state: DetectorState) -> None:
    """Make the buffers C-contiguous (after a trim they are views) for the kernels."""
    state.buf_d = np.ascontiguousarray(state.buf_d)
    state.buf_iscale = np.ascontiguousarray(state.buf_iscale)
    state.buf_env = np.ascontiguousarray(state.buf_env)
    state.buf_bad = np.ascontiguousarray(state.buf_bad)
    state.buf_weight = np.ascontiguousarray(state.buf_weight)


def _vf_table(state: DetectorState, end_i: int) -> IntArray:
    """VF/VFL episodes as ``(onset_i, offset_i)`` rows; one still on ends after ``end_i``."""
    rows = [(on or 0, end_i + 1 if off is None else off) for on, off in state.vf.episodes]
    return np.array(rows, np.int64).reshape(-1, 2)


def _decide(state: DetectorState, final: bool) -> IntArray:
    """Decide every candidate whose look-ahead has arrived (all of them if ``final``).

    The candidates and the decision loop (thresholds, RR mean, visibility) are the
    kernels :func:`ecg._detect_kernels.find_candidates` and
    :func:`ecg._detect_decide.decide_candidates`.
    """
    cfg = state.config
    fs = state.internal_fs_hz
    la = max(1, round(cfg.lookahead_s * fs))
    sup = state.suppress_n
    env_delay = (state.window_n - 1) // 2
    end_i = state.n_internal
    decide_to = end_i if final else end_i - la
    peaks = np.zeros(0, np.int64)
    peak_w = np.zeros((0, state.n_leads))
    first_i = max(state.next_cand_i, state.buf_start_i + 1)
    if decide_to > first_i:
        _contiguous_buffers(state)
        lo_i = max(state.buf_start_i, first_i - sup - 1)
        lo, hi = lo_i - state.buf_start_i, end_i - state.buf_start_i
        weight = _lead_weights(state, lo, hi)
        # Candidates: where any usable lead peaks, dominating from sup before to ahead_n
        # after; each is then valued with the leads' weights as they stand when it is
        # decided.
        a, b = first_i - lo_i, decide_to - lo_i
        cands = find_candidates(
            weight, state.buf_env, lo, a, b, sup, state.ahead_n, CANDIDATE_FLOOR
        )
        # Most chunks of a live stream hold no candidate: nothing to value.
        if cands.shape[0]:
            peaks, peak_w, *carried = decide_candidates(
                cands,
                state.buf_env,
                weight,
                lo,
                lo_i,
                end_i,
                max(1, round(LOCATE_S * fs)),
                la,
                round(cfg.refractory_s * fs),
                round(cfg.t_wave_s * fs),
                fs,
                cfg.threshold,
                cfg.t_wave_ratio,
                cfg.premature_threshold,
                cfg.gap_factor * fs,
                cfg.premature_factor * fs,
                cfg.qtc_s * fs,
                RR_LEARNT,
                VISIBLE,
                _vf_table(state, end_i),
                state.visibility,
                *state.levels,
            )
            state.levels = DecisionLevels._make(carried)
        state.next_cand_i = decide_to
    beats = _locate(state, peaks - env_delay, peak_w)
    _trim(state, state.next_cand_i - sup - max(state.noise_n, state.settle_n) - round(0.5 * fs) - 4)
    return beats


def _trim(state: DetectorState, keep_from_i: int) -> None:
    """Drop buffer columns before ``keep_from_i``, remembering their last bad sample."""
    keep_from = min(keep_from_i, state.n_internal) - state.buf_start_i
    if keep_from <= 0:
        return
    gone = state.buf_bad[:, :keep_from]
    if gone.any():
        last = keep_from - 1 - np.argmax(gone[:, ::-1], axis=1)
        state.last_bad_i = np.where(
            gone.any(axis=1), state.buf_start_i + last, state.last_bad_i
        ).astype(np.int64)
    state.buf_d = state.buf_d[:, keep_from:]
    state.buf_iscale = state.buf_iscale[:, keep_from:]
    state.buf_env = state.buf_env[:, keep_from:]
    state.buf_bad = state.buf_bad[:, keep_from:]
    state.buf_weight = state.buf_weight[:, keep_from:]
    state.buf_start_i += keep_from


def _locate(state: DetectorState, centre_i: IntArray, weights: FloatArray) -> IntArray:
    """R peaks in input coordinates from detection-function peaks (internal indices).

    The R peak is the largest deflection from the local baseline (the mean of the
    signal 100 ms either side) within 60 ms of the envelope's centre, summed over the
    usable leads after normalisation, with the weights the beat was decided with
    (``weights``, one row per beat). It is measured on the block-averaged signal
    itself, not on the band-passed one, whose delay depends on the QRS width.
    """
    if centre_i.shape[0] == 0:
        return np.zeros(0, np.int64)
    fs = state.internal_fs_hz
    half = max(1, round(LOCATE_S * fs))
    edge = max(half + 1, round(0.1 * fs))
    cols = locate_peaks(
        state.buf_d,
        state.buf_iscale,
        state.buf_bad,
        centre_i - state.buf_start_i,
        weights,
        half,
        edge,
    )
    best = cols + state.buf_start_i
    out: IntArray = _clamp(best * state.factor + state.factor // 2, 0, state.n_input - 1)
    return out.astype(np.int64)


def detect_qrs(
    signal_mv: npt.ArrayLike, fs_hz: float, config: DetectorConfig = DetectorConfig()
) -> IntArray:
    """Detect QRS complexes in a recorded ECG.

    Parameters
    ----------
    signal_mv : array_like
        ``(n_samples, n_leads)`` samples in mV; 1-D input is one lead. NaN (or ±inf)
        samples mark where a lead is not usable.
    fs_hz : float
        Sampling rate in Hz (100–2000).
    config : DetectorConfig
        Detector settings.

    Returns
    -------
    ndarray of int64
        R-peak sample indices, sorted, in input coordinates.
    """
    return detect_qrs_and_vf(signal_mv, fs_hz, config)[0]


def detect_qrs_and_vf(
    signal_mv: npt.ArrayLike, fs_hz: float, config: DetectorConfig = DetectorConfig()
) -> tuple[IntArray, list[tuple[int, int]]]:
    """Detect QRS complexes and VF/VFL episodes in a recorded ECG.

    Parameters are those of :func:`detect_qrs`.

    Returns
    -------
    beats : ndarray of int64
        R-peak sample indices, sorted, in input coordinates (as :func:`detect_qrs`).
    vf_episodes : list of (int, int)
        ``(onset, offset)`` sample indices of each VF/VFL episode (see
        :attr:`DetectorState.vf_episodes`); an episode still on at the end of the
        record ends at its length.
    """
    x = _as_2d(signal_mv, None)
    state = detector_start(x.shape[1], fs_hz, config)
    beats, state = detector_step(x, state)
    beats = np.concatenate([beats, detector_flush(state)])
    n = x.shape[0]
    return beats, [(on, n if off is None else off) for on, off in state.vf_episodes]
