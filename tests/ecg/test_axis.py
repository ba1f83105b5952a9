"""The frontal QRS axis (net deflection in I and aVF) and LAFB at its thresholds."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
import wfdb
from numpy.typing import NDArray

from ecg.delineate import Absent, AbsentReason, Delineation
from ecg.detect import detect_qrs
from ecg.measure import measure, measure_delineation
from ecg.statements import LAFB_AXIS_DEG, statements_from_measurements
from tests.ecg.test_statements import make, said

FS = 500.0
LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")
QRS_ON, QRS_OFF = 200, 245  # the QRS of tests.ecg.test_statements.make
# Each limb lead sees the frontal vector E as gain * |E| * cos(theta - lead angle):
# Einthoven's leads with gain 1, Goldberger's augmented leads with gain sqrt(3)/2.
LEAD_DEG = {"I": 0.0, "II": 60.0, "III": 120.0, "aVR": -150.0, "aVL": -30.0, "aVF": 90.0}
LEAD_GAIN = {n: 1.0 if n in ("I", "II", "III") else math.sqrt(3.0) / 2.0 for n in LIMB}


def _wave(centre: int, sigma_ms: float) -> NDArray[np.float64]:
    t = (np.arange(600, dtype=np.float64) - centre) * 1000.0 / FS
    pulse: NDArray[np.float64] = np.exp(-0.5 * (t / sigma_ms) ** 2)
    return pulse


def _limb_leads(components: list[tuple[float, float, int, float]]) -> dict[str, np.ndarray]:
    """Limb-lead QRS templates of a vector made of components (mV, degrees, centre
    sample, width ms), each a Gaussian pulse along its own direction."""
    out = {}
    for name in LIMB:
        x = np.zeros(600)
        for amp_mv, angle_deg, centre, sigma_ms in components:
            gain = LEAD_GAIN[name] * math.cos(math.radians(angle_deg - LEAD_DEG[name]))
            x += amp_mv * gain * _wave(centre, sigma_ms)
        out[name] = x
    return out


def _delineation(leads: dict[str, np.ndarray], unusable: tuple[str, ...] = ()) -> Delineation:
    """The statements tests' normal record (QRS 200-245) with these limb-lead templates."""
    base = make().delineation
    templates = tuple(
        dataclasses.replace(
            t,
            wide_mv=leads.get(t.lead, t.wide_mv),
            lp_mv=leads.get(t.lead, t.lp_mv),
            usable=t.lead not in unusable,
        )
        for t in base.templates
    )
    return dataclasses.replace(base, templates=templates)


def _qrs_axis(leads: dict[str, np.ndarray], unusable: tuple[str, ...] = ()) -> float | Absent:
    return measure_delineation(_delineation(leads, unusable)).global_.qrs_axis_deg


@pytest.mark.parametrize("angle_deg", [-75.0, -45.0, -30.0, 0.0, 29.0, 60.0, 95.0, 170.0])
def test_one_direction_vector_gives_its_angle(angle_deg: float) -> None:
    """A QRS whose vector keeps one direction reads that direction, from I and aVF and
    from II and III when I is unusable (every method agrees on such a QRS)."""
    leads = _limb_leads([(1.2, angle_deg, 225, 12.0)])
    assert _qrs_axis(leads) == pytest.approx(angle_deg, abs=0.01)
    assert _qrs_axis(leads, unusable=("I",)) == pytest.approx(angle_deg, abs=0.01)


def test_net_deflection_not_area_decides_a_wide_r_with_a_deep_narrow_s() -> None:
    """A broad low R towards +20 deg and a narrow deep S towards -100 deg: aVF's net area is
    positive but its deflection (R minus the deeper S) negative, so the axis is the one
    the peak amplitudes give, above the x axis by the areas."""
    broad, narrow = (1.0, 20.0, 215, 10.0), (0.8, -100.0, 236, 3.0)
    leads = _limb_leads([broad, narrow])
    deflection = {n: leads[n][QRS_ON : QRS_OFF + 1] for n in ("I", "aVF")}
    net = {n: max(x.max(), 0.0) + min(x.min(), 0.0) for n, x in deflection.items()}
    area = {n: float(np.sum(x)) for n, x in deflection.items()}
    assert area["aVF"] > 0.0 > net["aVF"]
    expected = math.degrees(math.atan2(2.0 * net["aVF"] / math.sqrt(3.0), net["I"]))
    axis = _qrs_axis(leads)
    assert axis == pytest.approx(expected, abs=0.01)
    assert isinstance(axis, float)
    assert axis < 0.0


def test_isoelectric_limb_leads_make_the_axis_indeterminate() -> None:
    """Limb leads within a few hundredths of a mV have no QRS direction: indeterminate."""
    axis = _qrs_axis(_limb_leads([(0.02, 40.0, 225, 12.0)]))
    assert isinstance(axis, Absent)
    assert axis.reason is AbsentReason.INDETERMINATE


def test_missing_frontal_leads_give_lead_missing() -> None:
    """Without I, aVF, II and III there is no axis: lead missing, no exception."""
    axis = _qrs_axis(_limb_leads([(1.0, 40.0, 225, 12.0)]), unusable=("I", "II", "III", "aVF"))
    assert isinstance(axis, Absent)
    assert axis.reason is AbsentReason.LEAD_MISSING


LAFB_LEADS = {
    "aVL": {"q_amp_mv": -0.1, "r_amp_mv": 0.9, "s_amp_mv": 0.0},
    "III": {"q_amp_mv": 0.0, "r_amp_mv": 0.1, "s_amp_mv": -0.9},
}


def test_lafb_at_its_axis_and_duration_thresholds() -> None:
    """qR in aVL and rS in III with a narrow QRS: LAFB from the upper axis limit down to
    -90 deg, not above it, not at QRS 120 ms, and the evidence names the limits."""
    upper = LAFB_AXIS_DEG[1]
    found = said(make(qrs_axis_deg=upper, leads=LAFB_LEADS))
    assert found["LAFB"] == {
        "qrs_axis_deg": upper,
        "axis_min_deg": LAFB_AXIS_DEG[0],
        "axis_max_deg": upper,
    }
    assert "LAFB" in said(make(qrs_axis_deg=-90.0, leads=LAFB_LEADS))
    assert "LAFB" not in said(make(qrs_axis_deg=upper + 1.0, leads=LAFB_LEADS))
    assert "LAFB" not in said(make(qrs_axis_deg=-91.0, leads=LAFB_LEADS))
    assert "LAFB" in said(make(qrs_axis_deg=upper, qrs_ms=118.0, leads=LAFB_LEADS))
    assert "LAFB" not in said(make(qrs_axis_deg=upper, qrs_ms=120.0, leads=LAFB_LEADS))


def test_lafb_needs_qr_in_avl_and_rs_in_iii() -> None:
    """At -60 deg, no q in aVL or an R taller than the S in III: no LAFB (left axis only)."""
    no_q = {**LAFB_LEADS, "aVL": {"q_amp_mv": 0.0, "r_amp_mv": 0.9, "s_amp_mv": 0.0}}
    tall_r = {**LAFB_LEADS, "III": {"q_amp_mv": -0.5, "r_amp_mv": 0.3, "s_amp_mv": -0.1}}
    for leads in (no_q, tall_r):
        found = said(make(qrs_axis_deg=-60.0, leads=leads))
        assert "LAFB" not in found
        assert "LAD" in found


def _ludb_mv(base: Path) -> tuple[NDArray[np.float64], float, list[str], str]:
    """A LUDB record in mV from its µV samples (its header gains are per-lead ranges)."""
    raw = wfdb.rdrecord(str(base), physical=False)
    signal = (raw.d_signal.astype(np.float64) - np.asarray(raw.baseline)) / 1000.0
    names = [{"avr": "aVR", "avl": "aVL", "avf": "aVF"}.get(n, n.upper()) for n in raw.sig_name]
    return signal, float(raw.fs), names, "\n".join(raw.comments)


LUDB_SAMPLE = [str(n) for n in range(1, 101, 5)]


@pytest.mark.parametrize("name", LUDB_SAMPLE)
def test_ludb_qrs_axis_is_the_net_deflection_of_i_and_avf(ecg_dir: Path, name: str) -> None:
    """On LUDB records (µV samples), the QRS axis is the direction of I's and aVF's net
    deflections, R + min(Q, S) of their per-lead measurements on the same median beat."""
    base = ecg_dir / "ludb-dev" / name
    if not base.with_suffix(".hea").exists():
        pytest.skip("ludb-dev not present")
    signal, fs_hz, names, text = _ludb_mv(base)
    beats = np.unique(np.asarray(detect_qrs(signal, fs_hz), np.int64))
    m = measure(signal, fs_hz, names, beats)
    axis = m.global_.qrs_axis_deg
    if isinstance(axis, Absent):
        assert re.search("pacing|P-synchrony", text, re.IGNORECASE), axis
        return
    net = {}
    for lead in ("I", "aVF"):
        waves = [getattr(m.per_lead[lead], f) for f in ("q_amp_mv", "r_amp_mv", "s_amp_mv")]
        for wave in waves:
            assert isinstance(wave, float), (lead, wave)
        q, r, s = (float(w) for w in waves)
        net[lead] = r + min(q, s)
    expected = math.degrees(math.atan2(2.0 * net["aVF"] / math.sqrt(3.0), net["I"]))
    assert axis == pytest.approx(expected, abs=1e-6)


def test_ludb_lafb_only_where_the_cardiologists_said_it(ecg_dir: Path) -> None:
    """On every LUDB dev record its cardiologists call "left axis deviation", an LAFB we
    state is one of theirs (none false), and the rule finds some of theirs."""
    folder = ecg_dir / "ludb-dev"
    if not (folder / "1.hea").exists():
        pytest.skip("ludb-dev not present")
    ours, theirs = set(), set()
    for hea in sorted(folder.glob("*.hea"), key=lambda p: int(p.stem)):
        signal, fs_hz, names, text = _ludb_mv(hea.with_suffix(""))
        if "Electric axis of the heart: left axis deviation" not in text:
            continue
        beats = np.unique(np.asarray(detect_qrs(signal, fs_hz), np.int64))
        found, _ = statements_from_measurements(
            measure(signal, fs_hz, names, beats), None, beats, fs_hz
        )
        if "Left anterior hemiblock" in text:
            theirs.add(hea.stem)
        if any(s.code == "LAFB" for s in found):
            ours.add(hea.stem)
    assert theirs
    assert ours <= theirs
    assert ours
