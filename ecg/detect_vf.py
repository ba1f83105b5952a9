"""Causal detection of ventricular fibrillation and flutter (VF/VFL) for the QRS detector.

Design notes
------------
- **Why.** The waves of VF and VFL are not beats (annotators mark the rhythm, not each
  wave), yet a QRS detector fires on each of them: 3–6 waves a second of false beats
  and a heart rate that hides a shockable rhythm. A monitor calls the rhythm instead,
  so the detector suppresses its candidates while this module says VF/VFL.
- **Measure: VF filter leakage** (Kuo & Dillman 1978, as defined in Amann et al. 2005).
  Over a trailing window, the mean half period is estimated from the signal as
  ``N = round(pi * sum|x| / sum|x[i] - x[i-1]|)`` (exact for a sinusoid), and the
  leakage is ``sum|x[i] + x[i-N]| / sum(|x[i]| + |x[i-N]|)``: a sinusoid shifted by half
  its period cancels (leakage near 0), a train of QRS complexes separated by flat
  baseline does not (0.6–0.9 on MIT-BIH). Broadband muscle noise leaks as much as
  beats do, so it does not look like VF. Each lead is measured on its own; a lead whose
  mean frequency lies outside ``VF_BAND_HZ`` (2–10 Hz, the range of VF and VFL), or
  that was unusable (NaN, flat) within the window, counts as leakage 1. The rhythm's
  leakage is the mean over the leads.
- **Hysteresis.** VF/VFL starts when the leakage falls below ``enter_leakage`` and ends
  when it rises above ``exit_leakage``. Measured on MIT-BIH (3 s windows, 0.5 s hop,
  mean of two leads): within the VFL of record 207 the leakage is below 0.4 in half
  of the windows and below 0.5 in four of five; outside VF/VFL its lowest value is
  0.44 (record 205's ventricular tachycardia at 180/min), 0.48 elsewhere (217, 203).
  ``enter_leakage`` 0.4 keeps fast, regular wide-complex VT — whose beats are beats —
  out, with a margin. ``exit_leakage`` 0.7: within VF/VFL the leakage wobbles up to
  0.6–0.69 (a polymorphic stretch of 207), which ended episodes in the middle of the
  flutter at 0.55; returning beats still end an episode within a hop or two, since
  their windows are screened out by their fill (leakage 1). On the 48 records 0.7
  removed 25 false beats in 207 and changed nothing elsewhere (0.65–0.9 alike).
- **Window.** ``window_s`` 2 s with a hop of 0.25 s: the measure needs the window to
  be mostly VF before the leakage falls, so the window's length is the delay before
  flutter waves stop being counted as beats. 2 s instead of 3 s took 20 false beats
  off 207's VFL onsets; 1.5 s is too noisy (more false beats again), 2–2.5 s alike.
- **Screen.** A window whose fill (``mean|x| / max|x|``) is below ``FILL_MIN`` is
  not VF: beats separated by baseline fill a window to 0.1–0.25, VF/VFL to 0.2–0.6.
  Only the rest have their leakage computed, which is most of the cost.
- **Cheap.** The measure runs at ``VF_RATE_HZ`` (the detector's internal signal
  averaged again in blocks of two or so, then band-passed 1–20 Hz causally), once per
  ``hop_s`` over a window of ``window_s``; window sums and maxima come from hop-long
  blocks. The per-window work is one compiled kernel
  (:func:`ecg._detect_vf_kernels.vf_leakage`, numpy's summation order kept so that its
  values are those of the numpy form); the measure costs about a sixth of the
  detector's time on MIT-BIH.
- **Streaming equals batch.** Hops are aligned on absolute sample indices at the VF
  rate and the filter carries its state, so the episodes do not depend on chunking.
  A decision at hop ``k`` uses samples up to the end of that hop only: causal. The
  QRS detector asks :func:`vf_active_at` for the state at the time it decides a
  candidate, which is a fixed time after the candidate, so it too is chunk-independent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from ecg._detect_kernels import sos_filter
from ecg._detect_vf_kernels import vf_average, vf_leakage
from ecg.errors import ConfigError
from ecg.filters import sosfilt_rows_zi

__all__ = ["VF_BAND_HZ", "VF_RATE_HZ", "VfConfig", "VfState", "vf_active_at", "vf_start", "vf_step"]

# Rate at which the VF measure runs, in Hz (approximately: an integer fraction of the
# detector's internal rate).
VF_RATE_HZ = 60.0
# Mean frequencies (Hz) that VF or VFL can have; a lead outside counts as not VF.
VF_BAND_HZ = (2.0, 10.0)
# Mean fill of a window (mean|x| / max|x|, mean over leads) below which it is not VF.
FILL_MIN = 0.2

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class VfConfig:
    """Validated settings of the VF/VFL detector.

    Parameters
    ----------
    enabled : bool
        Whether VF/VFL is detected at all (and QRS candidates suppressed during it).
    window_s : float
        Length of the trailing window of each measurement, in s.
    hop_s : float
        Time between measurements, in s.
    enter_leakage : float
        VF/VFL starts when the mean VF-filter leakage falls below this.
    exit_leakage : float
        VF/VFL ends when the mean VF-filter leakage rises above this.
    """

    enabled: bool = True
    window_s: float = 2.0
    hop_s: float = 0.25
    enter_leakage: float = 0.4
    exit_leakage: float = 0.7

    def __post_init__(self) -> None:
        for name in ("window_s", "hop_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive finite number, got {value!r}")
        if self.hop_s > self.window_s:
            raise ConfigError(f"hop_s must be <= window_s, got {self.hop_s} > {self.window_s}")
        if not 0.0 < self.enter_leakage <= self.exit_leakage < 1.0:
            raise ConfigError(
                "0 < 'enter_leakage' <= 'exit_leakage' < 1 must be True, got "
                f"{self.enter_leakage}, {self.exit_leakage}"
            )


@dataclass(slots=True)
class VfState:
    """What the VF/VFL detector carries between chunks.

    ``episodes`` holds ``[onset_i, offset_i]`` pairs in the *caller's* sample indices
    (the detector's internal rate); the last one's offset is ``None`` while it lasts.
    A pair starts at the end of the hop whose window first measured VF/VFL and ends at
    the end of the hop whose window no longer did.
    """

    config: VfConfig
    factor: int
    rate_hz: float
    sos: FloatArray
    window_n: int
    hop_n: int
    min_half_n: int
    max_half_n: int
    pending: FloatArray
    pending_bad: BoolArray
    tail: FloatArray
    tail_bad: BoolArray
    zi: FloatArray | None = None
    n_in: int = 0
    n_vf: int = 0
    active: bool = False
    episodes: list[list[int | None]] = field(default_factory=list)


def vf_start(n_leads: int, fs_hz: float, config: VfConfig = VfConfig()) -> VfState:
    """Initial state for ``n_leads`` leads at ``fs_hz`` Hz (the detector's internal rate)."""
    factor = max(1, round(fs_hz / VF_RATE_HZ))
    rate = fs_hz / factor
    sos = np.ascontiguousarray(
        sps.butter(2, [1.0, min(20.0, 0.4 * rate)], btype="bandpass", fs=rate, output="sos"),
        dtype=np.float64,
    )
    hop_n = max(1, round(config.hop_s * rate))
    # A whole number of hops, so that window statistics are sums of block statistics.
    window_n = max(1, round(config.window_s / config.hop_s)) * hop_n
    return VfState(
        config=config,
        factor=factor,
        rate_hz=rate,
        sos=sos,
        window_n=window_n,
        hop_n=hop_n,
        # Half periods (samples) of the fastest and slowest VF.
        min_half_n=max(1, math.floor(rate / (2 * VF_BAND_HZ[1]))),
        max_half_n=math.ceil(rate / (2 * VF_BAND_HZ[0])),
        pending=np.zeros((n_leads, 0)),
        pending_bad=np.zeros((n_leads, 0), bool),
        tail=np.zeros((n_leads, 0)),
        tail_bad=np.zeros((n_leads, 0), bool),
    )


def vf_step(d: FloatArray, bad: BoolArray, state: VfState) -> VfState:
    """Feed ``(n_leads, n)`` samples (NaN-free) and their unusable mask; update episodes."""
    state.n_in += d.shape[1]
    if not state.config.enabled:
        return state
    v, vb, state.pending, state.pending_bad = vf_average(
        state.pending, state.pending_bad, d, bad, state.factor
    )
    if v.shape[1] == 0:
        return state
    if state.zi is None:
        state.zi = sosfilt_rows_zi(state.sos, v[:, 0])
    y = sos_filter(v, state.sos, state.zi)
    start = state.n_vf - state.tail.shape[1]
    buf = np.concatenate([state.tail, y], axis=1)
    buf_bad = np.concatenate([state.tail_bad, vb], axis=1)
    state.n_vf += y.shape[1]
    w, hop = state.window_n, state.hop_n
    # Hop ends (exclusive, absolute VF-rate indices) that this chunk completes.
    first = ((state.n_vf - y.shape[1]) // hop + 1) * hop
    ends = np.arange(max(first, -(-w // hop) * hop), state.n_vf + 1, hop)
    if ends.shape[0]:
        leak = vf_leakage(
            buf,
            buf_bad,
            ends - start,
            w,
            hop,
            state.min_half_n,
            state.max_half_n,
            FILL_MIN,
        )
        # Most of the time nothing is near VF: skip the per-hop loop.
        if state.active or leak.min() < state.config.enter_leakage:
            for end, value in zip(ends.tolist(), leak.tolist(), strict=True):
                _update(state, end, value)
    # Keep whole blocks: the window and max_half_n samples before the last block
    # boundary, and what follows.
    keep = min(w + -(-state.max_half_n // hop) * hop + state.n_vf % hop, buf.shape[1])
    state.tail = buf[:, buf.shape[1] - keep :].copy()
    state.tail_bad = buf_bad[:, buf.shape[1] - keep :].copy()
    return state


def _update(state: VfState, end: int, leakage: float) -> None:
    """One hysteresis step at hop end ``end`` (VF-rate index)."""
    cfg = state.config
    at = end * state.factor
    if not state.active and leakage < cfg.enter_leakage:
        state.active = True
        state.episodes.append([at, None])
    elif state.active and leakage > cfg.exit_leakage:
        state.active = False
        state.episodes[-1][1] = at


def vf_active_at(state: VfState, i: int) -> bool:
    """Whether VF/VFL was on at caller index ``i`` (as known once the stream reached it).

    ``i`` must not be beyond the samples fed so far; episodes are searched from the end
    because candidates are asked about in order, close to the present.
    """
    for onset, offset in reversed(state.episodes):
        assert onset is not None
        if offset is not None and offset <= i:
            return False
        if onset <= i:
            return True
    return False
