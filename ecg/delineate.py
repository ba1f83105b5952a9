"""Wave delineation: P, QRS and T boundaries per beat and lead, and global fiducials.

Design notes
------------
- **Pure and windowed.** :func:`delineate` takes a window of signal (a whole 10 s
  record, or a window of a live stream) and the detector's beats in it, and returns a
  :class:`Delineation`. It keeps no state between calls, so the live path gets what
  the batch path gets for the same window; it never changes the detector's beats.
- **Signals.** Each lead is filtered zero-phase (no phase shift, so boundaries do not
  move): 0.5–40 Hz with the mains notch for the QRS (``lp``), that low-passed again
  at ``smooth_hz`` (15 Hz) for P and T, whose boundaries are slow (``sm``), and the
  diagnostic band 0.05–150 Hz for amplitudes (``wide``). Missing samples stay
  missing: a beat whose span holds NaN in a lead is not delineated in that lead.
- **QRS: slope thresholds** (after the wavelet delineators of Martínez et al. 2004,
  with the derivative of the 40 Hz low-passed signal in place of the wavelet at
  scale 2^2). The lead's peak is its largest deflection within ±50 ms of the beat; the
  QRS is the run of samples whose slope exceeds ``qrs_sig`` of the largest slope
  near the peak, joined across gaps up to ``qrs_gap_s``; onset and offset are where,
  walking outwards from that run, the slope falls below ``qrs_on`` / ``qrs_off`` of
  it (or below a noise floor, three times the lead's median slope).
- **P and T: area (trapezium) indicator** (Zhang et al. 2006 for the T end; the same
  principle for the other boundaries of the slow waves). For a wave whose peak is at
  ``tp``, the end is the ``t`` after ``tp`` that maximises ``A(t) = Σ_{k=t-w}^{t}
  (s[k] − s[t])``·sign(wave): the corner where the wave's tail meets the baseline.
  It needs no threshold and no derivative, so it is robust to noise and to flat,
  slow tails, where tangent and slope methods scatter. The onset is the mirror image.
  The T peak is the largest extremum after the QRS within the longest plausible QT
  for the RR (``qt_max_s``·√RR); the P peak the largest extremum between the previous
  T and the QRS, after removing the straight line between the ends of its window.
- **QRS centres.** Detectors mark a wide complex (paced, bundle-branch block) anywhere
  in it, sometimes near its end; each beat is delineated around the peak of its
  spatial velocity smoothed over 40 ms (the centre of the QRS's energy) when that is
  more than ``centre_keep_s`` from the mark. The detector's beats are not changed.
- **Median beats.** Beats of the dominant morphology (QRS correlation with the first
  median ≥ ``template_corr``) are aligned on their R peaks and their median taken per
  lead: the template, far less noisy than any beat. Each template is delineated with
  the same functions. A beat is then delineated with its windows guided by the
  template (P searched near the template's P, T of the template's polarity), so
  single-beat noise does not throw a boundary far away.
- **Atrial activity.** P is present in a lead when the template's P stands out
  (``p_min_mv`` and ``p_snr`` times the lead's high-frequency noise); a beat has its P
  when its P window correlates with the template's (``p_corr``) at the template's
  polarity: a P that is present and related to its QRS. In atrial fibrillation the
  median beat has no P (the fibrillatory waves are not locked to the QRS), so P
  measurements are absent with the reason ``no_p_wave``.
- **Global fiducials** from the templates. The QRS onset and offset are those of the
  spatial velocity of the median beats (root of the leads' summed squared slopes,
  with the QRS slope thresholds above), each beat's those of its own spatial
  velocity; every lead's per-beat QRS boundaries are the beat's (a lead's own
  boundaries are kept in its template's fiducials only). P onset is the earliest lead
  onset that ``agree_leads`` leads confirm within ``agree_ms`` and P offset the latest
  such offset, over the leads where P is clearest, and T end the latest confirmed over
  the leads where T is clearest (amplitude at least ``t_clear_fraction`` of the
  largest), as 12-lead programs do. Per-beat P and T use the same rule over each
  beat's leads.
- Fiducials are sample indices (record coordinates for beats, template coordinates
  for templates) with :data:`MISSING` (-1) where absent.
- **Speed.** The wave finders (QRS bounds, the P and T searches with their extrema,
  Zhang's area corners and chords, the P correlation, the baselines, the median
  beats, the slopes, the second difference the pacing spikes are found on, the noise
  medians) are compiled kernels (:mod:`ecg._delineate_kernels`) that give the numpy
  forms' fiducials (bit for bit; the P correlation within a few ulp): called a few
  hundred times per 10 s record on short segments, numpy's per-call overhead was
  most of the time. The smoothing low-pass is designed once per rate.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import signal as sps

from ecg import _delineate_kernels as _kernels
from ecg.errors import ConfigError, SignalError
from ecg.filters import FilterMode, filter_zero_phase, sosfiltfilt_columns

__all__ = [
    "FIDUCIALS",
    "MISSING",
    "Absent",
    "AbsentReason",
    "BeatFiducials",
    "DelineateConfig",
    "Delineation",
    "Fiducials",
    "GlobalFiducials",
    "LeadFiducials",
    "LeadTemplate",
    "delineate",
]

MISSING = -1
#: Column order of the per-beat fiducial arrays.
FIDUCIALS = (
    "p_on",
    "p_peak",
    "p_off",
    "qrs_on",
    "qrs_peak",
    "qrs_off",
    "t_on",
    "t_peak",
    "t_off",
)
_COL = {name: i for i, name in enumerate(FIDUCIALS)}

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


class AbsentReason(enum.StrEnum):
    """Why a measurement or fiducial is absent: stable codes (the JSON carries them)."""

    #: Fewer beats than a measurement needs.
    TOO_FEW_BEATS = "too_few_beats"
    #: A lead the measurement needs is not in the record.
    LEAD_MISSING = "lead_missing"
    #: The lead is in the record but unusable: NaN, flat (lead off) or clipped.
    LEAD_UNUSABLE = "lead_unusable"
    #: No P wave related to the QRS (atrial fibrillation or flutter, junctional rhythm).
    NO_P_WAVE = "no_p_wave"
    #: The wave's boundaries could not be found (too noisy, too small, merged).
    NOT_DELINEATED = "not_delineated"
    #: Paced beats: the intervals of a paced complex are not those of the heart.
    PACED = "paced"
    #: The net area has no direction (the wave is isoelectric in the frontal leads).
    INDETERMINATE = "indeterminate"


@dataclass(frozen=True, slots=True)
class Absent:
    """A measurement that could not be made.

    Attributes
    ----------
    reason : AbsentReason
        Stable code.
    detail : str
        A sentence for the reader ("lead V5 missing").
    """

    reason: AbsentReason
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DelineateConfig:
    """Settings of :func:`delineate` (times in s, amplitudes in mV).

    Parameters
    ----------
    mains_hz : float or None
        Mains frequency notched before delineation, Hz (None: no notch).
    pre_s, post_s : float
        Span of a median beat before and after its R peak, s.
    template_corr : float
        Beats whose QRS correlates less than this with the median take no part in it.
    smooth_hz : float
        Low-pass of the P and T signal, Hz.
    qrs_sig, qrs_on, qrs_off : float
        Slope fractions (of the largest QRS slope) for the QRS run, its onset, offset.
    qrs_gap_s : float
        Gaps of low slope within a QRS bridged up to this, s.
    qrs_floor : float
        The boundary slope is at least this many times the lead's median slope.
    r_fraction : float
        A lead's QRS peak is its R wave unless the R is under this fraction of the
        largest deflection (then the S or QS nadir).
    qrs_hold_s : float
        The slope must stay below the boundary threshold this long (so that a turning
        point inside the QRS, where the slope passes through zero, is not its end), s.
    qrs_search_s : float
        How far from the peak the QRS boundaries are searched, s.
    qt_max_s : float
        Longest QT searched is ``qt_max_s * sqrt(RR_s)`` (and at most 85 % of RR).
    t_window_s, p_window_s : float
        Width of the area indicator for the T end and the P boundaries, s.
    p_search_s : float
        P searched up to this before QRS onset, s.
    p_guard_s : float
        No P peak in the last ``p_guard_s`` before QRS onset, and the P baseline ends
        there, s.
    p_lag_s : float
        A beat's P window is matched to the template's within this lag, s.
    p_min_mv, p_snr : float
        A template P must reach ``p_min_mv`` and ``p_snr`` times the noise.
    p_corr : float
        A beat's P window must correlate this much with the template's.
    p_beats_fraction : float
        P is absent unless this fraction of the dominant beats has its P.
    t_min_mv : float
        Smaller T waves are not delineated (flat T).
    t_near_s, p_near_s : float
        A lead's T (P) peak is searched this close to where the lead with the largest
        T (P) puts it, s.
    agree_leads : int
        Leads that must agree for a global fiducial.
    agree_ms : float
        Within this, ms.
    t_clear_fraction : float
        Leads with T (P) at least this fraction of the largest give the global T (P)
        boundaries.
    spike_mv, spike_ratio : float
        A pacing spike's second difference exceeds ``spike_mv`` (mV) and
        ``spike_ratio`` times the record's 99th percentile.
    share_boundaries : bool
        Leads where P or T is smaller take the beat's global boundaries of that wave.
    centre_search_s, centre_smooth_s, centre_keep_s : float
        A beat is delineated around its QRS centre: the peak of the spatial velocity
        smoothed over ``centre_smooth_s``, searched ``centre_search_s`` either side of
        the detector's mark (0: the mark itself), used when more than
        ``centre_keep_s`` from the mark, s.
    """

    mains_hz: float | None = 50.0
    pre_s: float = 0.45
    post_s: float = 0.75
    template_corr: float = 0.85
    smooth_hz: float = 15.0
    qrs_sig: float = 0.2
    qrs_on: float = 0.05
    qrs_off: float = 0.08
    qrs_gap_s: float = 0.03
    qrs_floor: float = 3.0
    qrs_hold_s: float = 0.002
    r_fraction: float = 0.3
    qrs_search_s: float = 0.2
    qt_max_s: float = 0.55
    t_window_s: float = 0.12
    p_window_s: float = 0.06
    p_search_s: float = 0.3
    p_guard_s: float = 0.04
    p_lag_s: float = 0.01
    p_min_mv: float = 0.02
    p_snr: float = 3.0
    p_corr: float = 0.5
    p_beats_fraction: float = 0.7
    t_min_mv: float = 0.03
    t_near_s: float = 0.1
    p_near_s: float = 0.06
    agree_leads: int = 2
    agree_ms: float = 12.0
    t_clear_fraction: float = 0.4
    spike_mv: float = 0.3
    spike_ratio: float = 6.0
    share_boundaries: bool = True
    centre_search_s: float = 0.15
    centre_smooth_s: float = 0.04
    centre_keep_s: float = 0.04

    def __post_init__(self) -> None:
        for name in (
            "pre_s",
            "post_s",
            "smooth_hz",
            "qrs_gap_s",
            "qrs_search_s",
            "qrs_hold_s",
            "qt_max_s",
            "t_window_s",
            "p_window_s",
            "p_search_s",
            "p_guard_s",
            "agree_ms",
            "t_near_s",
            "p_near_s",
            "centre_smooth_s",
            "centre_keep_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be > 0, got {value!r}")
        for name in (
            "template_corr",
            "qrs_sig",
            "qrs_on",
            "qrs_off",
            "p_corr",
            "p_beats_fraction",
            "r_fraction",
            "t_clear_fraction",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= 1):
                raise ConfigError(f"{name} must be within 0-1, got {value!r}")
        for name in ("centre_search_s", "p_lag_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be >= 0, got {value!r}")
        if self.agree_leads < 1:
            raise ConfigError(f"agree_leads must be >= 1, got {self.agree_leads!r}")


@dataclass(frozen=True, slots=True)
class Fiducials:
    """One set of fiducials (sample indices, :data:`MISSING` where absent)."""

    p_on: int = MISSING
    p_peak: int = MISSING
    p_off: int = MISSING
    qrs_on: int = MISSING
    qrs_peak: int = MISSING
    qrs_off: int = MISSING
    t_on: int = MISSING
    t_peak: int = MISSING
    t_off: int = MISSING

    def as_array(self) -> IntArray:
        """The nine values in :data:`FIDUCIALS` order."""
        return np.array([getattr(self, n) for n in FIDUCIALS], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class LeadFiducials:
    """Per-beat fiducials of one lead, record samples.

    Attributes
    ----------
    lead : str
    points : ndarray of int64, shape (n_beats, 9)
        Columns in :data:`FIDUCIALS` order; :data:`MISSING` where absent.
    """

    lead: str
    points: IntArray

    def column(self, name: str) -> IntArray:
        """One fiducial for every beat (e.g. ``"qrs_on"``)."""
        return self.points[:, _COL[name]]


@dataclass(frozen=True, eq=False)
class BeatFiducials:
    """Per-beat fiducials over all leads (the agreement rule per beat).

    Attributes
    ----------
    points : ndarray of int64, shape (n_beats, 9)
        Record samples, :data:`FIDUCIALS` order, :data:`MISSING` where absent.
    p_present : ndarray of bool, shape (n_beats,)
        The beat has a P wave related to its QRS (in at least ``agree_leads`` leads,
        or every lead with a P where fewer).
    pr_ms : ndarray of float64, shape (n_beats,)
        P onset to QRS onset of the beat, ms; NaN without P.
    in_template : ndarray of bool, shape (n_beats,)
        The beat took part in the median beats (dominant morphology).
    """

    points: IntArray
    p_present: NDArray[np.bool_]
    pr_ms: FloatArray
    in_template: NDArray[np.bool_]

    def column(self, name: str) -> IntArray:
        """One fiducial for every beat (e.g. ``"qrs_on"``)."""
        return self.points[:, _COL[name]]


@dataclass(frozen=True, eq=False)
class LeadTemplate:
    """The median beat of one lead and its fiducials (template coordinates).

    Attributes
    ----------
    lead : str
    usable : bool
        False when the lead has no median beat (missing, flat, too few clean beats).
    absent : Absent or None
        Why the lead is not usable.
    wide_mv : ndarray of float64
        Median beat on the diagnostic band (0.05–150 Hz), mV; R at ``r_index``.
    lp_mv : ndarray of float64
        Median beat on 0.5–40 Hz, mV.
    iso_mv : float
        Isoelectric level (mean of ``wide_mv`` over the 20 ms before QRS onset), mV.
    fiducials : Fiducials
        Template coordinates.
    absent_p : Absent or None
        Set when the lead has no P wave.
    """

    lead: str
    usable: bool
    absent: Absent | None
    wide_mv: FloatArray
    lp_mv: FloatArray
    iso_mv: float
    fiducials: Fiducials
    absent_p: Absent | None


@dataclass(frozen=True, slots=True)
class GlobalFiducials:
    """Fiducials over all leads, template coordinates (R at ``Delineation.r_index``)."""

    p_on: int
    p_off: int
    qrs_on: int
    qrs_off: int
    t_peak: int
    t_off: int
    absent_p: Absent | None
    absent_qrs: Absent | None
    absent_t: Absent | None


@dataclass(frozen=True, eq=False)
class Delineation:
    """Everything :func:`delineate` found in a window.

    Attributes
    ----------
    fs_hz : float
    lead_names : tuple of str
    beats : ndarray of int64
        The detector's beats (R peaks), as given.
    rr_ms : float or None
        Median RR interval, ms (None with fewer than two beats).
    r_index : int
        Index of the R peak in every template.
    templates : tuple of LeadTemplate
        One per lead, in lead order.
    global_ : GlobalFiducials
    per_lead : tuple of LeadFiducials
        One per lead, in lead order.
    beat_fiducials : BeatFiducials
    pacing_spikes : ndarray of int64
        Samples of the pacing spikes found (blanked before delineation).
    """

    fs_hz: float
    lead_names: tuple[str, ...]
    beats: IntArray
    rr_ms: float | None
    r_index: int
    templates: tuple[LeadTemplate, ...]
    global_: GlobalFiducials
    per_lead: tuple[LeadFiducials, ...]
    beat_fiducials: BeatFiducials
    pacing_spikes: IntArray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))


# ---------------------------------------------------------------- wave finders


@dataclass(frozen=True, slots=True)
class _Lead:
    """One lead's signals for delineation (NaN-free copies and the NaN mask)."""

    lp: FloatArray
    sm: FloatArray
    wide: FloatArray
    slope: FloatArray  # |d lp / dt|, mV per sample
    noise_slope: float
    noise_mv: float
    finite: NDArray[np.bool_]


def _lead_peak(lp: FloatArray, r: int, lo: int, hi: int, fs: float, r_fraction: float) -> int:
    """The lead's R wave within ±50 ms of the beat ``r`` (in [lo, hi)): its highest
    point above the local baseline, unless that is under ``r_fraction`` of the largest
    deflection (a QS or rS complex), then the deepest point."""
    w = max(1, round(0.05 * fs))
    a, b = max(lo, r - w), min(hi, r + w + 1)
    if b - a < 3:
        return MISSING
    y = lp[a:b] - 0.5 * (lp[a] + lp[b - 1])
    up, down = int(np.argmax(y)), int(np.argmin(y))
    if y[up] >= r_fraction * max(y[up], -y[down]):
        return a + up
    return a + down


def _qrs_peak_between(y: FloatArray, on: int, off: int, r_fraction: float) -> int:
    """The lead's R wave between the QRS onset and offset (the line between them as
    baseline), or the deepest point when R is under ``r_fraction`` of the largest."""
    return int(_kernels.peak_between(y, on, off, r_fraction))


def _qrs_bounds(
    slope: FloatArray, pk: int, lo: int, hi: int, fs: float, cfg: DelineateConfig, noise: float
) -> tuple[int, int]:
    """(onset, offset) of the QRS around ``pk`` from a slope signal, within [lo, hi):
    the earliest (latest) significant slope connected to the peak, then outwards to
    flat (:func:`ecg._delineate_kernels.qrs_bounds`)."""
    on, off = _kernels.qrs_bounds(
        slope,
        pk,
        lo,
        hi,
        max(1, round(0.06 * fs)),
        max(2, round(cfg.qrs_search_s * fs)),
        max(1, round(cfg.qrs_gap_s * fs)),
        max(1, round(cfg.qrs_hold_s * fs)),
        cfg.qrs_sig,
        cfg.qrs_on,
        cfg.qrs_off,
        cfg.qrs_floor * noise,
    )
    return int(on), int(off)


def _qrs(
    lead: _Lead, r: int, lo: int, hi: int, fs: float, cfg: DelineateConfig
) -> tuple[int, int, int]:
    """(onset, peak, offset) of the QRS near ``r`` within [lo, hi), from one lead."""
    pk = _lead_peak(lead.wide, r, lo, hi, fs, cfg.r_fraction)
    on, off = _qrs_bounds(lead.slope, pk, lo, hi, fs, cfg, lead.noise_slope)
    return on, pk, off


@dataclass(frozen=True, slots=True)
class _Windows:
    """The wave finders' windows in samples, rounded once per delineation (the beat
    loop would round them again for every beat and lead)."""

    qrs_guess: int  # 60 ms: a QRS half-width where its offset is not known
    t_gap: int  # 40 ms from the QRS offset to the T search
    t_near: int
    t_window: int
    p_search: int
    p_guard: int
    p_near: int
    p_window: int
    p_iso: int  # 20 ms: the P window's margins

    @classmethod
    def of(cls, fs: float, cfg: DelineateConfig) -> _Windows:
        """The windows of ``cfg`` at ``fs`` Hz."""
        return cls(
            qrs_guess=round(0.06 * fs),
            t_gap=round(0.04 * fs),
            t_near=round(cfg.t_near_s * fs),
            t_window=max(2, round(cfg.t_window_s * fs)),
            p_search=round(cfg.p_search_s * fs),
            p_guard=round(cfg.p_guard_s * fs),
            p_near=round(cfg.p_near_s * fs),
            p_window=max(2, round(cfg.p_window_s * fs)),
            p_iso=round(0.02 * fs),
        )


def _t_wave(
    lead: _Lead,
    pk: int,
    qrs_off: int,
    iso: float,
    hi: int,
    fs: float,
    rr_s: float,
    cfg: DelineateConfig,
    win: _Windows,
    sign: int = 0,
    near: int = MISSING,
) -> tuple[int, int, int]:
    """(onset, peak, end) of the T wave after the QRS peak ``pk``.

    ``near``: where the T peak is expected (from the leads where T is clearest); the
    peak is then searched within ``t_near_s`` of it.
    """
    start = (qrs_off if qrs_off != MISSING else pk + win.qrs_guess) + win.t_gap
    span_s = min(cfg.qt_max_s * math.sqrt(rr_s) + 0.05, 0.85 * rr_s)
    on, peak, end = _kernels.t_wave(
        lead.sm,
        start,
        min(hi, pk + round(span_s * fs)),
        win.qrs_guess,
        near,
        win.t_near,
        iso,
        sign,
        cfg.t_min_mv,
        win.t_window,
        qrs_off if qrs_off != MISSING else start,
    )
    return int(on), int(peak), int(end)


def _p_wave(
    lead: _Lead,
    qrs_on: int,
    lo: int,
    win: _Windows,
    near: int = MISSING,
    sign: int = 0,
) -> tuple[int, int, int, float]:
    """(onset, peak, offset, signed amplitude) of the P wave before ``qrs_on``.

    A P peak sits at least half a P wave and the PR segment before the QRS (48 ms or
    more for 99.5 % of the P waves cardiologists marked on LUDB): no peak in the last
    ``p_guard_s``. The baseline is the line from the window's start to that point, not
    to the QRS onset, where the 15 Hz low-pass has already spread the QRS: that tilted
    the line and made a P of the ramp into the QRS
    (:func:`ecg._delineate_kernels.p_wave`).
    """
    on, pk, off, amp = _kernels.p_wave(
        lead.sm,
        qrs_on,
        lo,
        win.p_search,
        win.qrs_guess,
        win.p_guard,
        near,
        win.p_near,
        sign,
        win.p_window,
        win.p_iso,
    )
    return int(on), int(pk), int(off), float(amp)


# ---------------------------------------------------------------- leads and templates


def _pacing_spikes(signal: FloatArray, fs: float, cfg: DelineateConfig) -> IntArray:
    """Samples of pacing spikes: narrow (<= 4 ms) bursts of second difference far above
    anything the heart makes (``spike_mv`` and ``spike_ratio`` times the record's 99th
    percentile), over all leads. None below 250 Hz, where a 0.5-2 ms spike is
    averaged away."""
    n = signal.shape[0]
    if fs < 250.0 or n < 8:
        return np.zeros(0, dtype=np.int64)
    d2 = _kernels.second_difference_peak(signal)
    thr = max(cfg.spike_mv, cfg.spike_ratio * float(np.percentile(d2, 99.0)))
    hits = np.flatnonzero(d2 > thr) + 1
    if hits.size == 0:
        return hits.astype(np.int64)
    width = max(1, round(0.004 * fs))
    breaks = np.flatnonzero(np.diff(hits) > width) + 1
    events = np.split(hits, breaks)
    return np.asarray(
        [int(e[np.argmax(d2[e - 1])]) for e in events if e[-1] - e[0] <= width],
        dtype=np.int64,
    )


def _blank(signal: FloatArray, spikes: IntArray, fs: float) -> FloatArray:
    """The signal with each spike replaced by a straight line (4 ms before, 8 ms after),
    so that the filters do not smear it into the QRS."""
    if spikes.size == 0:
        return signal
    out = signal.copy()
    n = signal.shape[0]
    before, after = max(1, round(0.004 * fs)), max(2, round(0.008 * fs))
    for k in spikes.tolist():
        a, b = max(0, k - before), min(n - 1, k + after)
        if b - a < 2:
            continue
        ramp = np.linspace(0.0, 1.0, b - a + 1)[:, None]
        out[a : b + 1] = out[a] * (1.0 - ramp) + out[b] * ramp
    return out


@functools.lru_cache(maxsize=16)
def _lowpass_design(cutoff_hz: float, fs_hz: float) -> FloatArray:
    """The smoothing low-pass (second-order Butterworth sections), designed once per
    cut-off and rate: a design costs about as much as a lead's delineation. Read-only;
    scipy's filters get a copy."""
    sos = np.asarray(sps.butter(2, cutoff_hz, fs=fs_hz, output="sos"), dtype=np.float64)
    sos.flags.writeable = False
    return sos


def _prepare(signal: FloatArray, fs: float, cfg: DelineateConfig) -> list[_Lead]:
    finite = np.isfinite(signal)
    n = signal.shape[0]
    all_finite = n > 0 and bool(finite.all())
    # Lead-major, as the filters write them: each lead's arrays are contiguous rows
    # (views) of these; the slope and the residual are elementwise, the same values in
    # either layout.
    lp_rows, wide_rows = (
        filter_zero_phase(signal, fs, mode, cfg.mains_hz, lead_major=True)
        for mode in (FilterMode.MONITORING, FilterMode.DIAGNOSTIC)
    )
    if not all_finite:
        lp_rows, wide_rows = (np.where(finite.T, rows, 0.0) for rows in (lp_rows, wide_rows))
    sos = _lowpass_design(min(cfg.smooth_hz, 0.4 * fs), fs).copy()
    sm_rows = sosfiltfilt_columns(sos, lp_rows.T, lead_major=True) if n > 15 else lp_rows.copy()
    slope_rows = _kernels.abs_gradient_rows(lp_rows) if n > 1 else np.zeros_like(lp_rows)
    resid_rows = np.abs(lp_rows - sm_rows)
    if all_finite:  # every lead's medians at once (numpy's values, by radix selection)
        slope_medians = _kernels.row_medians(slope_rows)
        resid_medians = _kernels.row_medians(resid_rows)
    leads = []
    for j in range(signal.shape[1]):
        ok = finite[:, j]
        if all_finite:
            noise_slope = float(slope_medians[j])
            noise_mv = float(1.4826 * resid_medians[j])
        else:
            noise_slope = float(np.median(slope_rows[j][ok])) if ok.any() else 0.0
            noise_mv = float(1.4826 * np.median(resid_rows[j][ok])) if ok.any() else 0.0
        leads.append(
            _Lead(lp_rows[j], sm_rows[j], wide_rows[j], slope_rows[j], noise_slope, noise_mv, ok)
        )
    return leads


def _spatial_slope(slopes: list[FloatArray]) -> tuple[FloatArray, float]:
    """Spatial velocity: root of the summed squared slopes of the leads, and its noise."""
    if not slopes:
        return np.zeros(0), 0.0
    total = np.zeros_like(slopes[0])
    for slope in slopes:
        total += slope * slope
    speed = np.sqrt(total)
    return speed, float(np.median(speed)) if speed.size else 0.0


def _agreed(values: Sequence[int], n_agree: int, tol: int, latest: bool) -> int:
    """Earliest (latest) value that ``n_agree`` values confirm within ``tol``."""
    # Python ints: a dozen values, where numpy's per-call cost would dominate.
    v = sorted(int(x) for x in values if x != MISSING)
    if not v:
        return MISSING
    need = min(n_agree, len(v))
    if latest:
        v = [-x for x in reversed(v)]
    for first in v:
        if sum(1 for x in v if first <= x <= first + tol) >= need:
            return -first if latest else first
    return -v[-1] if latest else v[-1]  # pragma: no cover - need <= size


def _usable(lead: _Lead, name: str) -> Absent | None:
    if lead.finite.all():  # the common case: no count, no copy of the valid samples
        wide = lead.wide
    elif not lead.finite.any():
        return Absent(AbsentReason.LEAD_UNUSABLE, f"lead {name} holds no valid sample")
    elif np.mean(lead.finite) < 0.5:
        return Absent(AbsentReason.LEAD_UNUSABLE, f"lead {name} mostly missing")
    else:
        wide = lead.wide[lead.finite]
    if float(np.ptp(wide)) < 0.02:
        return Absent(AbsentReason.LEAD_UNUSABLE, f"lead {name} flat (lead off?)")
    return None


def _delineate_template(
    lead: _Lead,
    r: int,
    fs: float,
    rr_s: float,
    cfg: DelineateConfig,
    bounds: tuple[int, int],
    near: tuple[int, int] = (MISSING, MISSING),
) -> tuple[Fiducials, float, Absent | None, float]:
    n = lead.lp.size
    own_on, pk, own_off = _qrs(lead, r, 0, n, fs, cfg)
    # P and T are searched from the global QRS boundaries (the lead's own may miss an
    # isoelectric start or end of the QRS); the lead's own are kept as its fiducials.
    on = bounds[0] if bounds[0] != MISSING else own_on
    off = bounds[1] if bounds[1] != MISSING else own_off
    iso_lo = (on if on != MISSING else r - round(0.08 * fs)) - round(0.02 * fs)
    iso_hi = iso_lo + round(0.02 * fs) + 1
    iso = float(_kernels.mean(lead.sm, max(0, iso_lo), max(1, iso_hi)))
    iso_wide = float(_kernels.mean(lead.wide, max(0, iso_lo), max(1, iso_hi)))
    win = _Windows.of(fs, cfg)
    t_on, tp, t_off = _t_wave(
        lead, pk if pk != MISSING else r, off, iso, n, fs, rr_s, cfg, win, near=near[1]
    )
    # The P search starts after the previous beat's T: one RR before this T end.
    lo = 0
    if t_off != MISSING:
        lo = max(0, t_off - round(rr_s * fs) + round(0.02 * fs))
    absent_p: Absent | None = None
    p_on = p_pk = p_off = MISSING
    p_amp = 0.0
    if on == MISSING:
        absent_p = Absent(AbsentReason.NOT_DELINEATED, "QRS onset not found")
    else:
        p_on, p_pk, p_off, p_amp = _p_wave(lead, on, lo, win, near=near[0])
        if p_pk == MISSING or abs(p_amp) < max(cfg.p_min_mv, cfg.p_snr * lead.noise_mv):
            absent_p = Absent(AbsentReason.NO_P_WAVE, "no P wave in the median beat")
            p_on = p_pk = p_off = MISSING
    fid = Fiducials(p_on, p_pk, p_off, own_on, pk, own_off, t_on, tp, t_off)
    return fid, iso_wide, absent_p, p_amp


def delineate(
    signal_mv: NDArray[np.floating],
    fs_hz: float,
    lead_names: Sequence[str],
    beats: NDArray[np.integer],
    config: DelineateConfig | None = None,
) -> Delineation:
    """Delineate every beat of every lead, and the median beats.

    Parameters
    ----------
    signal_mv : ndarray, shape (n_samples, n_leads)
        Samples in mV, NaN where missing.
    fs_hz : float
        Sampling frequency in Hz.
    lead_names : sequence of str
        One per column.
    beats : array of int
        R-peak samples (the QRS detector's beats), increasing.
    config : DelineateConfig, optional

    Returns
    -------
    Delineation

    Raises
    ------
    SignalError
        For a signal that is not 2-D or whose columns do not match ``lead_names``.
    """
    cfg = config or DelineateConfig()
    signal = np.asarray(signal_mv, dtype=np.float64)
    if signal.ndim != 2 or signal.shape[1] != len(lead_names):
        raise SignalError(
            f"signal must be (n_samples, {len(lead_names)}) for the lead names, got {signal.shape}"
        )
    if not (math.isfinite(fs_hz) and fs_hz > 0):
        raise SignalError(f"fs_hz must be > 0, got {fs_hz!r}")
    finite = np.isfinite(signal)
    if not finite.all():  # inf is missing too; a finite record is used as given
        signal = np.where(finite, signal, np.nan)
    fs = float(fs_hz)
    names = tuple(str(n) for n in lead_names)
    n_samples, n_leads = signal.shape
    r_all = np.asarray(beats, dtype=np.int64).reshape(-1)
    r_all = r_all[(r_all >= 0) & (r_all < n_samples)]
    rr_ms = float(np.median(np.diff(r_all))) * 1000.0 / fs if r_all.size >= 2 else None
    rr_s = (rr_ms / 1000.0) if rr_ms is not None else 1.0
    pre, post = round(cfg.pre_s * fs), round(cfg.post_s * fs)
    spikes = _pacing_spikes(signal, fs, cfg)
    leads = _prepare(_blank(signal, spikes, fs), fs, cfg) if n_samples > 0 else []
    unusable: list[Absent | None] = (
        [_usable(lead, name) for lead, name in zip(leads, names, strict=True)]
        if leads
        else [Absent(AbsentReason.LEAD_UNUSABLE, "empty record")] * n_leads
    )
    good_leads = [j for j in range(n_leads) if unusable[j] is None]
    # QRS boundaries are global events (the start and end of ventricular
    # depolarisation): found on the spatial velocity of all usable leads, in the
    # median beats and in every beat.
    speed, speed_noise = _spatial_slope([leads[j].slope * leads[j].finite for j in good_leads])
    # Beats are delineated around their QRS centres, not the detector's marks: a
    # detector may mark a wide (paced, bundle-branch) complex near its end.
    centres = _qrs_centres(speed, r_all, fs, cfg) if speed.size else r_all
    inside = (centres - pre >= 0) & (centres + post < n_samples)
    idx = centres[inside, None] + np.arange(-pre, post + 1)[None, :]
    in_template = np.zeros(r_all.size, dtype=bool)
    # Beats whose QRS is unlike the median beat's (another focus, another conduction)
    # have their own T: the template does not guide their T search.
    like = np.ones(r_all.size, dtype=bool)
    chosen = np.zeros(0, dtype=np.int64)
    if idx.shape[0] and good_leads:
        chosen, unlike = _dominant(leads, good_leads, idx, pre, fs, cfg)
        in_template[np.flatnonzero(inside)[chosen]] = True
        like[np.flatnonzero(inside)[unlike]] = False
    medians = {j: _median_beat(leads[j], idx[chosen]) for j in good_leads} if chosen.size else {}
    t_bounds = _template_qrs(good_leads, medians, int(chosen.size), pre, fs, cfg, speed_noise)
    templates: list[LeadTemplate] = []
    for j, name in enumerate(names):
        templates.append(
            _make_template(
                leads, j, name, unusable, idx, chosen, pre, fs, rr_s, cfg, t_bounds, medians
            )
        )
    # Second pass: P and T are one atrial and one ventricular event; where a lead's
    # wave is small, its peak is searched near the peak of the lead where it is largest.
    near = _leading_peaks(templates)
    if near != (MISSING, MISSING):
        templates = [
            _make_template(
                leads, j, name, unusable, idx, chosen, pre, fs, rr_s, cfg, t_bounds, medians, near
            )
            for j, name in enumerate(names)
        ]
    global_ = _global(templates, fs, cfg, r_all.size, t_bounds)
    bounds = np.full((r_all.size, 2), MISSING, dtype=np.int64)
    if speed.size:
        for i, r in enumerate(centres):
            lo = int(centres[i - 1]) + round(0.2 * fs) if i > 0 else 0
            hi = int(centres[i + 1]) - round(0.1 * fs) if i + 1 < r_all.size else n_samples
            bounds[i] = _qrs_bounds(speed, int(r), max(0, lo), hi, fs, cfg, speed_noise)
    per_lead = tuple(
        _beats_of_lead(
            leads[j] if leads else None, templates[j], centres, bounds, like, pre, fs, cfg
        )
        for j in range(n_leads)
    )
    beat_fid = _beat_fiducials(per_lead, templates, centres, bounds, in_template, fs, cfg)
    # Atrial activity related to the QRS: the median beat's P must recur beat by beat.
    # In atrial fibrillation the median of the fibrillatory waves can leave a bump
    # that looks like a P wave, but the beats do not match it.
    dominant = beat_fid.in_template
    if global_.absent_p is None and np.any(dominant):
        matched = int(np.count_nonzero(beat_fid.p_present & dominant))
        total = int(np.count_nonzero(dominant))
        if matched < cfg.p_beats_fraction * total:
            why = Absent(
                AbsentReason.NO_P_WAVE, f"P wave related to the QRS in {matched} of {total} beats"
            )
            global_ = dataclasses.replace(global_, p_on=MISSING, p_off=MISSING, absent_p=why)
            for lf in per_lead:
                lf.points[:, 0:3] = MISSING
            beat_fid.points[:, 0:3] = MISSING
            beat_fid.p_present[:] = False
            beat_fid.pr_ms[:] = np.nan
    # Paced: spikes before most dominant beats. The P waves of a paced rhythm (if any)
    # are not what PR means; the QRS is still delineated (spikes blanked).
    paced = _paced_beats(r_all, spikes, fs)
    dominant_paced = int(np.count_nonzero(paced & dominant))
    if np.any(dominant) and dominant_paced >= 0.5 * np.count_nonzero(dominant):
        why = Absent(
            AbsentReason.PACED,
            f"pacing spikes before {dominant_paced} of {int(np.count_nonzero(dominant))} beats",
        )
        global_ = dataclasses.replace(global_, p_on=MISSING, p_off=MISSING, absent_p=why)
    return Delineation(
        fs_hz=fs,
        lead_names=names,
        beats=r_all,
        rr_ms=rr_ms,
        r_index=pre,
        templates=tuple(templates),
        global_=global_,
        per_lead=per_lead,
        beat_fiducials=beat_fid,
        pacing_spikes=spikes,
    )


def _qrs_centres(speed: FloatArray, r_all: IntArray, fs: float, cfg: DelineateConfig) -> IntArray:
    """Each beat's QRS centre: the peak of the spatial velocity smoothed over
    ``centre_smooth_s`` within ``centre_search_s`` of the detector's mark (and nearer
    to it than to its neighbours). The detector's mark is kept when the centre is within
    ``centre_keep_s`` of it, so that narrow complexes stay aligned on their R peaks."""
    if r_all.size == 0 or cfg.centre_search_s <= 0:
        return r_all
    w = max(1, round(cfg.centre_smooth_s * fs))
    c = np.concatenate(([0.0], np.cumsum(speed)))
    n = speed.size
    search, keep = round(cfg.centre_search_s * fs), round(cfg.centre_keep_s * fs)
    # The smoothed velocity of every sample at once (elementwise: each sample's value
    # is the one a window around a beat gives it); each beat takes its arg-max.
    t = np.arange(n)
    a, b = np.maximum(t - w // 2, 0), np.minimum(t + w // 2 + 1, n)
    energy = (c[b] - c[a]) / (b - a)
    out = r_all.copy()
    marks = r_all.tolist()
    for i, r in enumerate(marks):
        lo, hi = max(0, r - search), min(n, r + search + 1)
        if i > 0:
            lo = max(lo, (marks[i - 1] + r) // 2 + 1)
        if i + 1 < len(marks):
            hi = min(hi, (r + marks[i + 1]) // 2)
        if hi - lo < 3:
            continue
        centre = lo + int(np.argmax(energy[lo:hi]))
        if abs(centre - r) > keep:
            out[i] = centre
    return out


def _paced_beats(r_all: IntArray, spikes: IntArray, fs: float) -> NDArray[np.bool_]:
    """Beats with a pacing spike in the 300 ms before their R peak."""
    if spikes.size == 0 or r_all.size == 0:
        return np.zeros(r_all.size, dtype=bool)
    right = np.searchsorted(spikes, r_all, side="right")
    left = np.searchsorted(spikes, r_all - round(0.3 * fs), side="left")
    return np.asarray(right > left)


def _dominant(
    leads: list[_Lead], good: list[int], idx: IntArray, pre: int, fs: float, cfg: DelineateConfig
) -> tuple[IntArray, IntArray]:
    """Indices (into ``idx``) of the beats of the dominant morphology, NaN-free; and of
    the NaN-free beats whose QRS is unlike it (correlation under ``template_corr``)."""
    half = round(0.06 * fs)
    qrs_idx = idx[:, pre - half : pre + half + 1]
    finite = np.ones(idx.shape[0], dtype=bool)
    for j in good:
        if not leads[j].finite.all():  # a lead with no missing sample has NaN-free beats
            finite &= leads[j].finite[idx].all(axis=1)
    rows = np.flatnonzero(finite)
    if rows.size == 0:
        return rows, rows
    feats = np.concatenate([leads[j].lp[qrs_idx[rows]] for j in good], axis=1)
    feats = feats - feats.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(feats, axis=1)
    # The beats' median QRS by the median-beat kernel (numpy's values; numpy's median
    # along the beats of this (beats, samples) array partitions across its rows).
    flat = feats.reshape(-1)
    width = feats.shape[1]
    columns = np.arange(width)[None, :]

    def median_of(beats: IntArray) -> FloatArray:
        return _kernels.median_rows(flat, beats[:, None] * width + columns)

    def correlation(med: FloatArray) -> FloatArray:
        denom = norms * np.linalg.norm(med)
        return np.where(denom > 0, feats @ med / np.where(denom > 0, denom, 1.0), 0.0)

    corr = correlation(median_of(np.arange(rows.size)))
    keep = corr >= cfg.template_corr
    if np.count_nonzero(keep) < max(1, int(0.3 * rows.size)):
        keep = corr >= np.median(corr)
    # Unlike: against the median of the beats kept (with two morphologies in similar
    # numbers the first median is a blend that neither resembles).
    unlike = ~keep & (correlation(median_of(np.flatnonzero(keep))) < cfg.template_corr)
    return rows[keep], rows[unlike]


def _leading_peaks(templates: list[LeadTemplate]) -> tuple[int, int]:
    """(P peak, T peak) of the leads where P and T are largest (template coordinates)."""
    best_p, best_t = (0.0, MISSING), (0.0, MISSING)
    for t in templates:
        f = t.fiducials
        if not t.usable:
            continue
        if t.absent_p is None and f.p_peak != MISSING:
            amp = abs(float(t.wide_mv[f.p_peak]) - t.iso_mv)
            best_p = max(best_p, (amp, f.p_peak))
        if f.t_peak != MISSING:
            amp = abs(float(t.wide_mv[f.t_peak]) - t.iso_mv)
            best_t = max(best_t, (amp, f.t_peak))
    return best_p[1], best_t[1]


def _template_qrs(
    good: list[int],
    medians: dict[int, _Lead],
    n_chosen: int,
    pre: int,
    fs: float,
    cfg: DelineateConfig,
    noise: float,
) -> tuple[int, int]:
    """Global QRS (onset, offset) of the median beats, on their spatial velocity.

    ``noise``: the median spatial velocity of the beats, not the template's (the median
    beat is flatter than any beat, and its median slope would be dominated by P and T).
    """
    if not medians:
        return MISSING, MISSING
    speed, _ = _spatial_slope([medians[j].slope for j in good])
    return _qrs_bounds(speed, pre, 0, speed.size, fs, cfg, noise / math.sqrt(n_chosen))


def _make_template(
    leads: list[_Lead],
    j: int,
    name: str,
    unusable: list[Absent | None],
    idx: IntArray,
    chosen: IntArray,
    pre: int,
    fs: float,
    rr_s: float,
    cfg: DelineateConfig,
    bounds: tuple[int, int],
    medians: dict[int, _Lead],
    near: tuple[int, int] = (MISSING, MISSING),
) -> LeadTemplate:
    empty = np.zeros(0)
    absent = unusable[j] if j < len(unusable) else None
    if absent is None and chosen.size == 0:
        absent = Absent(
            AbsentReason.TOO_FEW_BEATS, "no complete beat (a median beat needs one whole beat)"
        )
    if absent is not None:
        return LeadTemplate(name, False, absent, empty, empty, 0.0, Fiducials(), absent)
    t_lead = medians[j]
    fid, iso, absent_p, _ = _delineate_template(t_lead, pre, fs, rr_s, cfg, bounds, near)
    return LeadTemplate(name, True, None, t_lead.wide, t_lead.lp, iso, fid, absent_p)


def _median_beat(lead: _Lead, rows: IntArray) -> _Lead:
    """The median beat of one lead over the beats whose samples are ``rows``."""
    lp = _kernels.median_rows(lead.lp, rows)
    slope = _kernels.abs_gradient_rows(lp[None, :])[0] if lp.size > 1 else np.zeros_like(lp)
    return _Lead(
        lp=lp,
        sm=_kernels.median_rows(lead.sm, rows),
        wide=_kernels.median_rows(lead.wide, rows),
        slope=slope,
        noise_slope=lead.noise_slope,
        noise_mv=lead.noise_mv / math.sqrt(max(1, rows.shape[0])),
        finite=np.ones(rows.shape[1], dtype=bool),
    )


def _global(
    templates: list[LeadTemplate],
    fs: float,
    cfg: DelineateConfig,
    n_beats: int,
    bounds: tuple[int, int],
) -> GlobalFiducials:
    ok = [t for t in templates if t.usable]
    if not ok:
        why = (
            Absent(AbsentReason.TOO_FEW_BEATS, f"{n_beats} beats, no complete median beat")
            if templates
            and all(
                t.absent is None or t.absent.reason is AbsentReason.TOO_FEW_BEATS for t in templates
            )
            else Absent(AbsentReason.LEAD_UNUSABLE, "no usable lead")
        )
        return GlobalFiducials(MISSING, MISSING, MISSING, MISSING, MISSING, MISSING, why, why, why)
    tol = max(1, round(cfg.agree_ms * fs / 1000.0))
    n = cfg.agree_leads
    qrs_on, qrs_off = bounds
    absent_qrs = (
        None
        if qrs_on != MISSING and qrs_off != MISSING
        else Absent(AbsentReason.NOT_DELINEATED, "QRS boundaries not found")
    )
    with_p = [t for t in ok if t.absent_p is None]
    absent_p: Absent | None = None
    p_on = p_off = MISSING
    if len(with_p) < min(n, len(ok)):
        absent_p = Absent(AbsentReason.NO_P_WAVE, f"P wave in {len(with_p)} of {len(ok)} leads")
    else:
        # Boundaries from the leads where P is clearest (small P waves put their
        # corners anywhere in the flat baseline around them).
        p_amps = {t.lead: abs(float(t.wide_mv[t.fiducials.p_peak]) - t.iso_mv) for t in with_p}
        top = max(p_amps.values())
        clear_p = [t for t in with_p if p_amps[t.lead] >= cfg.t_clear_fraction * top]
        need = min(n, len(clear_p))
        p_on = _agreed([t.fiducials.p_on for t in clear_p], need, tol, latest=False)
        p_off = _agreed([t.fiducials.p_off for t in clear_p], need, tol, latest=True)
    amps = {
        t.lead: abs(float(t.wide_mv[t.fiducials.t_peak] - t.iso_mv))
        for t in ok
        if t.fiducials.t_peak != MISSING and t.fiducials.t_off != MISSING
    }
    absent_t: Absent | None = None
    t_peak = t_off = MISSING
    if not amps:
        absent_t = Absent(AbsentReason.NOT_DELINEATED, "no lead with a clear T wave")
    else:
        biggest = max(amps.values())
        clear = [t for t in ok if amps.get(t.lead, 0.0) >= cfg.t_clear_fraction * biggest]
        t_off = _agreed([t.fiducials.t_off for t in clear], n, 2 * tol, latest=True)
        best = max(clear, key=lambda t: amps[t.lead])
        t_peak = best.fiducials.t_peak
    return GlobalFiducials(
        p_on, p_off, qrs_on, qrs_off, t_peak, t_off, absent_p, absent_qrs, absent_t
    )


# ---------------------------------------------------------------- beats


def _beats_of_lead(
    lead: _Lead | None,
    template: LeadTemplate,
    r_all: IntArray,
    bounds: IntArray,
    like: NDArray[np.bool_],
    pre: int,
    fs: float,
    cfg: DelineateConfig,
) -> LeadFiducials:
    """Per-beat fiducials of one lead; ``like``: the beat's QRS is like the median
    beat's, so that the template's T (peak and polarity) guides its T search."""
    if lead is None or not template.usable:
        points = np.full((r_all.size, len(FIDUCIALS)), MISSING, dtype=np.int64)
        return LeadFiducials(template.lead, points)
    n = lead.lp.size
    tf = template.fiducials
    t_sign = 0
    if tf.t_peak != MISSING:
        t_sign = 1 if template.lp_mv[tf.t_peak] - template.iso_mv > 0 else -1
    p_sign = 0
    p_ref: FloatArray | None = None
    if template.absent_p is None and tf.p_peak != MISSING:
        a, b = tf.p_on - round(0.02 * fs), tf.p_off + round(0.02 * fs)
        if a >= 0 and b < template.lp_mv.size:
            p_ref = _template_sm_segment(template, a, b)
            p_sign = 1 if p_ref[tf.p_peak - a] > 0 else -1
    # Python ints and lists, and the windows' lengths, once: the loop runs per beat. The
    # fiducials are gathered in lists (a numpy row assignment costs more than a kernel
    # call) and made an array at the end.
    win = _Windows.of(fs, cfg)
    rows = [[MISSING] * len(FIDUCIALS) for _ in range(r_all.size)]
    rs = r_all.tolist()
    bounds_list = bounds.tolist()
    like_list = like.tolist()
    n_beats = len(rs)
    after_r, before_r = round(0.2 * fs), round(0.1 * fs)
    post, iso_back, iso_len = round(cfg.post_s * fs), round(0.08 * fs), round(0.02 * fs)
    p_back = tf.p_peak - (tf.p_on - iso_len)
    p_lag = round(cfg.p_lag_s * fs)
    all_finite = bool(lead.finite.all())
    for i, r in enumerate(rs):
        lo = rs[i - 1] + after_r if i > 0 else 0
        hi = rs[i + 1] - before_r if i + 1 < n_beats else n
        rr_next = (rs[i + 1] - r) / fs if i + 1 < n_beats else None
        rr_s = rr_next if rr_next is not None else ((r - rs[i - 1]) / fs if i > 0 else 1.0)
        a = max(0, r - pre)
        b = min(n, r + post + 1)
        if not all_finite and not lead.finite[a:b].all():
            continue
        on, off = bounds_list[i][0], bounds_list[i][1]
        # The lead's peak is searched within the beat's QRS: a wide complex's R may be
        # more than 50 ms from its centre, and a window around the centre can hold
        # the end of the P or the start of the ST segment.
        if on != MISSING and off != MISSING and off - on >= 3:
            pk = _qrs_peak_between(lead.wide, on, off, cfg.r_fraction)
        else:
            pk = _lead_peak(lead.wide, r, max(lo, a), min(hi, b), fs, cfg.r_fraction)
        row = rows[i]
        row[3:6] = (on, pk, off)
        if pk == MISSING:
            continue
        iso_lo = (on if on != MISSING else pk - iso_back) - iso_len
        iso_hi = max(1, iso_lo + iso_len + 1)
        iso = float(_kernels.mean(lead.sm, max(0, iso_lo), iso_hi))
        t_hi = min(b, rs[i + 1] if i + 1 < n_beats else b)
        t_near = MISSING if tf.t_peak == MISSING or not like_list[i] else r + tf.t_peak - pre
        sign = t_sign if like_list[i] else 0
        row[6:9] = _t_wave(lead, pk, off, iso, t_hi, fs, rr_s, cfg, win, sign, t_near)
        if p_ref is not None and on != MISSING:
            prev_t = rows[i - 1][8] if i > 0 else MISSING
            p_lo = max(a, prev_t + iso_len if prev_t != MISSING else lo - before_r)
            near = on - (tf.qrs_on - tf.p_peak)
            p_on, p_pk, p_off, _ = _p_wave(lead, on, p_lo, win, near, p_sign)
            if p_pk != MISSING and _p_matches(lead, p_ref, p_pk - p_back, cfg, p_lag):
                row[0:3] = (p_on, p_pk, p_off)
    points = np.array(rows, dtype=np.int64).reshape(r_all.size, len(FIDUCIALS))
    return LeadFiducials(template.lead, points)


def _template_sm_segment(template: LeadTemplate, a: int, b: int) -> FloatArray:
    seg = template.lp_mv[a : b + 1]
    return np.asarray(seg - np.linspace(seg[0], seg[-1], seg.size), dtype=np.float64)


def _p_matches(
    lead: _Lead, p_ref: FloatArray, start: int, cfg: DelineateConfig, lag: int = 0
) -> bool:
    """The beat's P window at ``start`` (or up to ``lag`` samples either side: its own
    P peak is a noisy alignment) correlates with the template's P ``p_ref``."""
    for st in range(start - lag, start + lag + 1):
        if st < 0 or st + p_ref.size > lead.lp.size:
            continue
        if _kernels.p_correlation(lead.lp, st, p_ref) >= cfg.p_corr:
            return True
    return False


def _wave_amp(t: LeadTemplate, peak: int) -> float:
    return 0.0 if peak == MISSING else abs(float(t.wide_mv[peak]) - t.iso_mv)


def _clear(templates: list[LeadTemplate], wave: str, fraction: float) -> list[int]:
    """Indices of the usable leads whose median-beat P (or T) is at least ``fraction``
    of the largest."""
    amps = []
    for j, t in enumerate(templates):
        if not t.usable or (wave == "p" and t.absent_p is not None):
            continue
        peak = t.fiducials.p_peak if wave == "p" else t.fiducials.t_peak
        amps.append((j, _wave_amp(t, peak)))
    top = max((a for _, a in amps), default=0.0)
    return [j for j, a in amps if top > 0 and a >= fraction * top]


def _columns(
    per_lead: tuple[LeadFiducials, ...], leads: list[int], columns: tuple[int, ...]
) -> list[list[list[int]]]:
    """For each of ``columns`` of the fiducials, per beat, the values of ``leads``."""
    if not leads:
        return [[] for _ in columns]
    stacked = np.stack([per_lead[j].points for j in leads], axis=1)  # (beat, lead, column)
    return [stacked[:, :, c].tolist() for c in columns]


def _int_median(values: list[int]) -> int:
    """``int(numpy.median(values))`` of sample indices (exact in float64): the middle
    value, or the mean of the two middle ones truncated."""
    v = sorted(values)
    half = len(v) // 2
    return v[half] if len(v) % 2 else int((v[half - 1] + v[half]) / 2)


def _beat_fiducials(
    per_lead: tuple[LeadFiducials, ...],
    templates: list[LeadTemplate],
    r_all: IntArray,
    bounds: IntArray,
    in_template: NDArray[np.bool_],
    fs: float,
    cfg: DelineateConfig,
) -> BeatFiducials:
    """Per-beat fiducials over all leads; leads where P or T is small take them.

    The boundaries of a wave that is barely visible in a lead are where its flat tail
    happens to bend, not where the atria or ventricles start or end: those leads are
    given the beat's global boundaries, made over the leads where the wave is clear.
    """
    n = r_all.size
    points = np.full((n, len(FIDUCIALS)), MISSING, dtype=np.int64)
    p_present = np.zeros(n, dtype=bool)
    pr_ms = np.full(n, np.nan)
    tol = max(1, round(cfg.agree_ms * fs / 1000.0))
    k = cfg.agree_leads
    clear_t = _clear(templates, "t", cfg.t_clear_fraction)
    clear_p = _clear(templates, "p", cfg.t_clear_fraction)
    usable = [j for j, t in enumerate(templates) if t.usable]
    if not usable:
        return BeatFiducials(points, p_present, pr_ms, in_template)
    points[:, 3:5] = np.stack([bounds[:, 0], r_all], axis=1)
    points[:, 5] = bounds[:, 1]
    # The clear leads' fiducials as Python lists per beat, once: (beat, lead).
    t_on, t_peak, t_end = _columns(per_lead, clear_t, (6, 7, 8))
    p_on, p_peak, p_off = _columns(per_lead, clear_p, (0, 1, 2))
    need_t, need_p = min(k, len(clear_t)), min(k, len(clear_p))
    for i in range(n):
        if clear_t:
            points[i, 6] = _agreed(t_on[i], need_t, 2 * tol, latest=False)
            points[i, 8] = _agreed(t_end[i], need_t, 2 * tol, latest=True)
            peaks = [x for x in t_peak[i] if x != MISSING]
            points[i, 7] = _int_median(peaks) if peaks else MISSING
        if clear_p:
            peaks = [x for x in p_peak[i] if x != MISSING]
            if len(peaks) >= need_p:
                p_present[i] = True
                points[i, 0] = _agreed(p_on[i], need_p, tol, latest=False)
                points[i, 2] = _agreed(p_off[i], need_p, tol, latest=True)
                points[i, 1] = _int_median(peaks)
                if points[i, 3] != MISSING and points[i, 0] != MISSING:
                    pr_ms[i] = (points[i, 3] - points[i, 0]) * 1000.0 / fs
    if cfg.share_boundaries:
        for j in usable:
            lf = per_lead[j]
            if j not in clear_t:
                lf.points[:, 6:9] = points[:, 6:9]
            if j not in clear_p:
                lf.points[p_present, 0:3] = points[p_present, 0:3]
                lf.points[~p_present, 0:3] = MISSING
    return BeatFiducials(points, p_present, pr_ms, in_template)
