"""Tests of ecg.scoring: reference extraction, matching counts and totals."""

from __future__ import annotations

import numpy as np
import pytest

from ecg.errors import SignalError
from ecg.scoring import BEAT_SYMBOLS, MATCH_WINDOW_S, Score, reference_beats, score_beats


def test_reference_keeps_only_beat_symbols() -> None:
    """Rhythm, noise and comment annotations are dropped; beats are kept and sorted."""
    samples = [30, 10, 20, 40, 50]
    symbols = ["V", "N", "+", "~", "/"]
    beats = reference_beats(samples, symbols)
    expected = sorted(s for s, y in zip(samples, symbols, strict=True) if y in BEAT_SYMBOLS)
    assert beats.tolist() == expected
    assert "+" not in BEAT_SYMBOLS
    assert "~" not in BEAT_SYMBOLS


def test_reference_rejects_mismatched_lengths() -> None:
    """Samples and symbols of different lengths are a clear error."""
    with pytest.raises(SignalError, match="symbols"):
        reference_beats([1, 2, 3], ["N", "N"])


def test_hand_built_match() -> None:
    """A detection matches within the window only, and each beat matches once."""
    fs_hz = 100.0
    window = int(MATCH_WINDOW_S * fs_hz)
    reference = np.array([100, 200, 300])
    # Two near the first beat (one of them matches), one just inside the window of the
    # last, one exactly at the window's edge of the second, one far from everything.
    detected = np.array([102, 99, 300 - window + 1, 200 + window, 500])
    score = score_beats(reference, detected, fs_hz)
    assert score == Score(tp=2, fp=3, fn=1)


def test_window_edge_follows_wfdb() -> None:
    """As in wfdb's compare_annotations, a distance of exactly the window does not match."""
    fs_hz = 360.0
    window = int(MATCH_WINDOW_S * fs_hz)
    assert score_beats([1000], [1000 + window - 1], fs_hz).tp == 1
    assert score_beats([1000], [1000 + window], fs_hz).tp == 0


def test_empty_inputs() -> None:
    """No reference or no detection gives all FN or all FP, without error."""
    assert score_beats([], [5, 9], 100.0) == Score(tp=0, fp=2, fn=0)
    assert score_beats([5, 9], [], 100.0) == Score(tp=0, fp=0, fn=2)
    assert score_beats([], [], 100.0).f1 == 1.0


def test_ratios_and_totals() -> None:
    """Se, +P and F1 follow their definitions, and totals add counts (gross)."""
    a, b = Score(tp=90, fp=5, fn=10), Score(tp=10, fp=5, fn=0)
    total = Score.total([a, b])
    assert total == Score(tp=100, fp=10, fn=10)
    assert total.sensitivity == pytest.approx(100 / 110)
    assert total.positive_predictivity == pytest.approx(100 / 110)
    assert total.f1 == pytest.approx(200 / 220)


def test_negative_counts_are_refused() -> None:
    """A score cannot hold negative counts."""
    with pytest.raises(ValueError, match=">= 0"):
        Score(tp=-1)
