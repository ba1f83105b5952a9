"""A reader's corrections of the global fiducials, and the measurements made again.

Design notes
------------
- A reader drags the global fiducials on the median beat (the ECG centre's reading
  page); the corrected positions are in **ms from the median beat's first sample**
  (template coordinates times ``1000 / fs_hz``), the coordinates the page draws in.
  :func:`correct_delineation` turns them into template samples, checks them and answers
  a :class:`~ecg.delineate.Delineation` with those global fiducials replaced;
  :func:`remeasure` measures it again with :func:`ecg.measure.measure_delineation`, so
  the intervals, QTc and axes follow at once. Pure: no I/O, nothing kept.
- Only the five boundaries a reader judges are corrected (:data:`CORRECTABLE`); peaks,
  per-lead and per-beat fiducials stay the engine's.
- **Refusals** (:class:`FiducialError`, a stable ``code`` and a reason):
  ``fiducial_outside_beat`` (a position before the median beat's start or past its
  end), ``fiducials_out_of_order`` (``p_on < p_off <= qrs_on < qrs_off < t_off`` must
  hold over the boundaries present after the correction), ``fiducials_incomplete``
  (a wave the engine did not find is given only one of its two boundaries),
  ``unknown_fiducial``.
- Giving both boundaries of a wave the engine found absent (a P wave it missed) makes
  the wave present: its ``absent_*`` reason is cleared.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from typing import Final

from ecg.delineate import MISSING, Delineation, GlobalFiducials
from ecg.errors import EcgError
from ecg.measure import MeasureConfig, Measurements, measure_delineation

__all__ = [
    "CORRECTABLE",
    "FiducialError",
    "beat_length",
    "correct_delineation",
    "fiducials_ms",
    "remeasure",
]

#: The global fiducials a reader may correct, in the order they must keep.
CORRECTABLE: Final = ("p_on", "p_off", "qrs_on", "qrs_off", "t_off")
# Which wave a boundary belongs to, and that wave's absence field.
_WAVE: Final = {
    "p_on": "absent_p",
    "p_off": "absent_p",
    "qrs_on": "absent_qrs",
    "qrs_off": "absent_qrs",
    "t_off": "absent_t",
}
_PAIR: Final = {"p_on": "p_off", "p_off": "p_on", "qrs_on": "qrs_off", "qrs_off": "qrs_on"}


class FiducialError(EcgError, ValueError):
    """A correction refused: ``code`` is stable, ``reason`` safe to show."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def beat_length(dl: Delineation) -> int:
    """Samples in the median beat (0 when no lead has one)."""
    return max((t.wide_mv.size for t in dl.templates if t.usable), default=0)


def _present(g: GlobalFiducials, name: str) -> bool:
    return getattr(g, name) != MISSING and getattr(g, _WAVE[name]) is None


def fiducials_ms(dl: Delineation) -> dict[str, float | None]:
    """The correctable global fiducials in ms from the median beat's start (None where
    the engine found none)."""
    g = dl.global_
    return {
        name: getattr(g, name) * 1000.0 / dl.fs_hz if _present(g, name) else None
        for name in CORRECTABLE
    }


def correct_delineation(dl: Delineation, corrections_ms: Mapping[str, float]) -> Delineation:
    """``dl`` with the global fiducials of ``corrections_ms`` (ms from the median beat's
    start) replaced, rounded to the nearest sample.

    Raises
    ------
    FiducialError
        A name not in :data:`CORRECTABLE`, a position outside the beat, boundaries out of
        order, or half of a wave the engine did not find.
    """
    for name in corrections_ms:
        if name not in CORRECTABLE:
            raise FiducialError(
                "unknown_fiducial", f"{name!r} is not one of {', '.join(CORRECTABLE)}"
            )
    n = beat_length(dl)
    if n == 0:
        raise FiducialError("fiducial_outside_beat", "there is no median beat to correct")
    last_ms = (n - 1) * 1000.0 / dl.fs_hz
    g = dl.global_
    samples: dict[str, int] = {}
    for name, ms in corrections_ms.items():
        if not math.isfinite(ms) or not 0.0 <= ms <= last_ms:
            raise FiducialError(
                "fiducial_outside_beat",
                f"{name} at {ms:g} ms is outside the median beat (0 to {last_ms:.0f} ms)",
            )
        samples[name] = min(n - 1, max(0, round(ms * dl.fs_hz / 1000.0)))
    changes: dict[str, object] = dict(samples)
    for name in samples:
        if _present(g, name):
            continue
        pair = _PAIR.get(name)
        if pair is not None and pair not in samples and not _present(g, pair):
            raise FiducialError(
                "fiducials_incomplete",
                f"the engine found no {name.split('_')[0].upper()} wave: give {name} and {pair}",
            )
        changes[_WAVE[name]] = None
    corrected = dataclasses.replace(g, **changes)  # type: ignore[arg-type]
    order = [(name, getattr(corrected, name)) for name in CORRECTABLE if _present(corrected, name)]
    for (a, at), (b, bt) in itertools.pairwise(order):
        # P may end where QRS starts (no PR segment); every other boundary is strict.
        ok = at <= bt if (a, b) == ("p_off", "qrs_on") else at < bt
        if not ok:
            raise FiducialError(
                "fiducials_out_of_order",
                f"{a} ({at * 1000.0 / dl.fs_hz:.0f} ms) must come before "
                f"{b} ({bt * 1000.0 / dl.fs_hz:.0f} ms): "
                "p_on < p_off <= qrs_on < qrs_off < t_off",
            )
    return dataclasses.replace(dl, global_=corrected)


def remeasure(
    dl: Delineation, corrections_ms: Mapping[str, float], config: MeasureConfig | None = None
) -> Measurements:
    """The measurements of ``dl`` with the reader's corrections applied (see
    :func:`correct_delineation`; no correction: the engine's own measurements)."""
    return measure_delineation(correct_delineation(dl, corrections_ms), config)
