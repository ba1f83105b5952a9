"""Scoring beat detections against reference annotations.

Design notes
------------
- The protocol is the usual one for QRS detectors (see ``DESIGN.md``): the reference
  is the beat annotations of a record (symbols :data:`BEAT_SYMBOLS`), a detection
  matches a reference beat within :data:`MATCH_WINDOW_S` (150 ms), each beat matches
  at most once, and totals over records are gross (sums of TP, FP and FN).
- Matching is ``wfdb.processing.compare_annotations`` (one to one; a pair matches when
  its distance is below ``int(window_s * fs_hz)`` samples, wfdb's convention), the
  implementation the figures quoted for xqrs and gqrs were computed with; empty inputs,
  which it does not handle, are scored here directly.
- No I/O here: callers read annotations (``wfdb.rdann``) and pass sample indices.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from wfdb import processing

from ecg.errors import SignalError

__all__ = [
    "BEAT_SYMBOLS",
    "MATCH_WINDOW_S",
    "Score",
    "reference_beats",
    "score_beats",
]

# The WFDB annotation codes that are beats (everything else is rhythm, noise, comments).
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
MATCH_WINDOW_S = 0.15

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Score:
    """Beat counts of one comparison; ``+`` adds counts (gross totals).

    Parameters
    ----------
    tp : int
        Detections that match a reference beat.
    fp : int
        Detections that match none.
    fn : int
        Reference beats that no detection matches.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __post_init__(self) -> None:
        if min(self.tp, self.fp, self.fn) < 0:
            raise ValueError(f"beat counts must be >= 0, got {self}")

    def __add__(self, other: Score) -> Score:
        return Score(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def sensitivity(self) -> float:
        """Se = TP / (TP + FN), as a fraction (1.0 when there is no reference beat)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def positive_predictivity(self) -> float:
        """+P = TP / (TP + FP), as a fraction (1.0 when nothing was detected)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def f1(self) -> float:
        """F1 = 2 TP / (2 TP + FP + FN), as a fraction (1.0 when all counts are 0)."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 1.0

    @staticmethod
    def total(scores: Iterable[Score]) -> Score:
        """Gross total of several scores."""
        out = Score()
        for score in scores:
            out = out + score
        return out


def reference_beats(samples: npt.ArrayLike, symbols: Iterable[str]) -> IntArray:
    """Sample indices of the beat annotations among ``samples``/``symbols``.

    Parameters
    ----------
    samples : array_like of int
        Annotation sample indices (``wfdb.Annotation.sample``).
    symbols : iterable of str
        Their symbols (``wfdb.Annotation.symbol``), same length.
    """
    samples_arr = np.asarray(samples, dtype=np.int64)
    keep = np.array([symbol in BEAT_SYMBOLS for symbol in symbols], dtype=bool)
    if keep.shape != samples_arr.shape:
        raise SignalError(f"{samples_arr.shape[0]} annotation samples but {keep.shape[0]} symbols")
    return np.sort(samples_arr[keep])


def score_beats(
    reference: npt.ArrayLike,
    detected: npt.ArrayLike,
    fs_hz: float,
    window_s: float = MATCH_WINDOW_S,
) -> Score:
    """Score detections against reference beats.

    Parameters
    ----------
    reference, detected : array_like of int
        Beat sample indices.
    fs_hz : float
        Sampling rate in Hz, to turn ``window_s`` into samples.
    window_s : float
        Match window in seconds (150 ms by default).
    """
    if not (fs_hz > 0 and window_s >= 0):
        raise ValueError(f"fs_hz must be > 0 and window_s >= 0, got {fs_hz}, {window_s}")
    ref = np.unique(np.asarray(reference, dtype=np.int64).ravel())
    det = np.unique(np.asarray(detected, dtype=np.int64).ravel())
    if ref.size == 0 or det.size == 0:
        return Score(tp=0, fp=int(det.size), fn=int(ref.size))
    comparison = processing.compare_annotations(ref, det, int(window_s * fs_hz))
    return Score(tp=int(comparison.tp), fp=int(comparison.fp), fn=int(comparison.fn))
