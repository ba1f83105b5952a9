"""Compiled wave finders of the delineation against the numpy forms they replace: the
same index (or value) bit for bit, the P correlation within 1e-12, and the same
delineation of real records."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ecg import _delineate_kernels as kernels
from ecg import delineate as delineate_module
from ecg.delineate import delineate
from ecg.detect import detect_qrs
from ecg.record import read_record

FloatArray = npt.NDArray[np.float64]

# Segments as the wave finders see them: smooth waves, flat runs and exact ties.
values = st.one_of(st.floats(-2.0, 2.0), st.sampled_from([0.0, 0.25, -0.25, 1.0]))
segments = hnp.arrays(np.float64, st.integers(0, 80), elements=values)


def extremum_numpy(y: FloatArray, sign: int) -> int:
    if y.size < 3:
        return -1
    dy = np.diff(y)
    maxima = np.flatnonzero((dy[:-1] > 0) & (dy[1:] <= 0)) + 1
    minima = np.flatnonzero((dy[:-1] < 0) & (dy[1:] >= 0)) + 1
    cand = np.concatenate(
        [maxima if sign >= 0 else maxima[:0], minima if sign <= 0 else minima[:0]]
    )
    if sign > 0:
        cand = cand[y[cand] > 0]
    elif sign < 0:
        cand = cand[y[cand] < 0]
    if cand.size == 0:
        return -1
    return int(cand[np.argmax(np.abs(y[cand]))])


def corner_after_numpy(y: FloatArray, lo: int, hi: int, w: int, sign: float) -> int:
    if hi <= lo:
        return -1
    base = max(0, lo - w)
    c = np.concatenate(([0.0], np.cumsum(y[base:hi])))
    t = np.arange(lo, hi)
    start = np.maximum(t - w, 0)
    area = (c[t + 1 - base] - c[start - base]) - (t + 1 - start) * y[t]
    return int(t[np.argmax(sign * area)])


def corner_before_numpy(y: FloatArray, lo: int, hi: int, w: int, sign: float) -> int:
    if hi <= lo:
        return -1
    top = min(y.size, hi + w)
    c = np.concatenate(([0.0], np.cumsum(y[lo:top])))
    t = np.arange(lo, hi)
    stop = np.minimum(t + w + 1, y.size)
    area = (c[stop - lo] - c[t - lo]) - (stop - t) * y[t]
    return int(t[np.argmax(sign * area)])


def knee_numpy(y: FloatArray, lo: int, hi: int, sign: float) -> int:
    if hi - lo < 2:
        return -1
    seg = y[lo : hi + 1]
    chord = np.linspace(seg[0], seg[-1], seg.size)
    return lo + int(np.argmax(sign * (chord - seg)))


def peak_between_numpy(y: FloatArray, on: int, off: int, r_fraction: float) -> int:
    seg = y[on : off + 1]
    seg = seg - np.linspace(seg[0], seg[-1], seg.size)
    up, down = int(np.argmax(seg)), int(np.argmin(seg))
    if seg[up] >= r_fraction * max(seg[up], -seg[down]):
        return on + up
    return on + down


def p_correlation_numpy(lp: FloatArray, start: int, p_ref: FloatArray) -> float:
    seg = lp[start : start + p_ref.size]
    seg = seg - np.linspace(seg[0], seg[-1], seg.size)
    denom = float(np.linalg.norm(seg) * np.linalg.norm(p_ref))
    return float(seg @ p_ref) / denom if denom > 0 else float("nan")


def p_wave_numpy(
    sm: FloatArray,
    qrs_on: int,
    lo: int,
    search_n: int,
    min_n: int,
    guard: int,
    near: int,
    radius: int,
    sign: int,
    w: int,
    tail: int,
) -> tuple[int, int, int, float]:
    start = max(lo, qrs_on - search_n)
    if qrs_on - start < min_n:
        return -1, -1, -1, 0.0
    seg = sm[start : qrs_on + 1]
    k = max(1, seg.size - 1 - guard)
    y = seg - (seg[0] + (seg[k] - seg[0]) * np.arange(seg.size) / k)
    search = y[: max(3, y.size - guard)]
    if near != -1:
        a = max(0, near - start - radius)
        b = min(search.size, near - start + radius + 1)
        if b - a < 3:
            return -1, -1, -1, 0.0
        pp = extremum_numpy(search[a:b], sign)
        pp = -1 if pp == -1 else pp + a
    else:
        pp = extremum_numpy(search, sign)
    if pp == -1:
        return -1, -1, -1, 0.0
    amp = float(y[pp])
    s = 1.0 if amp > 0 else -1.0
    p_on = corner_before_numpy(y, 0, pp, w, s)
    p_off = corner_after_numpy(y, pp + 1, max(pp + 2, y.size - tail), w, s)
    return start + p_on, start + pp, start + p_off, amp


def t_wave_numpy(
    sm: FloatArray,
    start: int,
    end: int,
    min_n: int,
    near: int,
    radius: int,
    iso: float,
    sign: int,
    t_min_mv: float,
    w: int,
    on_lo: int,
) -> tuple[int, int, int]:
    if end - start < min_n:
        return -1, -1, -1
    y = sm[start:end] - iso
    a, b = 0, y.size
    if near != -1:
        a, b = max(0, near - radius - start), min(y.size, near + radius + 1 - start)
        if b - a < 3:
            return -1, -1, -1
    tp = extremum_numpy(y[a:b], sign)
    if tp == -1 or abs(y[a + tp]) < t_min_mv:
        return -1, -1, -1
    tp += start + a
    s = 1.0 if sm[tp] - iso > 0 else -1.0
    return knee_numpy(sm, on_lo, tp, s), tp, corner_after_numpy(sm, tp + 1, end, w, s)


def first_quiet_numpy(below: npt.NDArray[np.bool_], hold: int) -> int:
    if below.size == 0:
        return -1
    edges = np.diff(np.concatenate(([0], below.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    ok = (stops - starts >= hold) | (stops == below.size)
    return int(starts[ok][0]) if np.any(ok) else -1


def qrs_bounds_numpy(
    slope: FloatArray,
    pk: int,
    lo: int,
    hi: int,
    w6: int,
    search: int,
    gap: int,
    hold: int,
    sig_fraction: float,
    on_fraction: float,
    off_fraction: float,
    floor: float,
) -> tuple[int, int]:
    if pk == -1 or not lo <= pk < hi:
        return -1, -1
    big = float(slope[max(lo, pk - w6) : min(hi, pk + w6 + 1)].max())
    if not big > 0:
        return -1, -1
    a = max(lo, pk - search)
    sig = np.flatnonzero(slope[a : pk + 1] >= sig_fraction * big)
    first = pk
    if sig.size:
        first = a + int(sig[-1])
        for i in sig[::-1]:
            if first - (a + int(i)) <= gap:
                first = a + int(i)
            else:
                break
    run = first_quiet_numpy(slope[a : first + 1][::-1] < max(on_fraction * big, floor), hold)
    on = first - run if run != -1 else -1
    b = min(hi, pk + search + 1)
    sig = np.flatnonzero(slope[pk:b] >= sig_fraction * big)
    last = pk
    if sig.size:
        last = pk + int(sig[0])
        for i in sig:
            if pk + int(i) - last <= gap:
                last = pk + int(i)
            else:
                break
    run = first_quiet_numpy(slope[last:b] < max(off_fraction * big, floor), hold)
    off = last + run if run != -1 else -1
    return on, off


@settings(max_examples=300, deadline=None)
@given(segments, st.sampled_from([-1, 0, 1]), st.sampled_from([0.0, 0.1, -0.3]))
def test_extremum_is_the_numpy_one(y: FloatArray, sign: int, offset: float) -> None:
    """The largest local extremum (of a sign) of y - offset, ties to the numpy order."""
    lo, hi = min(2, y.size), y.size
    expected = extremum_numpy(y[lo:hi] - offset, sign)
    assert kernels.extremum(y, lo, hi, offset, sign) == expected


@settings(max_examples=300, deadline=None)
@given(segments, st.data(), st.integers(1, 12), st.sampled_from([-1.0, 1.0]))
def test_corners_are_the_numpy_ones(
    y: FloatArray, data: st.DataObject, w: int, sign: float
) -> None:
    """Zhang's area corners after and before a wave, on any range of the segment (one
    reaching past its end stops there)."""
    lo = data.draw(st.integers(0, max(0, y.size)))
    hi = data.draw(st.integers(lo, max(lo, y.size)))
    assert kernels.corner_after(y, lo, hi, w, sign) == corner_after_numpy(y, lo, hi, w, sign)
    assert kernels.corner_before(y, lo, hi, w, sign) == corner_before_numpy(y, lo, hi, w, sign)
    # Past the end (where numpy raised): the segment's end.
    assert kernels.corner_after(y, lo, y.size + 3, w, sign) == corner_after_numpy(
        y, lo, y.size, w, sign
    )


@settings(max_examples=300, deadline=None)
@given(segments, st.data(), st.sampled_from([-1.0, 1.0]), st.sampled_from([0.0, 0.4, 1.0]))
def test_chord_measures_are_the_numpy_ones(
    y: FloatArray, data: st.DataObject, sign: float, r_fraction: float
) -> None:
    """The knee under the chord and the R peak above it, numpy.linspace's chord."""
    lo = data.draw(st.integers(0, max(0, y.size - 1)))
    hi = data.draw(st.integers(lo, max(lo, y.size - 1)))
    assert kernels.knee(y, lo, hi, sign) == knee_numpy(y, lo, hi, sign)
    if y.size and hi > lo:
        expected = peak_between_numpy(y, lo, hi, r_fraction)
        assert kernels.peak_between(y, lo, hi, r_fraction) == expected


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(60, 160), elements=values),
    st.data(),
    st.sampled_from([-1, 0, 1]),
)
def test_p_wave_is_the_numpy_one(sm: FloatArray, data: st.DataObject, sign: int) -> None:
    """The P wave before a QRS onset: the window, its baseline line, the extremum
    (near the template's peak or anywhere) and both corners, bit for bit."""
    qrs_on = data.draw(st.integers(40, sm.size - 1))
    lo = data.draw(st.integers(0, qrs_on))
    near = data.draw(st.integers(-1, qrs_on))
    args = (sm, qrs_on, lo, 40, 10, 12, near, 8, sign, 10, 5)
    assert tuple(kernels.p_wave(*args)) == p_wave_numpy(*args)


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(60, 160), elements=values),
    st.data(),
    st.sampled_from([-1, 0, 1]),
    st.sampled_from([0.0, 0.05]),
)
def test_t_wave_is_the_numpy_one(
    sm: FloatArray, data: st.DataObject, sign: int, t_min_mv: float
) -> None:
    """The T wave after a QRS: the extremum from the baseline (near the template's peak
    or anywhere), the amplitude floor, its end and onset, bit for bit."""
    start = data.draw(st.integers(1, sm.size - 2))
    end = data.draw(st.integers(start, sm.size))
    near = data.draw(st.integers(-1, sm.size - 1))
    iso = data.draw(st.sampled_from([0.0, 0.1, -0.2]))
    args = (sm, start, end, 10, near, 8, iso, sign, t_min_mv, 10, start - 1)
    assert tuple(kernels.t_wave(*args)) == t_wave_numpy(*args)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 300), elements=st.floats(-1e3, 1e3)), st.data())
def test_mean_is_numpys(a: FloatArray, data: st.DataObject) -> None:
    """The mean of any slice is numpy's bit for bit (its pairwise summation), NaN when
    empty; a slice past the end stops there."""
    lo = data.draw(st.integers(0, a.size))
    hi = data.draw(st.integers(lo, a.size + 5))
    got = kernels.mean(a, lo, hi)
    if a[lo:hi].size == 0:
        assert np.isnan(got)
    else:
        assert got == np.mean(a[lo:hi])


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 120), elements=st.floats(0.0, 1.0)),
    st.data(),
    st.integers(1, 4),
    st.sampled_from([0.0, 0.2]),
)
def test_qrs_bounds_are_the_numpy_ones(
    slope: FloatArray, data: st.DataObject, hold: int, floor: float
) -> None:
    """QRS onset and offset from a slope signal: significance, gaps, the quiet runs
    (one reaching the window's edge counts), any peak and window."""
    lo = data.draw(st.integers(0, slope.size - 1))
    hi = data.draw(st.integers(lo, slope.size))
    pk = data.draw(st.integers(-1, slope.size - 1))
    args = (slope, pk, lo, hi, 5, data.draw(st.integers(2, 60)), data.draw(st.integers(1, 6)))
    fractions = (0.3, data.draw(st.sampled_from([0.05, 0.1, 0.5])), 0.1)
    expected = qrs_bounds_numpy(*args, hold, *fractions, floor)
    assert tuple(kernels.qrs_bounds(*args, hold, *fractions, floor)) == expected


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, st.integers(30, 80), elements=values), st.integers(2, 20))
def test_p_correlation_is_the_numpy_one(lp: FloatArray, size: int) -> None:
    """Correlation of a chord-less window with a reference P, within 1e-12."""
    p_ref = np.sin(np.linspace(0.0, np.pi, size))
    p_ref -= np.linspace(p_ref[0], p_ref[-1], size)
    for start in (0, lp.size - size):
        got = kernels.p_correlation(lp, start, p_ref)
        expected = p_correlation_numpy(lp, start, p_ref)
        assert (np.isnan(got) and np.isnan(expected)) or abs(got - expected) <= 1e-12


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 30), st.integers(0, 2**32 - 1), st.booleans())
def test_median_rows_is_numpys(n_beats: int, span: int, seed: int, ties: bool) -> None:
    """The median beat equals np.median(y[rows], axis=0): odd and even beat counts,
    a few beats (sorted) and many (selected), ties."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(400)
    if ties:
        y = np.round(y * 2.0) / 2.0
    starts = rng.integers(0, 400 - span, n_beats)
    rows = starts[:, None] + np.arange(span)[None, :]
    assert np.array_equal(kernels.median_rows(y, rows), np.median(y[rows], axis=0))


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(0, 40), st.integers(1, 4)),
        elements=st.one_of(values, st.sampled_from([np.nan, np.inf, -np.inf, -0.0])),
    )
)
def test_second_difference_peak_is_the_numpy_one(x: FloatArray) -> None:
    """The largest second difference over the leads, missing samples as 0: numpy's."""
    assert np.array_equal(kernels.second_difference_peak(x), second_difference_peak_numpy(x))


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(0, 300)),
        elements=st.one_of(
            st.floats(-1e300, 1e300),
            st.sampled_from([0.0, 1.0, -1.0, 2.5e-300, 1e300]),
        ),
    )
)
def test_row_medians_are_numpys(a: FloatArray) -> None:
    """Each row's median is numpy's bit for bit: odd and even lengths, ties, tiny and
    huge values of either sign (more than one radix level), empty rows (NaN)."""
    a = np.where(a == 0.0, 0.0, a)  # +0.0 only, as the delineation's noise rows hold
    with np.errstate(all="ignore"):
        expected = np.median(a, axis=1) if a.shape[1] else np.full(a.shape[0], np.nan)
    np.testing.assert_array_equal(kernels.row_medians(a), expected)


def test_row_medians_of_a_long_row() -> None:
    """A 10 s noise row (5000 absolute values, many in one bucket): numpy's median."""
    rng = np.random.default_rng(7)
    a = np.abs(rng.standard_normal((3, 5000))) * np.array([[1e-3], [1.0], [1e3]])
    a[1, :2500] = 0.25  # half the row tied
    np.testing.assert_array_equal(kernels.row_medians(a), np.median(a, axis=1))


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 3), st.integers(2, 60)),
        elements=st.floats(-1e300, 1e300),
    )
)
def test_abs_gradient_rows_is_numpys(a: FloatArray) -> None:
    """|numpy.gradient| along the rows, bit for bit: ends and interior, any magnitude."""
    with np.errstate(over="ignore"):
        expected = np.abs(np.gradient(a, axis=1))
    assert kernels.abs_gradient_rows(a).tobytes() == expected.tobytes()


def second_difference_peak_numpy(x: FloatArray) -> FloatArray:
    if x.shape[0] < 3:
        return np.zeros(0)
    z = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return np.asarray(np.abs(z[2:] - 2.0 * z[1:-1] + z[:-2]).max(axis=1))


def _numpy_kernels() -> SimpleNamespace:
    """The numpy forms, with the kernels' signatures."""
    return SimpleNamespace(
        extremum=lambda y, lo, hi, offset, sign: extremum_numpy(y[lo:hi] - offset, sign),
        corner_after=corner_after_numpy,
        corner_before=corner_before_numpy,
        knee=knee_numpy,
        peak_between=peak_between_numpy,
        p_correlation=p_correlation_numpy,
        median_rows=lambda y, rows: np.median(y[rows], axis=0),
        qrs_bounds=qrs_bounds_numpy,
        p_wave=p_wave_numpy,
        t_wave=t_wave_numpy,
        mean=lambda a, lo, hi: np.mean(a[lo:hi]),
        second_difference_peak=second_difference_peak_numpy,
        row_medians=lambda a: np.median(a, axis=1),
        abs_gradient_rows=lambda a: np.abs(np.gradient(a, axis=1)),
    )


@pytest.mark.parametrize("name", ["8", "35", "40", "90"])
def test_delineation_with_kernels_is_the_numpy_one(
    ecg_dir: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LUDB records (AF, flutter, sinus, paced): every fiducial of every beat and lead
    and of the median beats is the one the numpy forms give."""
    base = ecg_dir / "ludb-dev" / name
    if not base.with_suffix(".hea").exists():
        pytest.skip("ludb-dev not present")
    record = read_record(str(base))
    beats = np.unique(np.asarray(detect_qrs(record.signal_mv, record.fs_hz), np.int64))
    compiled = delineate(record.signal_mv, record.fs_hz, record.lead_names, beats)
    monkeypatch.setattr(delineate_module, "_kernels", _numpy_kernels())
    plain = delineate(record.signal_mv, record.fs_hz, record.lead_names, beats)
    assert np.array_equal(compiled.beat_fiducials.points, plain.beat_fiducials.points)
    for ours, theirs in zip(compiled.per_lead, plain.per_lead, strict=True):
        assert np.array_equal(ours.points, theirs.points), ours.lead
    assert [t.fiducials for t in compiled.templates] == [t.fiducials for t in plain.templates]
    assert compiled.global_ == plain.global_
    assert (compiled.beat_fiducials.p_present == plain.beat_fiducials.p_present).all()
