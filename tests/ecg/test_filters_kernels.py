"""The compiled causal filter kernel: scipy's sosfilt bit for bit, identity padding."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from ecg._filters_kernels import (
    N_SECTIONS,
    N_SECTIONS_SHORT,
    pad_sections,
    sosfilt_samples,
    sosfilt_samples_short,
)
from ecg.filters import design_filter


@pytest.mark.parametrize("mains_hz", [50.0, None])
@pytest.mark.parametrize("n_leads", [1, 2, 5])
def test_sosfilt_samples_is_scipy_with_its_state(mains_hz: float | None, n_leads: int) -> None:
    """Output and final state equal scipy's, with a design padded to the kernel's sections."""
    rng = np.random.default_rng(n_leads)
    x = rng.standard_normal((700, n_leads))
    sos = design_filter(500.0, "monitoring", mains_hz).sos_causal
    zi = rng.standard_normal((sos.shape[0], 2, n_leads))
    expected, zf = sps.sosfilt(sos, x, axis=0, zi=zi)
    state = np.zeros((N_SECTIONS, 2, n_leads))
    state[: sos.shape[0]] = zi
    out = np.empty_like(x)
    sosfilt_samples(pad_sections(sos), x, state, out)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(state[: sos.shape[0]], zf)
    assert not state[sos.shape[0] :].any()


def test_pad_sections_refuses_too_many() -> None:
    """A design longer than the kernel is refused rather than cut."""
    with pytest.raises(ValueError, match="at most"):
        pad_sections(np.tile(np.array([1.0, 0, 0, 1, 0, 0]), (N_SECTIONS + 1, 1)))


@pytest.mark.parametrize("band_hz", [15.0, (2.0, 20.0)])
@pytest.mark.parametrize("n_leads", [1, 2, 5])
def test_sosfilt_samples_short_is_scipy_with_its_state(
    band_hz: float | tuple[float, float], n_leads: int
) -> None:
    """The two-section kernel equals scipy's: a low-pass (one section, padded), a band-pass."""
    rng = np.random.default_rng(10 + n_leads)
    x = rng.standard_normal((700, n_leads))
    btype = "low" if isinstance(band_hz, float) else "band"
    sos = np.asarray(sps.butter(2, band_hz, btype=btype, fs=500.0, output="sos"))
    zi = rng.standard_normal((sos.shape[0], 2, n_leads))
    expected, zf = sps.sosfilt(sos, x, axis=0, zi=zi)
    state = np.zeros((N_SECTIONS_SHORT, 2, n_leads))
    state[: sos.shape[0]] = zi
    out = np.empty_like(x)
    sosfilt_samples_short(pad_sections(sos, N_SECTIONS_SHORT), x, state, out)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(state[: sos.shape[0]], zf)
    assert not state[sos.shape[0] :].any()
