"""Critical values: each rule on beat trains built for it, streaming equals batch, and a
pause shown while it lasts."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecg.critical import (
    CRITICAL_TEXT,
    Critical,
    CriticalConfig,
    critical_flush,
    critical_start,
    critical_step,
    critical_values,
)
from ecg.errors import ConfigError, SignalError

FS = 250.0


def train(*parts: tuple[float, float]) -> npt.NDArray[np.int64]:
    """Beats (samples at FS) of consecutive parts, each ``(rate_bpm, duration_s)``."""
    times, t = [], 1.0
    for rate_bpm, duration_s in parts:
        end = t + duration_s
        while t < end:
            times.append(t)
            t += 60.0 / rate_bpm
    return np.round(np.asarray(times) * FS).astype(np.int64)


def codes(found: list[Critical]) -> list[str]:
    """The codes of findings, in order."""
    return [c.code for c in found]


def test_pause_of_three_seconds() -> None:
    """An RR of 3.2 s is a PAUSE from its first to its second beat; 2.9 s is not."""
    beats = np.concatenate([train((75, 10)), [train((75, 10))[-1] + int(3.2 * FS)]])
    found = critical_values(beats, FS, int(beats[-1]) + 500)
    assert codes(found) == ["PAUSE"]
    assert (found[0].onset, found[0].offset) == (int(beats[-2]), int(beats[-1]))
    assert found[0].evidence["pause_s"] == pytest.approx(3.2, abs=0.01)
    short = np.concatenate([train((75, 10)), [train((75, 10))[-1] + int(2.9 * FS)]])
    assert critical_values(short, FS, int(short[-1]) + 500) == []


def test_pause_is_shown_while_it_lasts() -> None:
    """Live: once 3 s have passed without a beat, a provisional PAUSE is shown (no wait
    for the next beat), within 0.2 s of the 3 s."""
    beats = train((75, 10))
    state = critical_start(FS)
    shown_at = None
    start = int(beats[-1]) + 1
    critical_step(beats, start, state)
    for now in range(start, start + int(6 * FS), int(0.2 * FS)):
        _, provisional, _ = critical_step(np.zeros(0, np.int64), now, state)
        if "PAUSE" in codes(provisional):
            shown_at = now
            break
    assert shown_at is not None
    assert (shown_at - beats[-1]) / FS == pytest.approx(3.0, abs=0.21)


def test_low_mean_rate() -> None:
    """30/min over 8 intervals is BRADY_35; 40/min is not."""
    beats = train((70, 10), (30, 30), (70, 10))
    found = critical_values(beats, FS, int(beats[-1]) + 10)
    assert "BRADY_35" in codes(found)
    brady = next(c for c in found if c.code == "BRADY_35")
    assert brady.evidence["rate_bpm"] < 35.0
    assert brady.evidence["limit_bpm"] == 35.0
    assert "BRADY_35" not in codes(critical_values(train((40, 60)), FS, 60 * 250 + 500))


def test_sustained_vt_needs_wide_qrs_and_thirty_seconds() -> None:
    """160/min for 40 s with wide QRS is VT; narrow is not; 20 s is not."""
    beats = train((70, 10), (160, 40), (70, 10))
    n = int(beats[-1]) + 10
    vt = [c for c in critical_values(beats, FS, n, wide_qrs=True) if c.code == "VT"]
    assert len(vt) == 1
    assert (vt[0].offset - vt[0].onset) / FS >= 30.0
    assert "VT" not in codes(critical_values(beats, FS, n, wide_qrs=False))
    short = train((70, 10), (160, 20), (70, 10))
    assert "VT" not in codes(critical_values(short, FS, int(short[-1]) + 10, wide_qrs=True))


def test_svt_at_240_per_minute() -> None:
    """240/min narrow for 10 s is SVT_230; 200/min is not; in AF it is AF_RVR_180."""
    beats = train((70, 10), (240, 10), (70, 10))
    n = int(beats[-1]) + 10
    assert "SVT_230" in codes(critical_values(beats, FS, n, wide_qrs=False))
    slower = train((70, 10), (200, 10), (70, 10))
    assert "SVT_230" not in codes(critical_values(slower, FS, int(slower[-1]) + 10))
    af = [(0, n)]
    found = codes(critical_values(beats, FS, n, af_episodes=af))
    assert "AF_RVR_180" in found
    assert "SVT_230" not in found


def test_af_with_rapid_ventricular_rate() -> None:
    """AF at 190/min is AF_RVR_180; AF at 150/min is not; 190/min outside AF is not."""
    beats = train((190, 20))
    n = int(beats[-1]) + 10
    assert codes(critical_values(beats, FS, n, af_episodes=[(0, n)])) == ["AF_RVR_180"]
    slower = train((150, 20))
    m = int(slower[-1]) + 10
    assert critical_values(slower, FS, m, af_episodes=[(0, m)]) == []
    assert "AF_RVR_180" not in codes(critical_values(beats, FS, n))


def test_vf_episodes_are_critical() -> None:
    """A VF/VFL episode of the detector is a VF finding with its onset and offset."""
    found = critical_values(train((70, 30)), FS, 40 * 250, vf_episodes=[(2000, 4000)])
    assert [(c.code, c.onset, c.offset) for c in found] == [("VF", 2000, 4000)]


def test_statement_based_rules() -> None:
    """3AVB below 40/min, WPW with AF and RR < 250 ms, an STE territory, long QT with R-on-T."""

    def found(beats: npt.NDArray[np.int64], **kwargs: object) -> list[str]:
        return codes(critical_values(beats, FS, int(beats[-1]) + 10, **kwargs))  # type: ignore[arg-type]

    assert "3AVB_40" in found(train((35, 60)), statement_codes=["3AVB"])
    assert "3AVB_40" not in found(train((50, 60)), statement_codes=["3AVB"])
    assert "PREEXC_AF" in found(train((260, 5)), statement_codes=["WPW", "AFIB"])
    assert "PREEXC_AF" not in found(train((200, 5)), statement_codes=["WPW", "AFIB"])
    assert "STEMI" in found(train((70, 10)), statement_codes=["STE_INF", "STEMI_PATTERN"])
    assert "STEMI" not in found(train((70, 10)), statement_codes=["STE_INF"])
    ron_t = np.concatenate([train((60, 5)), [train((60, 5))[-1] + int(0.35 * FS)]])
    assert "LQT_RONT" in found(ron_t, qtc_ms=520.0, qt_ms=480.0)
    assert "LQT_RONT" not in found(ron_t, qtc_ms=440.0, qt_ms=400.0)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(1, 30_000), min_size=0, max_size=15, unique=True),
    st.booleans(),
)
def test_streaming_equals_batch(cuts: list[int], wide: bool) -> None:
    """Cut anywhere, the final findings of the stream are the batch ones, each once."""
    beats = train((70, 10), (30, 20), (250, 10), (70, 5))
    beats = np.concatenate(
        [beats, [beats[-1] + int(3.5 * FS)], beats[-1] + int(3.5 * FS) + train((70, 10))]
    )
    n = int(beats[-1]) + 100
    vf = [(5000, 6000)]
    batch = critical_values(beats, FS, n, wide_qrs=wide, vf_episodes=vf)
    state = critical_start(FS, wide_qrs=wide)
    found: list[Critical] = []
    edges = [0, *sorted(c for c in cuts if c < n), n]
    for lo, hi in itertools.pairwise(edges):
        new = beats[(beats >= lo) & (beats < hi)]
        # The VF episode is known, open, once its onset has passed; closed after it.
        known = [(a, None if b > hi else b) for a, b in vf if a < hi]
        final, _, state = critical_step(new, hi, state, vf_episodes=known)
        found += final
    found += critical_flush(state, vf)
    assert sorted(found, key=repr) == sorted(batch, key=repr)
    assert {"BRADY_35", "PAUSE", "VF"} <= set(codes(batch))


def test_text_and_validation() -> None:
    """Every code has both texts; bad codes, spans and settings are refused."""
    for code, (en, zh) in CRITICAL_TEXT.items():
        assert en
        assert zh
        assert Critical(code, 0, 1).text_zh == zh
    with pytest.raises(SignalError):
        Critical("NOPE", 0, 1)
    with pytest.raises(SignalError):
        Critical("VF", 5, 5)
    with pytest.raises(ConfigError):
        CriticalConfig(pause_s=0)
    with pytest.raises(ConfigError):
        CriticalConfig(fast_rr=0)
    with pytest.raises(SignalError):
        critical_values(np.array([5, 3]), FS, 10)
    state = critical_start(FS)
    critical_step(np.array([10]), 20, state)
    with pytest.raises(SignalError):
        critical_step(np.array([5]), 30, state)
    with pytest.raises(SignalError):
        critical_step(np.zeros(0, np.int64), 10, state)
    assert Critical("VF", 250, 500).seconds(FS) == (1.0, 2.0)
