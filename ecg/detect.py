"""Multi-lead QRS detection, one algorithm for streams and for recorded ECGs.

Design notes
------------
- **Batch is streaming.** :func:`detect_qrs` runs :func:`detector_step` once over the
  whole record and then :func:`detector_flush`; so the two forms agree by construction.
  Every stage is causal and carries its state: block averaging to the internal rate,
  ``sosfilt`` with ``zi``, a moving window with its tail, per-block statistics aligned
  on absolute sample indices (so that chunk boundaries do not matter), and a decision
  that looks at most ``lookahead_s`` past a candidate.
- **Bounded latency.** A candidate peak of the detection function is decided as soon as
  ``lookahead_s`` of signal beyond it has arrived, never later: there is no search-back.
  What search-back buys (finding a small beat after a long gap) is obtained instead by
  lowering the threshold with the time elapsed since the last beat, which is known when
  the candidate is decided. The detection function lags the R peak by its filter delay;
  ``delay + lookahead_s`` stays under 300 ms (checked in :class:`DetectorConfig`).
- **Internal rate.** Input at any rate from 100 to 2000 Hz is block-averaged by an
  integer factor to about ``internal_fs_hz`` (a cheap anti-alias low-pass plus
  decimation in one reshape). QRS energy lies in 5–25 Hz, so nothing of use is lost,
  and every later stage runs on a fraction of the samples. The R peak is located on
  the band-passed signal at the internal rate and mapped back to the centre of its
  block in input coordinates.
- **Fusion of leads.** Each lead gives an envelope (RMS of the band-passed signal over
  ``window_s``), normalised by that lead's typical beat amplitude: the median of the
  per-block maxima of the previous blocks. The detection function is the weighted mean
  of the normalised envelopes. A lead's weight is its "peakiness" over the previous
  blocks (beats stand out of the envelope's floor; noise does not), and it is zero
  where the lead is unusable: NaN, flat (constant) for ``flat_s``, and for
  ``settle_s`` around such stretches, so that the step into or out of a dead lead does
  not look like a beat. A lead can therefore neither create nor hide beats by itself
  once it is flagged; the other leads carry detection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from ecg.errors import ConfigError, SignalError

__all__ = [
    "DetectorConfig",
    "DetectorState",
    "detect_qrs",
    "detector_flush",
    "detector_start",
    "detector_step",
]

MIN_FS_HZ = 100.0
MAX_FS_HZ = 2000.0
MAX_LEADS = 15
MAX_LATENCY_S = 0.3

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


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
    t_wave_s : float
        A candidate closer than this to the previous beat and smaller than
        ``t_wave_ratio`` times it is taken for a T wave.
    t_wave_ratio : float
        See ``t_wave_s``.
    block_s : float
        Length of the blocks over which per-lead amplitude and quality are measured.
    history_blocks : int
        How many past blocks the per-lead amplitude and quality are the median of.
    flat_s : float
        A lead that does not change for this long is unusable (lead off, rail).
    settle_s : float
        Margin around an unusable stretch during which the lead is still ignored.
    """

    # Rates and filters
    internal_fs_hz: float = 150.0
    band_low_hz: float = 5.0
    band_high_hz: float = 20.0
    window_s: float = 0.1
    # Decision
    refractory_s: float = 0.2
    lookahead_s: float = 0.2
    threshold: float = 0.3
    gap_factor: float = 1.5
    t_wave_s: float = 0.36
    t_wave_ratio: float = 0.5
    # Lead quality
    block_s: float = 2.0
    history_blocks: int = 8
    flat_s: float = 0.3
    settle_s: float = 0.3

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
        if not 0.0 < self.t_wave_ratio <= 1.0:
            raise ConfigError(f"t_wave_ratio must be within (0, 1], got {self.t_wave_ratio}")
        if not (math.isfinite(self.gap_factor) and self.gap_factor >= 1.0):
            raise ConfigError(f"gap_factor must be >= 1, got {self.gap_factor}")
        if self.history_blocks < 1:
            raise ConfigError(f"history_blocks must be >= 1, got {self.history_blocks}")
        if self.t_wave_s < 0:
            raise ConfigError(f"t_wave_s must be >= 0, got {self.t_wave_s}")
        latency_s = self.lookahead_s + self.window_s / 2 + 1.0 / self.internal_fs_hz
        if latency_s > MAX_LATENCY_S - 0.02:
            raise ConfigError(
                "lookahead_s + window_s / 2 must leave the beat latency under "
                f"{MAX_LATENCY_S} s, got {latency_s:.3f} s"
            )


@dataclass(slots=True)
class DetectorState:
    """Everything the detector carries from one chunk to the next.

    Indices named ``*_i`` are absolute sample indices at the internal rate; ``fs_hz``
    is the input rate and ``factor`` the block-averaging factor.
    """

    config: DetectorConfig
    fs_hz: float
    n_leads: int
    factor: int
    internal_fs_hz: float
    sos: FloatArray
    # Input and filter memory
    n_input: int = 0
    pending: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    zi: FloatArray | None = None
    last_value: FloatArray = field(default_factory=lambda: np.zeros(0))
    last_change_i: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    last_bad_i: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    sq_tail: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    # Per-block statistics, one row per completed block
    block_max: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    block_peaky: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    cur_env: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    run_max: FloatArray = field(default_factory=lambda: np.zeros(0))
    # Buffers at the internal rate, starting at absolute index buf_start_i
    n_internal: int = 0
    buf_start_i: int = 0
    buf_y: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    buf_env: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    buf_bad: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros((0, 0), bool))
    buf_scale: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    buf_weight: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    # Decision memory
    next_cand_i: int = 1
    last_beat_i: int = -(10**9)
    last_beat_f: float = 0.0
    signal_level: float = 1.0
    noise_level: float = 0.1
    rr_mean_s: float = 0.8


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
    if not (math.isfinite(fs_hz) and MIN_FS_HZ <= fs_hz <= MAX_FS_HZ):
        raise SignalError(f"fs_hz must be within {MIN_FS_HZ:g}..{MAX_FS_HZ:g} Hz, got {fs_hz!r}")
    factor = max(1, int(fs_hz // config.internal_fs_hz))
    internal_fs = fs_hz / factor
    high = min(config.band_high_hz, 0.45 * internal_fs)
    sos = np.asarray(
        sps.butter(2, [config.band_low_hz, high], btype="bandpass", fs=internal_fs, output="sos"),
        dtype=np.float64,
    )
    n = int(n_leads)
    win = max(1, round(config.window_s * internal_fs))
    return DetectorState(
        config=config,
        fs_hz=float(fs_hz),
        n_leads=n,
        factor=factor,
        internal_fs_hz=internal_fs,
        sos=sos,
        pending=np.zeros((0, n)),
        last_value=np.full(n, np.nan),
        last_change_i=np.zeros(n, np.int64),
        last_bad_i=np.full(n, -(10**9), np.int64),
        sq_tail=np.zeros((win - 1, n)),
        block_max=np.zeros((0, n)),
        block_peaky=np.zeros((0, n)),
        cur_env=np.zeros((0, n)),
        run_max=np.zeros(n),
        buf_y=np.zeros((0, n)),
        buf_env=np.zeros((0, n)),
        buf_bad=np.zeros((0, n), bool),
        buf_scale=np.ones((0, n)),
        buf_weight=np.zeros((0, n)),
    )


def _decimate(x: FloatArray, state: DetectorState) -> FloatArray:
    """Block-average the new input (plus the carried remainder) by ``state.factor``."""
    k = state.factor
    if state.pending.shape[0]:
        x = np.concatenate([state.pending, x])
    n_full = (x.shape[0] // k) * k
    state.pending = x[n_full:].copy()
    if k == 1:
        return x[:n_full]
    out: FloatArray = x[:n_full].reshape(-1, k, state.n_leads).mean(axis=1)
    return out


def _lead_quality(d: FloatArray, state: DetectorState) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Replace NaN by the last valid value; flag NaN and flat stretches as bad."""
    n = d.shape[0]
    base = state.n_internal
    idx = np.arange(base, base + n)[:, None]
    nan = np.isnan(d)
    if nan.any():
        # Hold the last valid value so that the filters see no step from NaN.
        pos = np.where(~nan, np.arange(n)[:, None], -1)
        pos = np.maximum.accumulate(pos, axis=0)
        held = np.take_along_axis(d, np.maximum(pos, 0), axis=0)
        prev = np.where(np.isnan(state.last_value), 0.0, state.last_value)
        d = np.where(pos >= 0, held, prev[None, :])
    prev_value = np.where(np.isnan(state.last_value), d[0] if n else 0.0, state.last_value)
    changed = np.diff(np.concatenate([prev_value[None, :], d]), axis=0) != 0
    changed |= np.isnan(state.last_value)[None, :] & (idx == base)
    change_i = np.where(changed, idx, -1)
    change_i = np.maximum(np.maximum.accumulate(change_i, axis=0), state.last_change_i[None, :])
    flat_n = round(state.config.flat_s * state.internal_fs_hz)
    bad = nan | (idx - change_i >= flat_n)
    if n:
        state.last_value = d[-1].copy()
        state.last_change_i = change_i[-1].copy()
    return d, bad


def _envelope(d: FloatArray, state: DetectorState) -> tuple[FloatArray, FloatArray]:
    """Band-pass each lead causally and take its moving RMS over ``window_s``."""
    if state.zi is None:
        # Start in steady state on the first sample: no step transient at power-on.
        state.zi = sps.sosfilt_zi(state.sos)[:, :, None] * d[0][None, None, :]
    y, state.zi = sps.sosfilt(state.sos, d, axis=0, zi=state.zi)
    sq = np.concatenate([state.sq_tail, y * y])
    win = state.sq_tail.shape[0] + 1
    c = np.cumsum(sq, axis=0)
    c = np.concatenate([np.zeros((1, state.n_leads)), c])
    env = np.sqrt(np.maximum(c[win:] - c[:-win], 0.0) / win)
    state.sq_tail = sq[sq.shape[0] - (win - 1) :].copy()
    return y, env


def _block_stats(env: FloatArray, state: DetectorState) -> tuple[FloatArray, FloatArray]:
    """Per-sample scale and weight of each lead from the statistics of past blocks."""
    cfg = state.config
    block_n = max(1, round(cfg.block_s * state.internal_fs_hz))
    n = env.shape[0]
    scale = np.empty_like(env)
    weight = np.empty_like(env)
    start = state.n_internal
    pos = 0
    while pos < n:
        block = (start + pos) // block_n
        end = min(n, (block + 1) * block_n - start)
        seg = env[pos:end]
        hist_max = state.block_max[-cfg.history_blocks :]
        if hist_max.shape[0] == 0:
            # First block: the running maximum so far, causal sample by sample.
            run = np.maximum.accumulate(np.vstack([state.run_max[None, :], seg]), axis=0)[1:]
            state.run_max = run[-1].copy()
            scale[pos:end] = run
            weight[pos:end] = 1.0
        else:
            scale[pos:end] = np.median(hist_max, axis=0)[None, :]
            peaky = np.median(state.block_peaky[-cfg.history_blocks :], axis=0)
            weight[pos:end] = np.clip((peaky - 2.0) / 4.0, 0.0, 1.0)[None, :]
        state.cur_env = np.vstack([state.cur_env, seg])
        if state.cur_env.shape[0] == block_n:
            bmax = state.cur_env.max(axis=0)
            bmed = np.median(state.cur_env, axis=0)
            peaky = bmax / np.maximum(bmed, 1e-12)
            state.block_max = np.vstack([state.block_max, bmax[None, :]])[-cfg.history_blocks :]
            state.block_peaky = np.vstack([state.block_peaky, peaky[None, :]])[
                -cfg.history_blocks :
            ]
            state.cur_env = state.cur_env[:0]
        pos = end
    return np.maximum(scale, 1e-9), weight


def detector_step(chunk_mv: npt.ArrayLike, state: DetectorState) -> tuple[IntArray, DetectorState]:
    """Feed the next chunk; return the beats it decides and the new state.

    Parameters
    ----------
    chunk_mv : array_like
        ``(n_samples, n_leads)`` samples in mV (1-D for one lead); NaN marks samples
        where a lead is not usable.
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
    x = _as_2d(chunk_mv, state.n_leads)
    state.n_input += x.shape[0]
    d = _decimate(x, state)
    if d.shape[0]:
        _ingest(d, state)
    return _decide(state, final=False), state


def detector_flush(state: DetectorState) -> IntArray:
    """End of stream: return the beats still undecided (their look-ahead is cut short)."""
    return _decide(state, final=True)


def _ingest(d: FloatArray, state: DetectorState) -> None:
    d, bad = _lead_quality(d, state)
    y, env = _envelope(d, state)
    scale, weight = _block_stats(env, state)
    state.buf_y = np.vstack([state.buf_y, y])
    state.buf_env = np.vstack([state.buf_env, env])
    state.buf_bad = np.vstack([state.buf_bad, bad])
    state.buf_scale = np.vstack([state.buf_scale, scale])
    state.buf_weight = np.vstack([state.buf_weight, weight])
    state.n_internal += d.shape[0]


def _detection_function(state: DetectorState, lo: int, hi: int) -> FloatArray:
    """Fused detection function on buffer rows ``lo:hi`` (needs the look-ahead rows)."""
    cfg = state.config
    fs = state.internal_fs_hz
    settle = round(cfg.settle_s * fs)
    bad = state.buf_bad
    # A lead is excluded within settle_s of any bad sample, before or after; the rows
    # after hi are available because the decision waits for its look-ahead anyway.
    cb = np.concatenate([np.zeros((1, state.n_leads)), np.cumsum(bad, axis=0)])
    n_buf = bad.shape[0]
    rows = np.arange(lo, hi)
    a = np.clip(rows - settle, 0, n_buf)
    b = np.clip(rows + settle + 1, 0, n_buf)
    near_bad = (cb[b] - cb[a]) > 0
    recent = (state.buf_start_i + rows)[:, None] - state.last_bad_i[None, :] <= settle
    w = np.where(near_bad | recent, 0.0, state.buf_weight[lo:hi])
    norm = np.minimum(state.buf_env[lo:hi] / state.buf_scale[lo:hi], 3.0)
    total = w.sum(axis=1)
    f = (w * norm).sum(axis=1) / np.maximum(total, 1e-12)
    return np.where(total > 0, f, 0.0)


def _decide(state: DetectorState, final: bool) -> IntArray:
    cfg = state.config
    fs = state.internal_fs_hz
    la = max(1, round(cfg.lookahead_s * fs))
    sup = max(1, round(0.1 * fs))
    refr = round(cfg.refractory_s * fs)
    twave = round(cfg.t_wave_s * fs)
    win = state.sq_tail.shape[0] + 1
    env_delay = (win - 1) // 2
    end_i = state.n_internal
    decide_to = end_i if final else end_i - la
    beats: list[int] = []
    first_i = max(state.next_cand_i, state.buf_start_i + 1)
    if decide_to > first_i:
        lo_i = max(state.buf_start_i, first_i - sup - 1)
        lo = lo_i - state.buf_start_i
        hi = end_i - state.buf_start_i
        f = _detection_function(state, lo, hi)
        off = lo_i  # absolute index of f[0]
        # Local maxima of f with absolute index in [first_i, decide_to).
        a = first_i - off
        b = decide_to - off
        core = f[a:b]
        left = f[a - 1 : b - 1]
        right = np.append(f[a + 1 : b + 1], -np.inf)[: core.shape[0]]
        cands = np.flatnonzero((core > left) & (core >= right)) + a
        for c in cands:
            p_i = int(c) + off
            value = float(f[c])
            window = f[max(0, c - sup) : c + sup + 1]
            if value < window.max():
                continue
            elapsed = p_i - state.last_beat_i
            if elapsed < refr:
                continue
            thr = state.noise_level + cfg.threshold * (state.signal_level - state.noise_level)
            if elapsed > cfg.gap_factor * state.rr_mean_s * fs:
                thr *= 0.5
            is_t = elapsed < twave and value < cfg.t_wave_ratio * state.last_beat_f
            if value >= thr and not is_t:
                beats.append(_locate(state, p_i - env_delay))
                if 0 < elapsed < 3 * fs:
                    state.rr_mean_s = 0.875 * state.rr_mean_s + 0.125 * elapsed / fs
                state.last_beat_i = p_i
                state.last_beat_f = value
                state.signal_level = 0.875 * state.signal_level + 0.125 * value
            else:
                state.noise_level = 0.875 * state.noise_level + 0.125 * value
        state.next_cand_i = decide_to
    # Keep what the next decisions may look back at.
    keep_from = max(0, min(state.next_cand_i - sup - 2 * win - 2, end_i) - state.buf_start_i)
    if keep_from > 0:
        bad_gone = state.buf_bad[:keep_from]
        rows_bad = np.flatnonzero(bad_gone.any(axis=1))
        if rows_bad.size:
            for lead in range(state.n_leads):
                hit = np.flatnonzero(bad_gone[:, lead])
                if hit.size:
                    state.last_bad_i[lead] = max(
                        state.last_bad_i[lead], state.buf_start_i + int(hit[-1])
                    )
        state.buf_y = state.buf_y[keep_from:]
        state.buf_env = state.buf_env[keep_from:]
        state.buf_bad = state.buf_bad[keep_from:]
        state.buf_scale = state.buf_scale[keep_from:]
        state.buf_weight = state.buf_weight[keep_from:]
        state.buf_start_i += keep_from
    return np.asarray(beats, dtype=np.int64)


def _locate(state: DetectorState, centre_i: int) -> int:
    """R peak in input coordinates: the largest weighted band-passed deflection near it."""
    fs = state.internal_fs_hz
    half = max(1, round(0.05 * fs))
    lo = max(state.buf_start_i, centre_i - half)
    hi = min(state.n_internal, centre_i + half + 1)
    if hi <= lo:
        best = centre_i
    else:
        rows = slice(lo - state.buf_start_i, hi - state.buf_start_i)
        mag = np.abs(state.buf_y[rows]) / state.buf_scale[rows]
        w = np.where(state.buf_bad[rows], 0.0, state.buf_weight[rows])
        score = (mag * np.maximum(w, 1e-6)).sum(axis=1)
        best = lo + int(np.argmax(score))
    # The band-pass delays the deflection by a few samples; map to the block centre.
    best -= max(0, round(0.01 * fs))
    out = best * state.factor + state.factor // 2
    return int(min(max(out, 0), max(state.n_input - 1, 0)))


def detect_qrs(
    signal_mv: npt.ArrayLike, fs_hz: float, config: DetectorConfig = DetectorConfig()
) -> IntArray:
    """Detect QRS complexes in a recorded ECG.

    Parameters
    ----------
    signal_mv : array_like
        ``(n_samples, n_leads)`` samples in mV; 1-D input is one lead. NaN samples mark
        where a lead is not usable.
    fs_hz : float
        Sampling rate in Hz (100–2000).
    config : DetectorConfig
        Detector settings.

    Returns
    -------
    ndarray of int64
        R-peak sample indices, sorted, in input coordinates.
    """
    x = _as_2d(signal_mv, None)
    state = detector_start(x.shape[1], fs_hz, config)
    beats, state = detector_step(x, state)
    return np.concatenate([beats, detector_flush(state)])
