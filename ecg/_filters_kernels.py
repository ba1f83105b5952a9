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
  (``1 * x + 0``), so the padding changes no output. :func:`sosfilt_samples_short`
  is the same kernel with :data:`N_SECTIONS_SHORT` sections, for the one- and
  two-section designs of the delineation and rhythm. Finite input only: the callers
  send rows holding NaN or inf to scipy, run by run.
- The output array may be of any float type and layout (``out`` sample-major float64
  for a live chunk, the transposed view of a lead-major float32 array for the quality
  measures of a record): the value stored is the float64 result, rounded once.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ecg._jit import jit

__all__ = [
    "N_SECTIONS",
    "N_SECTIONS_SHORT",
    "pad_sections",
    "sosfilt_samples",
    "sosfilt_samples_short",
]

#: Sections of the compiled kernel; designs with fewer are padded with identities.
N_SECTIONS = 4

#: Sections of the short kernel (:func:`sosfilt_samples_short`), for the smoothing
#: low-pass (one section) and the band-passes (two) of the delineation and rhythm.
N_SECTIONS_SHORT = 2

_IDENTITY = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])


def pad_sections(sos: NDArray[np.float64], n_sections: int = N_SECTIONS) -> NDArray[np.float64]:
    """``sos`` padded with identity sections to ``n_sections`` rows (C-contiguous)."""
    if sos.shape[0] > n_sections:
        raise ValueError(f"at most {n_sections} sections, got {sos.shape[0]}")
    padding = np.tile(_IDENTITY, (n_sections - sos.shape[0], 1))
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


_State = tuple[float, float, float, float]
_F64 = NDArray[np.float64]


@jit
def _pair(
    c: tuple[float, float, float, float, float], ya: float, yb: float, z: _State
) -> tuple[float, float, _State]:
    """One section at one sample of two leads ``a`` and ``b``; ``z`` is the section's
    memory ``(a0, a1, b0, b1)``. Returns both outputs and the memory after them."""
    ya, a0, a1 = _section(c, ya, z[0], z[1])
    yb, b0, b1 = _section(c, yb, z[2], z[3])
    return ya, yb, (a0, a1, b0, b1)


@jit
def _load(zi: NDArray[np.float64], s: int, a: int, b: int) -> _State:
    """Section ``s``'s memory of leads ``a`` and ``b``, as :func:`_pair` takes it."""
    return zi[s, 0, a], zi[s, 1, a], zi[s, 0, b], zi[s, 1, b]


@jit
def _store(zi: NDArray[np.float64], s: int, a: int, b: int, z: _State) -> None:
    zi[s, 0, a], zi[s, 1, a], zi[s, 0, b], zi[s, 1, b] = z[0], z[1], z[2], z[3]


@jit
def sosfilt_samples(sos: _F64, x: _F64, zi: _F64, out: NDArray[np.floating]) -> None:
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
    for a in range(0, n_leads, 2):
        # Two leads per pass (the second is the first again when n_leads is odd: the
        # same computation twice, stored twice, harmless).
        b = min(a + 1, n_leads - 1)
        z0, z1, z2, z3 = (
            _load(zi, 0, a, b),
            _load(zi, 1, a, b),
            _load(zi, 2, a, b),
            _load(zi, 3, a, b),
        )
        for i in range(n_samples):
            ya, yb, z0 = _pair(c0, x[i, a], x[i, b], z0)
            ya, yb, z1 = _pair(c1, ya, yb, z1)
            ya, yb, z2 = _pair(c2, ya, yb, z2)
            ya, yb, z3 = _pair(c3, ya, yb, z3)
            out[i, a] = ya
            out[i, b] = yb
        _store(zi, 0, a, b, z0)
        _store(zi, 1, a, b, z1)
        _store(zi, 2, a, b, z2)
        _store(zi, 3, a, b, z3)


@jit
def sosfilt_samples_short(sos: _F64, x: _F64, zi: _F64, out: NDArray[np.floating]) -> None:
    """:func:`sosfilt_samples` for designs of :data:`N_SECTIONS_SHORT` sections.

    A one- or two-section design on the four-section kernel spends half its time or
    more passing samples through identity sections, each a multiply and an add in the
    recursion's chain; here only two sections are in it. Same parameters, with
    ``N_SECTIONS_SHORT`` for ``N_SECTIONS``.
    """
    n_samples, n_leads = x.shape
    c0, c1 = _coefficients(sos, 0), _coefficients(sos, 1)
    for a in range(0, n_leads, 2):
        b = min(a + 1, n_leads - 1)
        z0, z1 = _load(zi, 0, a, b), _load(zi, 1, a, b)
        for i in range(n_samples):
            ya, yb, z0 = _pair(c0, x[i, a], x[i, b], z0)
            ya, yb, z1 = _pair(c1, ya, yb, z1)
            out[i, a] = ya
            out[i, b] = yb
        _store(zi, 0, a, b, z0)
        _store(zi, 1, a, b, z1)
