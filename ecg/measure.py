"""12-lead measurements: intervals, QTc, frontal axes, amplitudes and voltage indices.

Design notes
------------
- **Result type.** :func:`measure` returns a :class:`Measurements`: ``global_`` (a
  :class:`GlobalMeasurements`: the figures a cart prints at the top of the page) and
  ``per_lead`` (a :class:`LeadMeasurements` per lead, by the record's lead name). Every
  value is either a number whose unit is in its field name (``_ms``, ``_mv``,
  ``_bpm``, ``_deg``) or an :class:`Absent` carrying a stable
  :class:`AbsentReason` code and a sentence: a measurement that cannot be made (no P
  wave in atrial fibrillation, a lead missing, a record too short) is never a number.
  ``qtc_ms`` maps each :class:`QtcFormula` to its value; ``qtc_first`` says which one a
  report shows first (configuration, default Bazett). The field names are a contract
  with the statement rules (``ecg.statements``) and the annotation JSON: they do not
  change.
- **Where the figures come from.** Global intervals are measured on the global
  fiducials of the median beats (:class:`ecg.delineate.GlobalFiducials`: earliest QRS
  onset and latest offset over agreeing leads, T end from the leads where T is
  clearest), as 12-lead programs do, so one noisy beat or lead does not move them.
  Per-lead amplitudes are read on the lead's median beat, on the diagnostic band
  (0.05–150 Hz), relative to the isoelectric level (the PQ junction: the 20 ms before
  QRS onset); per-lead intervals on the lead's own template fiducials. Q and S
  amplitudes are signed (negative, mV, 0 when the lead has no Q or no S wave);
  Sokolow–Lyon and Cornell use their magnitudes.
- **HR and RR** are the median RR interval of the window (``60000 / median RR``): the
  rate the QTc formulas use.
- **Axes** are directions in the frontal plane, ``atan2(2·aVF/√3, I)`` (aVF sees
  ``√3/2·|E|·sin θ`` when I sees ``|E|·cos θ``), from two numbers per lead. The **QRS
  axis** is the hexaxial method of the clinical texts: the net deflection of the QRS in
  I and aVF, the height of its tallest positive wave minus the depth of its deepest
  negative one (``R + min(Q, S)``, from the isoelectric level, between the global QRS
  onset and offset) — what a reader measures on paper, and the convention of the
  diagnoses the axis classes and LAD/RAD/LAFB are scored against (on LUDB's odd
  records it gave the diagnosed axis class more often than the net area, 28/47 against
  26/47, and the even ones confirmed it, 36/45 against 32/45). The **P and T axes**
  are the direction of the wave's net area (µV·s) between its global onset and
  offset: those waves are mostly one-phased, so area and deflection agree, and the area
  is the steadier of the two on a low, noisy wave. Where I or aVF is missing, they are
  derived from II and III by Einthoven's law (``I = II − III``, ``aVF = (II + III)/2``;
  exact for areas, an approximation for peak deflections, whose peaks need not be
  simultaneous). A net area or deflection too small to have a direction (all leads
  nearly isoelectric) gives ``Absent(INDETERMINATE)``.
- **Live.** The live path calls the same :func:`measure` on a window of signal with
  the beats detected in it (in window coordinates: sample 0 is the window's first
  sample); the result is the batch result for that window, because nothing here keeps
  state between calls. A beat whose median-beat span (``pre_s`` before to ``post_s``
  after its R peak) is not inside the window takes no part in the median beats.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Final

import numpy as np
from numpy.typing import NDArray

from ecg.delineate import (
    MISSING,
    Absent,
    AbsentReason,
    DelineateConfig,
    Delineation,
    LeadTemplate,
    delineate,
)
from ecg.errors import ConfigError

__all__ = [
    "Absent",
    "AbsentReason",
    "GlobalMeasurements",
    "LeadMeasurements",
    "MeasureConfig",
    "Measurements",
    "QtcFormula",
    "Value",
    "is_value",
    "measure",
    "measure_delineation",
    "qtc_ms",
]


#: A measurement: a number in the unit its name says, or why there is none.
Value = float | Absent


def is_value(value: Value) -> bool:
    """True when ``value`` is a number (not :class:`Absent`)."""
    return not isinstance(value, Absent)


class QtcFormula(enum.StrEnum):
    """Heart-rate corrections of QT."""

    BAZETT = "bazett"
    FRIDERICIA = "fridericia"
    FRAMINGHAM = "framingham"
    HODGES = "hodges"


def qtc_ms(qt_ms: float, rr_ms: float, formula: QtcFormula) -> float:
    """QT corrected for heart rate, ms.

    Parameters
    ----------
    qt_ms : float
        QT interval, ms.
    rr_ms : float
        RR interval, ms (> 0).
    formula : QtcFormula
        ``bazett`` QT/√RR, ``fridericia`` QT/∛RR (RR in s), ``framingham``
        QT + 154·(1 − RR) ms, ``hodges`` QT + 1.75·(HR − 60) ms.

    Returns
    -------
    float
        QTc in ms.
    """
    rr_s = rr_ms / 1000.0
    if formula is QtcFormula.BAZETT:
        return qt_ms / math.sqrt(rr_s)
    if formula is QtcFormula.FRIDERICIA:
        return qt_ms / math.pow(rr_s, 1.0 / 3.0)
    if formula is QtcFormula.FRAMINGHAM:
        return qt_ms + 154.0 * (1.0 - rr_s)
    return qt_ms + 1.75 * (60.0 / rr_s - 60.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasureConfig:
    """Settings of :func:`measure`.

    Parameters
    ----------
    qtc_first : QtcFormula or str
        The QTc formula a report shows first (default Bazett).
    st_offset_ms : float
        ST level is measured this long after the J point (QRS offset), ms.
    min_axis_area_uvs : float
        Below this net frontal area (µV·s) a P or T axis is indeterminate.
    delineate : DelineateConfig
        Settings of the delineation.
    """

    qtc_first: QtcFormula = QtcFormula.BAZETT
    st_offset_ms: float = 60.0
    min_axis_area_uvs: float = 1.0
    delineate: DelineateConfig = field(default_factory=DelineateConfig)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "qtc_first", QtcFormula(self.qtc_first))
        except ValueError:
            raise ConfigError(
                f"qtc_first must be one of {[f.value for f in QtcFormula]}, got {self.qtc_first!r}"
            ) from None
        if not (math.isfinite(self.st_offset_ms) and 0 <= self.st_offset_ms <= 200):
            raise ConfigError(f"st_offset_ms must be within 0-200, got {self.st_offset_ms!r}")
        if not (math.isfinite(self.min_axis_area_uvs) and self.min_axis_area_uvs >= 0):
            raise ConfigError(f"min_axis_area_uvs must be >= 0, got {self.min_axis_area_uvs!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class GlobalMeasurements:
    """The figures of the whole ECG (from the global fiducials of the median beats).

    Attributes
    ----------
    hr_bpm : Value
        Heart rate, 60000 / median RR, bpm.
    rr_ms : Value
        Median RR interval, ms.
    pr_ms : Value
        P onset to QRS onset, ms.
    p_ms : Value
        P wave duration, ms.
    qrs_ms : Value
        QRS duration, ms.
    qt_ms : Value
        QRS onset to T end, ms.
    qtc_ms : mapping of QtcFormula to Value
        QTc by every formula, ms.
    qtc_first : QtcFormula
        The formula to show first.
    p_axis_deg, qrs_axis_deg, t_axis_deg : Value
        Frontal axes, degrees in (-180, 180].
    sokolow_lyon_mv : Value
        |S V1| + max(R V5, R V6), mV.
    cornell_mv : Value
        R aVL + |S V3|, mV.
    """

    hr_bpm: Value
    rr_ms: Value
    pr_ms: Value
    p_ms: Value
    qrs_ms: Value
    qt_ms: Value
    qtc_ms: Mapping[QtcFormula, Value]
    qtc_first: QtcFormula
    p_axis_deg: Value
    qrs_axis_deg: Value
    t_axis_deg: Value
    sokolow_lyon_mv: Value
    cornell_mv: Value


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadMeasurements:
    """The figures of one lead (on its median beat).

    Attributes
    ----------
    lead : str
        The lead name as in the record.
    p_amp_mv, t_amp_mv : Value
        Signed peak of the P and T wave from the isoelectric level, mV.
    q_amp_mv, s_amp_mv : Value
        Deepest point of the Q wave (before R) and S wave (after R), mV, <= 0; 0 when
        the lead has no such wave.
    r_amp_mv : Value
        Highest point of the QRS, mV, >= 0.
    st_j60_mv : Value
        Level at J + ``st_offset_ms`` (60 ms) from the isoelectric level, mV.
    q_ms : Value
        Duration of the Q wave (QRS onset to the first upward zero crossing), ms; 0
        without a Q wave.
    p_ms, pr_ms, qrs_ms, qt_ms : Value
        The lead's own intervals, ms.
    """

    lead: str
    p_amp_mv: Value
    q_amp_mv: Value
    r_amp_mv: Value
    s_amp_mv: Value
    t_amp_mv: Value
    st_j60_mv: Value
    q_ms: Value
    p_ms: Value
    pr_ms: Value
    qrs_ms: Value
    qt_ms: Value


@dataclass(frozen=True, eq=False)
class Measurements:
    """Everything :func:`measure` found.

    Attributes
    ----------
    global_ : GlobalMeasurements
    per_lead : mapping of str to LeadMeasurements
        By lead name, in the record's lead order.
    delineation : Delineation
        The fiducials the measurements come from: per beat and lead, per beat over all
        leads (``delineation.beats``: P present and related to its QRS, PR per beat),
        and the median beats.
    """

    global_: GlobalMeasurements
    per_lead: Mapping[str, LeadMeasurements]
    delineation: Delineation


def value_fields(cls: type[GlobalMeasurements] | type[LeadMeasurements]) -> tuple[str, ...]:
    """Names of the :data:`Value` fields of a measurement class (``qtc_ms`` excluded)."""
    skip = {"lead", "qtc_ms", "qtc_first"}
    return tuple(f.name for f in fields(cls) if f.name not in skip)


def measure(
    signal_mv: NDArray[np.floating],
    fs_hz: float,
    lead_names: Sequence[str],
    beats: NDArray[np.integer],
    config: MeasureConfig | None = None,
) -> Measurements:
    """Delineate and measure a 12-lead (or any-lead) ECG.

    Parameters
    ----------
    signal_mv : ndarray, shape (n_samples, n_leads)
        Samples in mV, NaN where missing.
    fs_hz : float
        Sampling frequency in Hz (100–2000).
    lead_names : sequence of str
        One per column (standard names ``I, II, III, aVR, aVL, aVF, V1..V6``; other
        names are measured per lead but take no part in axes and indices).
    beats : array of int
        R-peak samples from the QRS detector, increasing.
    config : MeasureConfig, optional

    Returns
    -------
    Measurements
    """
    config = config or MeasureConfig()
    dl = delineate(signal_mv, fs_hz, lead_names, beats, config.delineate)
    return measure_delineation(dl, config)


# ---------------------------------------------------------------- global figures


def _ms(dl: Delineation, samples: float) -> float:
    return float(samples) * 1000.0 / dl.fs_hz


# The median RR that is a cardiac cycle, ms (400 to 10 bpm).
RR_RANGE_MS: Final = (150.0, 6000.0)


def measure_delineation(dl: Delineation, config: MeasureConfig | None = None) -> Measurements:
    """Measurements from an existing :class:`Delineation` (see :func:`measure`)."""
    config = config or MeasureConfig()
    g = dl.global_
    if dl.rr_ms is None:
        few = Absent(AbsentReason.TOO_FEW_BEATS, f"{dl.beats.size} beats")
        hr: Value = few
        rr: Value = few
    elif not RR_RANGE_MS[0] <= dl.rr_ms <= RR_RANGE_MS[1]:
        # Beats closer than 150 ms (over 400 bpm) or 6 s apart are no cardiac cycle.
        odd = Absent(AbsentReason.NOT_DELINEATED, f"median RR {dl.rr_ms:.0f} ms")
        hr = rr = odd
    else:
        rr = dl.rr_ms
        hr = 60000.0 / dl.rr_ms
    pr = _interval(dl, g.qrs_on, g.p_on, g.absent_p)
    p_ms = _interval(dl, g.p_off, g.p_on, g.absent_p)
    qrs = _interval(dl, g.qrs_off, g.qrs_on, g.absent_qrs)
    qt = _interval(dl, g.t_off, g.qrs_on, g.absent_t or g.absent_qrs)
    qtc: dict[QtcFormula, Value] = {}
    for formula in QtcFormula:
        if isinstance(qt, Absent):
            qtc[formula] = qt
        elif isinstance(rr, Absent):
            qtc[formula] = rr
        else:
            qtc[formula] = qtc_ms(qt, rr, formula)
    per_lead = {t.lead: _lead_measurements(dl, t, config) for t in dl.templates}
    global_ = GlobalMeasurements(
        hr_bpm=hr,
        rr_ms=rr,
        pr_ms=pr,
        p_ms=p_ms,
        qrs_ms=qrs,
        qt_ms=qt,
        qtc_ms=qtc,
        qtc_first=config.qtc_first,
        p_axis_deg=_axis(dl, "p", config),
        qrs_axis_deg=_axis(dl, "qrs", config),
        t_axis_deg=_axis(dl, "t", config),
        sokolow_lyon_mv=_sokolow(per_lead),
        cornell_mv=_cornell(per_lead),
    )
    return Measurements(global_=global_, per_lead=per_lead, delineation=dl)


def _interval(dl: Delineation, end: int, start: int, absent: Absent | None) -> Value:
    if absent is not None:
        return absent
    if end == MISSING or start == MISSING or end <= start:
        return Absent(AbsentReason.NOT_DELINEATED, "wave boundaries not found")
    return _ms(dl, end - start)


_AXIS_WAVES = {"p": ("p_on", "p_off"), "qrs": ("qrs_on", "qrs_off"), "t": ("qrs_off", "t_off")}

# Below this net frontal QRS deflection, mV, the QRS axis is indeterminate: half a small
# square at 10 mm/mV, a direction no reader can take from the paper (the hexaxial
# method's equiphasic limb leads).
QRS_AXIS_MIN_NET_MV: Final = 0.05


def _net_area_uvs(seg_mv: NDArray[np.float64], fs_hz: float) -> float:
    """Net area of a wave, µV·s (samples in mV from the isoelectric level)."""
    return float(np.sum(seg_mv)) / fs_hz * 1000.0


def _net_deflection_mv(seg_mv: NDArray[np.float64], fs_hz: float) -> float:
    """Net QRS deflection, mV: the tallest positive wave minus the deepest negative one.

    The quantity of the hexaxial method of the clinical texts (``R + min(Q, S)``; 0 for a
    missing wave), read from the isoelectric level.
    """
    return max(float(seg_mv.max()), 0.0) + min(float(seg_mv.min()), 0.0)


def _axis(dl: Delineation, wave: str, config: MeasureConfig) -> Value:
    """Frontal axis of the P wave, QRS or T wave, degrees in (-180, 180].

    The QRS from the net deflections of I and aVF, P and T from their net areas (see the
    module notes for why); II and III stand in for a missing I or aVF.
    """
    g = dl.global_
    absent = {"p": g.absent_p, "qrs": g.absent_qrs, "t": g.absent_t or g.absent_qrs}[wave]
    if absent is not None:
        return absent
    on_name, off_name = _AXIS_WAVES[wave]
    on, off = getattr(g, on_name), getattr(g, off_name)
    if on == MISSING or off == MISSING or off <= on:
        return Absent(AbsentReason.NOT_DELINEATED, f"{wave.upper()} boundaries not found")
    by_name = {t.lead: t for t in dl.templates if t.usable}
    if wave == "qrs":
        net, least, quantity = _net_deflection_mv, QRS_AXIS_MIN_NET_MV, "deflection"
    else:
        net, least, quantity = _net_area_uvs, config.min_axis_area_uvs, "area"

    def lead_net(name: str) -> float | None:
        t = by_name.get(name)
        if t is None:
            return None
        return net(t.wide_mv[on : off + 1] - t.iso_mv, dl.fs_hz)

    lead_i, lead_avf = lead_net("I"), lead_net("aVF")
    if lead_i is None or lead_avf is None:
        lead_ii, lead_iii = lead_net("II"), lead_net("III")
        if lead_ii is None or lead_iii is None:
            missing = [n for n in ("I", "aVF") if n not in by_name]
            return Absent(
                AbsentReason.LEAD_MISSING,
                f"needs I and aVF, or II and III; missing or unusable: {', '.join(missing)}",
            )
        lead_i = lead_ii - lead_iii if lead_i is None else lead_i
        lead_avf = (lead_ii + lead_iii) / 2.0 if lead_avf is None else lead_avf
    y = 2.0 * lead_avf / math.sqrt(3.0)
    if math.hypot(lead_i, y) < least:
        return Absent(AbsentReason.INDETERMINATE, f"net {wave.upper()} {quantity} too small")
    angle = math.degrees(math.atan2(y, lead_i))
    return 180.0 if angle == -180.0 else angle


def _sokolow(per_lead: Mapping[str, LeadMeasurements]) -> Value:
    v1 = per_lead.get("V1")
    r5 = [per_lead[n].r_amp_mv for n in ("V5", "V6") if n in per_lead]
    if v1 is None or not r5:
        return Absent(AbsentReason.LEAD_MISSING, "needs V1 and V5 or V6")
    if isinstance(v1.s_amp_mv, Absent):
        return v1.s_amp_mv
    numbers = [r for r in r5 if not isinstance(r, Absent)]
    if not numbers:
        first = r5[0]
        assert isinstance(first, Absent)
        return first
    return abs(v1.s_amp_mv) + max(numbers)


def _cornell(per_lead: Mapping[str, LeadMeasurements]) -> Value:
    avl, v3 = per_lead.get("aVL"), per_lead.get("V3")
    if avl is None or v3 is None:
        return Absent(AbsentReason.LEAD_MISSING, "needs aVL and V3")
    if isinstance(avl.r_amp_mv, Absent):
        return avl.r_amp_mv
    if isinstance(v3.s_amp_mv, Absent):
        return v3.s_amp_mv
    return avl.r_amp_mv + abs(v3.s_amp_mv)


# ---------------------------------------------------------------- per lead


def _lead_measurements(dl: Delineation, t: LeadTemplate, config: MeasureConfig) -> LeadMeasurements:
    if not t.usable:
        absent = t.absent or Absent(AbsentReason.LEAD_UNUSABLE, f"lead {t.lead} unusable")
        return LeadMeasurements(
            lead=t.lead,
            p_amp_mv=absent,
            q_amp_mv=absent,
            r_amp_mv=absent,
            s_amp_mv=absent,
            t_amp_mv=absent,
            st_j60_mv=absent,
            q_ms=absent,
            p_ms=absent,
            pr_ms=absent,
            qrs_ms=absent,
            qt_ms=absent,
        )
    f = t.fiducials
    x = t.wide_mv - t.iso_mv
    no_qrs = Absent(AbsentReason.NOT_DELINEATED, f"QRS of {t.lead} not delineated")
    # Amplitudes of the QRS from the global boundaries (the lead's own may miss an
    # isoelectric start); the lead's own where the global ones are absent.
    g = dl.global_
    on = g.qrs_on if g.qrs_on != MISSING else f.qrs_on
    off = g.qrs_off if g.qrs_off != MISSING else f.qrs_off
    q_amp: Value
    r_amp: Value
    s_amp: Value
    q_ms: Value
    if on == MISSING or off == MISSING or off <= on:
        q_amp = r_amp = s_amp = q_ms = no_qrs
        st: Value = no_qrs
    else:
        seg = x[on : off + 1]
        r_idx = int(np.argmax(seg))
        r_amp = max(float(seg[r_idx]), 0.0)
        before, after = seg[: r_idx + 1], seg[r_idx:]
        q_amp = min(float(before.min()), 0.0)
        s_amp = min(float(after.min()), 0.0)
        if q_amp < 0.0 and r_amp > 0.0:
            up = np.flatnonzero(before[np.argmin(before) :] >= 0.0)
            q_len = int(np.argmin(before)) + (int(up[0]) if up.size else 0)
            q_ms = _ms(dl, q_len)
        else:
            q_ms = 0.0
        j60 = off + round(config.st_offset_ms * dl.fs_hz / 1000.0)
        st = (
            float(x[j60])
            if j60 < x.size
            else Absent(AbsentReason.NOT_DELINEATED, "J+60 ms outside the median beat")
        )
    p_amp: Value
    if t.absent_p is not None:
        p_amp = t.absent_p
    elif f.p_peak == MISSING:
        p_amp = Absent(AbsentReason.NOT_DELINEATED, f"P of {t.lead} not delineated")
    else:
        p_amp = float(x[f.p_peak])
    t_amp: Value = (
        Absent(AbsentReason.NOT_DELINEATED, f"T of {t.lead} not delineated")
        if f.t_peak == MISSING
        else float(x[f.t_peak])
    )
    return LeadMeasurements(
        lead=t.lead,
        p_amp_mv=p_amp,
        q_amp_mv=q_amp,
        r_amp_mv=r_amp,
        s_amp_mv=s_amp,
        t_amp_mv=t_amp,
        st_j60_mv=st,
        q_ms=q_ms,
        p_ms=_interval(dl, f.p_off, f.p_on, t.absent_p),
        pr_ms=_interval(dl, f.qrs_on, f.p_on, t.absent_p),
        qrs_ms=_interval(dl, f.qrs_off, f.qrs_on, None),
        qt_ms=_interval(dl, f.t_off, f.qrs_on, None),
    )
