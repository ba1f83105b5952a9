"""Delineation: fiducials of synthetic and LUDB beats, global fiducials, absences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecg.delineate import (
    FIDUCIALS,
    MISSING,
    AbsentReason,
    DelineateConfig,
    _agreed,
    _int_median,
    delineate,
)
from ecg.detect import detect_qrs
from ecg.errors import ConfigError, SignalError
from ecg.record import read_record
from fixtures.make_fixtures import STANDARD_LEADS, regular_beats, synthetic_ecg

FS_HZ = 500.0
# The synthetic beat (fixtures.make_fixtures): P peak 160 ms before R, T peak 250 ms after.
P_PEAK_S = -0.16
T_PEAK_S = 0.25


def _synthetic(rate_bpm: float = 72.0, duration_s: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    times = regular_beats(duration_s, rate_bpm)
    return synthetic_ecg(FS_HZ, duration_s, times), np.round(times * FS_HZ).astype(np.int64)


def test_synthetic_peaks_where_the_waves_were_made() -> None:
    """P and T peaks of every inner beat lie within 12 ms of where the model put them."""
    signal, beats = _synthetic()
    dl = delineate(signal, FS_HZ, STANDARD_LEADS, beats)
    tol = round(0.012 * FS_HZ)
    bf = dl.beat_fiducials
    inner = slice(1, -1)
    for r, p_peak, t_peak in zip(
        beats[inner], bf.column("p_peak")[inner], bf.column("t_peak")[inner], strict=True
    ):
        assert abs(p_peak - (r + P_PEAK_S * FS_HZ)) <= tol
        assert abs(t_peak - (r + T_PEAK_S * FS_HZ)) <= tol
    assert bf.p_present[inner].all()
    on, off = bf.column("qrs_on")[inner], bf.column("qrs_off")[inner]
    assert np.all((on < beats[inner]) & (beats[inner] < off))
    assert np.all((off - on) * 1000 / FS_HZ < 120)


def test_fiducials_are_ordered_within_each_beat() -> None:
    """Within a beat: P on <= P peak <= P off <= QRS on < QRS off <= T peak <= T off."""
    signal, beats = _synthetic(rate_bpm=90.0)
    dl = delineate(signal, FS_HZ, STANDARD_LEADS, beats)
    order = ["p_on", "p_peak", "p_off", "qrs_on", "qrs_off", "t_peak", "t_off"]
    for lead in dl.per_lead:
        cols = np.stack([lead.column(n) for n in order], axis=1)
        for row in cols:
            present = row[row != MISSING]
            assert np.all(np.diff(present) >= 0), (lead.lead, row)


def test_window_shift_moves_fiducials_with_it() -> None:
    """Delineating a window that starts 1 s later gives the same inner fiducials, shifted."""
    signal, beats = _synthetic(duration_s=12.0)
    shift = int(FS_HZ)
    full = delineate(signal, FS_HZ, STANDARD_LEADS, beats)
    part = delineate(signal[shift:], FS_HZ, STANDARD_LEADS, beats[beats >= shift] - shift)
    a = full.beat_fiducials.points[beats >= shift][2:-2]
    b = part.beat_fiducials.points[2:-2]
    assert a.shape == b.shape
    assert np.max(np.abs((a - b)[a != MISSING] - shift)) <= 2


def test_flat_record_has_no_fiducials_and_says_why() -> None:
    """A flat record: every lead unusable, global fiducials absent with a reason."""
    signal = np.zeros((5000, 3))
    dl = delineate(signal, FS_HZ, ["I", "II", "III"], np.array([500, 1500, 2500]))
    assert all(not t.usable for t in dl.templates)
    assert dl.global_.absent_qrs is not None
    assert dl.global_.absent_qrs.reason is AbsentReason.LEAD_UNUSABLE
    assert np.all(dl.beat_fiducials.points == MISSING)


def test_missing_lead_is_not_delineated_others_are() -> None:
    """A lead of NaN is unusable; the other leads are delineated as without it."""
    signal, beats = _synthetic()
    signal[:, 1] = np.nan
    dl = delineate(signal, FS_HZ, STANDARD_LEADS, beats)
    assert not dl.templates[1].usable
    assert dl.templates[1].absent is not None
    assert np.all(dl.per_lead[1].points == MISSING)
    assert dl.global_.absent_qrs is None
    assert np.all(dl.per_lead[0].column("qrs_on")[1:-1] != MISSING)


def test_bad_shapes_and_settings_are_refused() -> None:
    """A signal whose columns do not match the lead names, and bad settings, are refused."""
    with pytest.raises(SignalError):
        delineate(np.zeros((100, 2)), FS_HZ, ["I"], np.array([10]))
    with pytest.raises(ConfigError):
        DelineateConfig(qrs_on=1.5)
    with pytest.raises(ConfigError):
        DelineateConfig(pre_s=0.0)
    assert len(FIDUCIALS) == 9


# ---------------------------------------------------------------- LUDB


def _ludb_points(base: Path, lead: str) -> dict[str, np.ndarray]:
    ann = wfdb.rdann(str(base), lead)
    out: dict[str, list[int]] = {"QRS_on": [], "QRS_off": [], "P_on": [], "T_off": []}
    symbols, samples = ann.symbol, ann.sample
    for i, sym in enumerate(symbols):
        if sym not in "Npt" or i == 0 or i + 1 >= len(symbols):
            continue
        kind = {"N": "QRS", "p": "P", "t": "T"}[sym]
        if symbols[i - 1] == "(" and f"{kind}_on" in out:
            out[f"{kind}_on"].append(int(samples[i - 1]))
        if symbols[i + 1] == ")" and f"{kind}_off" in out:
            out[f"{kind}_off"].append(int(samples[i + 1]))
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("name", ["1", "2", "5", "9", "40"])
def test_ludb_sinus_records_lead_ii(ecg_dir: Path, name: str) -> None:
    """On LUDB sinus records, lead II QRS, P onset and T end match the cardiologists'
    annotation within 150 ms for every annotated wave, with small median errors."""
    base = ecg_dir / "ludb-dev" / name
    if not base.with_suffix(".hea").exists():
        pytest.skip("ludb-dev not present")
    record = read_record(str(base))
    beats = np.unique(np.asarray(detect_qrs(record.signal_mv, record.fs_hz), np.int64))
    dl = delineate(record.signal_mv, record.fs_hz, record.lead_names, beats)
    lead = dl.per_lead[record.lead_names.index("II")]
    ref = _ludb_points(base, "ii")
    limits_ms = {"QRS_on": 20, "QRS_off": 25, "P_on": 30, "T_off": 45}
    for key, limit in limits_ms.items():
        ours = lead.column(key.lower())
        ours = ours[ours != MISSING]
        errors = np.array([np.min(np.abs(ours - r)) for r in ref[key]]) * 1000 / record.fs_hz
        assert errors.size
        assert np.all(errors <= 150), key
        assert np.median(errors) <= limit, (key, np.median(errors))


def test_ludb_atrial_fibrillation_has_no_p(ecg_dir: Path) -> None:
    """LUDB record 8 (atrial fibrillation): no P wave globally, the reason says so."""
    base = ecg_dir / "ludb-dev" / "8"
    if not base.with_suffix(".hea").exists():
        pytest.skip("ludb-dev not present")
    record = read_record(str(base))
    beats = np.unique(np.asarray(detect_qrs(record.signal_mv, record.fs_hz), np.int64))
    dl = delineate(record.signal_mv, record.fs_hz, record.lead_names, beats)
    assert dl.global_.absent_p is not None
    assert dl.global_.absent_p.reason is AbsentReason.NO_P_WAVE
    assert not dl.beat_fiducials.p_present.any()


@pytest.mark.parametrize(
    "values", [[7], [3, 1], [1200, 1203, 1198], [5, 2, 9, 4], [10, 11, 12, 14]]
)
def test_int_median_is_numpy_median_truncated(values: list[int]) -> None:
    """The beat's T or P peak over the clear leads: int(numpy.median(values)), even counts too."""
    assert _int_median(values) == int(np.median(np.asarray(values, dtype=np.int64)))


def test_agreed_takes_the_first_value_enough_leads_confirm() -> None:
    """Earliest (latest) value with n_agree values within tol after (before) it; MISSING ignored."""
    values = [100, MISSING, 130, 104, 131, 102, 160]
    assert _agreed(values, 3, 5, latest=False) == 100
    assert _agreed(values, 2, 5, latest=True) == 131
    assert _agreed([MISSING, MISSING], 2, 5, latest=False) == MISSING
    assert _agreed([150, 100], 2, 5, latest=False) == 150  # none confirmed: the last
