"""LAFB beside a bundle branch block: with a complete RBBB (bifascicular block) the QRS
limit of 120 ms does not apply; with any other wide QRS it does. Constructed
measurements at the rules' boundaries (LUDB's dev records hold no RBBB with LAFB)."""

from __future__ import annotations

from ecg.statements import BBB_QRS_MS, LAFB_AXIS_DEG
from tests.ecg.test_axis import LAFB_LEADS  # qR in aVL, rS in III
from tests.ecg.test_statements import make, said

# The terminal forces of RBBB: a late R' in V1, a late S in I and V6 (mV, last 40 ms).
RBBB_TERMINAL = {"V1": 0.4, "I": -0.2, "V6": -0.2}


def test_crbbb_with_left_anterior_fascicular_pattern_is_bifascicular() -> None:
    """QRS 140 ms with the RBBB terminal forces at -60 deg with qR in aVL and rS in III:
    CRBBB and LAFB, the LAFB's evidence naming the QRS and the block that explains it."""
    found = said(make(qrs_ms=140.0, qrs_axis_deg=-60.0, leads=LAFB_LEADS, terminal=RBBB_TERMINAL))
    assert "CRBBB" in found
    assert found["LAFB"] == {
        "qrs_axis_deg": -60.0,
        "axis_min_deg": LAFB_AXIS_DEG[0],
        "axis_max_deg": LAFB_AXIS_DEG[1],
        "qrs_ms": 140.0,
        "qrs_explained_by": "CRBBB",
    }


def test_bifascicular_block_keeps_the_axis_and_limb_lead_limits() -> None:
    """With CRBBB, LAFB still needs the axis within its range and qR in aVL: at the upper
    limit yes, 1 deg above it or without the q of aVL no (CRBBB stands either way)."""
    upper = LAFB_AXIS_DEG[1]

    def found(axis_deg: float, leads: dict[str, dict[str, float]]) -> set[str]:
        m = make(qrs_ms=BBB_QRS_MS, qrs_axis_deg=axis_deg, leads=leads, terminal=RBBB_TERMINAL)
        return set(said(m))

    assert {"CRBBB", "LAFB"} <= found(upper, LAFB_LEADS)
    assert {"CRBBB", "LAFB"} <= found(LAFB_AXIS_DEG[0], LAFB_LEADS)
    assert "LAFB" not in found(upper + 1.0, LAFB_LEADS)
    assert "CRBBB" in found(upper + 1.0, LAFB_LEADS)
    no_q = {**LAFB_LEADS, "aVL": {"q_amp_mv": 0.0, "r_amp_mv": 0.9, "s_amp_mv": 0.0}}
    assert "LAFB" not in found(-60.0, no_q)


def test_a_wide_qrs_without_rbbb_is_no_lafb() -> None:
    """QRS 140 ms at -60 deg with the LAFB limb leads but no RBBB (an IVCD here): the
    width moves the axis by itself, so no LAFB; the left axis is still said."""
    found = said(make(qrs_ms=140.0, qrs_axis_deg=-60.0, leads=LAFB_LEADS))
    assert "IVCD" in found
    assert "LAFB" not in found
    assert "LAD" in found


def test_lbbb_with_left_axis_is_no_lafb() -> None:
    """CLBBB (QS in V1, broad R in V6 peaking late) at -60 deg with qR in aVL and rS in
    III: CLBBB and LAD, no LAFB (the published LAFB criteria exclude a QRS >= 120 ms)."""
    leads = {
        **LAFB_LEADS,
        "V1": {"r_amp_mv": 0.1, "s_amp_mv": -1.5},
        "V6": {"r_amp_mv": 1.5, "s_amp_mv": 0.0, "q_amp_mv": 0.0},
    }
    found = said(
        make(qrs_ms=150.0, qrs_axis_deg=-60.0, leads=leads, terminal={"V1": -0.3, "V6": 0.5})
    )
    assert {"CLBBB", "LAD"} <= set(found)
    assert "LAFB" not in found
