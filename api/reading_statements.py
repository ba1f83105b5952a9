"""The engine's statements made again on a reader's corrected fiducials.

When a reader drags a global fiducial on the median beat, the intervals, QTc and axes
are measured again (:func:`ecg.correct.remeasure`); the coded statements that rest on
them must follow, or the page would propose ``1AVB`` for a PR the reader has just
shortened to 160 ms. This module composes the engine's public functions to do so,
without I/O:

- the **rhythm** statement is kept as the engine made it: it rests on the RR intervals,
  the P waves found beat by beat and the atrial signal, none of which a global fiducial
  moves;
- every **morphology and conduction** statement (AV conduction from PR, bundle branch
  and IVCD from QRS duration, axis, hypertrophy, atria from P duration, ``LNGQT`` from
  QTc, ST at J+60 ms, ectopy) is made again by
  :func:`ecg.statements.statements_from_measurements` on the corrected measurements,
  with the rhythm the engine found: its evidence is that of the corrected figures;
- the order is the engine's (rhythm first, then :data:`ecg.statements.LIBRARY`'s).

Critical values are not made again here: they rest on the beats and the rhythm (pause,
rates, VT, VF) or are the reader's to mark.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ecg.measure import Measurements
    from ecg.statements import Interpretation

__all__ = ["restate"]

# The families of not-assessable notes that statements_from_measurements does not make
# (kept from the engine's interpretation).
_KEPT_FAMILIES = frozenset({"rhythm", "all"})


def restate(
    interpretation: Interpretation,
    corrected: Measurements,
    beats: Sequence[int],
    fs_hz: float,
) -> Interpretation:
    """``interpretation`` with the statements that rest on the measurements made again
    from ``corrected`` (the module notes say which).

    Parameters
    ----------
    interpretation : Interpretation
        The engine's, of the same record window (:attr:`ecg.annotate.Annotation.interpretation`).
    corrected : Measurements
        The measurements on the reader's fiducials (:func:`ecg.correct.remeasure`).
    beats : sequence of int
        The engine's R peaks of that window, samples.
    fs_hz : float
        Sampling rate, Hz.

    Returns
    -------
    Interpretation
        A new one (the engine's is not changed); the same when the record holds no ECG.
    """
    from ecg.statements import LIBRARY, statements_from_measurements

    if not interpretation.ecg_present:
        return interpretation
    rhythm = interpretation.rhythm
    rhythm_code = None if rhythm is None or rhythm.code is None else rhythm.code.value
    kept = [s for s in interpretation.statements[:1] if s.code == rhythm_code]
    found, gaps = statements_from_measurements(corrected, rhythm, list(beats), fs_hz)
    order = {code: i for i, code in enumerate(LIBRARY)}
    missing = [n for n in interpretation.not_assessable if n.family in _KEPT_FAMILIES]
    return dataclasses.replace(
        interpretation,
        statements=kept + sorted(found, key=lambda s: order[s.code]),
        not_assessable=missing + gaps,
    )
