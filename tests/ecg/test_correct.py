"""A reader's corrections of the global fiducials: the measurements follow, refusals
carry stable codes, and no correction gives back the engine's measurements."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecg.correct import (
    CORRECTABLE,
    FiducialError,
    beat_length,
    correct_delineation,
    fiducials_ms,
    remeasure,
)
from ecg.delineate import Delineation
from ecg.measure import QtcFormula, measure
from fixtures.make_fixtures import STANDARD_LEADS, regular_beats, synthetic_ecg

FS_HZ = 500.0


@functools.cache
def _delineation() -> Delineation:
    times = regular_beats(10.0, 72.0)
    signal = synthetic_ecg(FS_HZ, 10.0, times)
    beats = np.round(times * FS_HZ).astype(np.int64)
    return measure(signal, FS_HZ, STANDARD_LEADS, beats).delineation


def test_no_correction_is_the_engine_measurement() -> None:
    """With nothing corrected, the figures are the engine's own."""
    dl = _delineation()
    again = remeasure(dl, {})
    engine = measure(
        synthetic_ecg(FS_HZ, 10.0, regular_beats(10.0, 72.0)),
        FS_HZ,
        STANDARD_LEADS,
        dl.beats,
    )
    assert again.global_ == engine.global_


def test_a_later_qrs_offset_lengthens_qrs() -> None:
    """QRS offset 20 ms later: QRS duration 20 ms longer, QT and QTc unchanged (QT runs
    from QRS onset), the QRS axis still a direction."""
    dl = _delineation()
    before = remeasure(dl, {}).global_
    off = fiducials_ms(dl)["qrs_off"]
    assert off is not None
    after = remeasure(dl, {"qrs_off": off + 20.0}).global_
    assert isinstance(before.qrs_ms, float)
    assert isinstance(after.qrs_ms, float)
    assert after.qrs_ms == pytest.approx(before.qrs_ms + 20.0)
    assert after.qt_ms == before.qt_ms
    assert isinstance(after.qrs_axis_deg, float)


def test_an_earlier_qrs_onset_lengthens_qt_and_qtc() -> None:
    """QRS onset 10 ms earlier: QRS and QT 10 ms longer, QTc longer, PR 10 ms shorter."""
    dl = _delineation()
    before = remeasure(dl, {}).global_
    on = fiducials_ms(dl)["qrs_on"]
    assert on is not None
    after = remeasure(dl, {"qrs_on": on - 10.0}).global_
    assert after.qt_ms == pytest.approx(before.qt_ms + 10.0)  # type: ignore[operator]
    qtc_before = before.qtc_ms[QtcFormula.BAZETT]
    qtc_after = after.qtc_ms[QtcFormula.BAZETT]
    assert qtc_after > qtc_before  # type: ignore[operator]
    assert after.pr_ms == pytest.approx(before.pr_ms - 10.0)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"qrs_off": -1.0}, "fiducial_outside_beat"),
        ({"t_off": 1e6}, "fiducial_outside_beat"),
        ({"t_off": float("nan")}, "fiducial_outside_beat"),
        ({"qrs_off": 0.0}, "fiducials_out_of_order"),
        ({"p_on": 0.0, "p_off": 0.0}, "fiducials_out_of_order"),
        ({"r_peak": 10.0}, "unknown_fiducial"),
    ],
)
def test_refusals_have_stable_codes(change: dict[str, float], code: str) -> None:
    """Outside the beat, out of order, an unknown name: refused with a code and a reason."""
    with pytest.raises(FiducialError) as refused:
        correct_delineation(_delineation(), change)
    assert refused.value.code == code
    assert refused.value.reason


def test_p_may_end_where_qrs_starts() -> None:
    """p_off == qrs_on is allowed (no PR segment); the others are strict."""
    dl = _delineation()
    on = fiducials_ms(dl)["qrs_on"]
    assert on is not None
    assert correct_delineation(dl, {"p_off": on}).global_.p_off == dl.global_.qrs_on


def test_an_absent_wave_needs_both_boundaries() -> None:
    """Where the engine found no P, one boundary is refused; both make a P wave."""
    import dataclasses

    from ecg.delineate import Absent, AbsentReason

    dl = _delineation()
    no_p = dataclasses.replace(
        dl, global_=dataclasses.replace(dl.global_, absent_p=Absent(AbsentReason.NO_P_WAVE))
    )
    assert fiducials_ms(no_p)["p_on"] is None
    with pytest.raises(FiducialError) as refused:
        correct_delineation(no_p, {"p_on": 40.0})
    assert refused.value.code == "fiducials_incomplete"
    on = fiducials_ms(dl)
    assert on["p_on"] is not None
    assert on["p_off"] is not None
    made = remeasure(no_p, {"p_on": on["p_on"], "p_off": on["p_off"]})
    assert made.global_.pr_ms == remeasure(dl, {}).global_.pr_ms


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(CORRECTABLE),
        st.floats(min_value=-200.0, max_value=2000.0, allow_nan=False),
        max_size=5,
    )
)
def test_any_correction_is_accepted_in_order_or_refused(change: dict[str, float]) -> None:
    """Every correction either gives fiducials in order, inside the beat, at the given
    positions (to a sample), or is refused with one of the stable codes."""
    dl = _delineation()
    try:
        corrected = correct_delineation(dl, change)
    except FiducialError as exc:
        refused = exc.code
    else:
        refused = ""
    if refused:
        assert refused in {"fiducial_outside_beat", "fiducials_out_of_order"}
        return
    got = fiducials_ms(corrected)
    for name, ms in change.items():
        assert got[name] == pytest.approx(ms, abs=1000.0 / FS_HZ)
    values = [v for v in got.values() if v is not None]
    assert values == sorted(values)
    assert all(0 <= v < beat_length(dl) * 1000.0 / FS_HZ for v in values)
    remeasure(dl, change)  # measures without raising
