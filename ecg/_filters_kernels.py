"""Compiled kernel of the causal filter (numba, through :func:`ecg._jit.jit`).

Design notes
------------
- :func:`sosfilt_samples` is ``scipy.signal.sosfilt`` along axis 0 of a sample-major
  chunk ``(n_samples, n_leads)``, bit for bit: the same operations in the same order
  per section (``tests/ecg/test_filters.py`` compares them). It exists for speed only.
  scipy's kernel filters one lead after the other and each output sample waits for
  the previous one (the recursion), so the floating-point units idle; here two leads
  are filtered in the same loop, which lets the processor overlap their two chains,
  and the coefficients and states live in registers (sections unrolled).
- Exactly :data:`N_SECTIONS` sections: the designs of ``ecg.filters`` have three
  (band, no notch) or four (band and notch); fewer are padded with identity sections
  (``b = (1, 0, 0)``, ``a = (1, 0, 0)``), which pass every finite sample unchanged
  (``1 * x + 0``), so the padding changes no output. Finite input only: the callers
  send rows holding NaN or inf to scipy, run by run.
- The output array may be of any float type and layout (``out`` sample-major float64
  for a live chunk, the transposed view of a lead-major float32 array for the quality
  measures of a record): the value stored is the float64 result, rounded once.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ecg._jit import jit

__all__ = ["N_SECTIONS", "pad_sections", "sosfilt_samples"]

#: Sections of the compiled kernel; designs with fewer are padded with identities.
N_SECTIONS = 4

_IDENTITY = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])


def pad_sections(sos: NDArray[np.float64]) -> NDArray[np.float64]:
    """``sos`` padded with identity sections to :data:`N_SECTIONS` rows (C-contiguous)."""
    if sos.shape[0] > N_SECTIONS:
        raise ValueError(f"at most {N_SECTIONS} sections, got {sos.shape[0]}")
    padding = np.tile(_IDENTITY, (N_SECTIONS - sos.shape[0], 1))
    return np.ascontiguousarray(np.vstack([sos, padding]), dtype=np.float64)


@jit
def _section(
    c: tuple[float, float, float, float, float], x: float, z0: float, z1: float
) -> tuple[float, float, float]:
    """One section at one sample, in scipy's order: ``(y, z0, z1)`` after ``x``."""
    y = c[0] * x + z0
    return y, c[1] * x - c[3] * y + z1, c[2] * x - c[4] * y


@jit
def _coefficients(sos: NDArray[np.float64], s: int) -> tuple[float, float, float, float, float]:
    return sos[s, 0], sos[s, 1], sos[s, 2], sos[s, 4], sos[s, 5]


@jit
def sosfilt_samples(
    sos: NDArray[np.float64],
    x: NDArray[np.float64],
    zi: NDArray[np.float64],
    out: NDArray[np.floating],
) -> None:
    """Filter the columns of ``x`` into ``out``; ``zi`` is updated in place.

    Parameters
    ----------
    sos : ndarray, shape (N_SECTIONS, 6)
        Sections (:func:`pad_sections`).
    x : ndarray of float64, shape (n_samples, n_leads)
        Finite samples.
    zi : ndarray of float64, shape (N_SECTIONS, 2, n_leads)
        Filter memory per section and lead, as ``scipy.signal.sosfilt`` keeps it for
        ``axis=0`` (padded sections: zeros).
    out : ndarray of float, shape (n_samples, n_leads)
        Receives the filtered samples.
    """
    n_samples, n_leads = x.shape
    c0, c1 = _coefficients(sos, 0), _coefficients(sos, 1)
    c2, c3 = _coefficients(sos, 2), _coefficients(sos, 3)
    for first in range(0, n_leads, 2):
        # Two leads per pass (the second is the first again when n_leads is odd: the
        # same computation twice, stored twice, harmless).
        a = first
        b = min(first + 1, n_leads - 1)
        a00, a01, b00, b01 = zi[0, 0, a], zi[0, 1, a], zi[0, 0, b], zi[0, 1, b]
        a10, a11, b10, b11 = zi[1, 0, a], zi[1, 1, a], zi[1, 0, b], zi[1, 1, b]
        a20, a21, b20, b21 = zi[2, 0, a], zi[2, 1, a], zi[2, 0, b], zi[2, 1, b]
        a30, a31, b30, b31 = zi[3, 0, a], zi[3, 1, a], zi[3, 0, b], zi[3, 1, b]
        for i in range(n_samples):
            ya, a00, a01 = _section(c0, x[i, a], a00, a01)
            yb, b00, b01 = _section(c0, x[i, b], b00, b01)
            ya, a10, a11 = _section(c1, ya, a10, a11)
            yb, b10, b11 = _section(c1, yb, b10, b11)
            ya, a20, a21 = _section(c2, ya, a20, a21)
            yb, b20, b21 = _section(c2, yb, b20, b21)
            ya, a30, a31 = _section(c3, ya, a30, a31)
            yb, b30, b31 = _section(c3, yb, b30, b31)
            out[i, a] = ya
            out[i, b] = yb
        zi[0, 0, a], zi[0, 1, a], zi[0, 0, b], zi[0, 1, b] = a00, a01, b00, b01
        zi[1, 0, a], zi[1, 1, a], zi[1, 0, b], zi[1, 1, b] = a10, a11, b10, b11
        zi[2, 0, a], zi[2, 1, a], zi[2, 0, b], zi[2, 1, b] = a20, a21, b20, b21
        zi[3, 0, a], zi[3, 1, a], zi[3, 0, b], zi[3, 1, b] = a30, a31, b30, b31
