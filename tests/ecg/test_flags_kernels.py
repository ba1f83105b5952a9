"""Compiled quality and rhythm kernels: bit for bit the numpy and scipy forms they replace."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.ndimage import uniform_filter1d

from ecg import _flags_kernels
from ecg.flags import _sorted_row_medians


def _residual_numpy(x: NDArray[np.float32], width: int) -> NDArray[np.float32]:
    average = uniform_filter1d(x, width, axis=1, mode="nearest")
    return np.abs(x - average)


@pytest.mark.parametrize("width", [3, 4, 10, 14, 25])
@pytest.mark.parametrize("n_rows", [1, 2, 3])
def test_noise_residual_is_scipy_uniform_filter_bit_for_bit(width: int, n_rows: int) -> None:
    """The residual and its counts per window equal uniform_filter1d's, rows odd or even."""
    rng = np.random.default_rng(width * 10 + n_rows)
    for scale in (1e-3, 1.0, 1e3):
        x = (rng.standard_normal((n_rows, 5003)) * scale).astype(np.float32)
        window = 250
        residual = np.empty_like(x)
        above = np.empty((n_rows, -(-x.shape[1] // window)), dtype=np.int64)
        threshold = float(np.float32(0.5 * scale))
        _flags_kernels.noise_residual(x, width, threshold, window, residual, above)
        expected = _residual_numpy(x, width)
        np.testing.assert_array_equal(residual, expected)
        exceeds = expected > np.float32(threshold)
        counts = [exceeds[:, i : i + window].sum(axis=1) for i in range(0, x.shape[1], window)]
        np.testing.assert_array_equal(above, np.stack(counts, axis=1))


def test_noise_residual_of_a_short_row() -> None:
    """Rows shorter than the moving average repeat their edge values, as scipy does."""
    x = np.array([[1.0, -2.0, 0.5]], dtype=np.float32)
    residual = np.empty_like(x)
    above = np.empty((1, 1), dtype=np.int64)
    _flags_kernels.noise_residual(x, 10, 0.1, 360, residual, above)
    np.testing.assert_array_equal(residual, _residual_numpy(x, 10))


def _irregularity_numpy(rr: NDArray[np.float64], window: int) -> tuple[NDArray, NDArray]:
    windows = np.lib.stride_tricks.sliding_window_view(rr, window)
    ratio = np.median(np.abs(np.diff(windows, axis=1)), axis=1) / np.median(windows, axis=1)
    middle = windows[:, 1:-1]
    turning = (
        ((middle > windows[:, :-2]) & (middle > windows[:, 2:]))
        | ((middle < windows[:, :-2]) & (middle < windows[:, 2:]))
    ).sum(axis=1)
    return ratio, turning


@pytest.mark.parametrize("window", [4, 5, 10, 11])
def test_irregularity_is_the_sliding_window_numpy_form(window: int) -> None:
    """Sliding sorted windows give np.median's ratios and the same turning points, ties too."""
    rng = np.random.default_rng(window)
    for rr in (
        rng.integers(200, 400, 500).astype(np.float64),  # many ties
        rng.uniform(200.0, 400.0, 300),
        np.full(window, 300.0),
    ):
        ratio, turning = _flags_kernels.irregularity(rr, window)
        expected_ratio, expected_turning = _irregularity_numpy(rr, window)
        np.testing.assert_array_equal(ratio, expected_ratio)
        np.testing.assert_array_equal(turning, expected_turning)


def test_extreme_counts_count_the_samples_at_each_rows_extremes() -> None:
    """Counts of samples equal to each row's maximum and minimum, from the window extremes."""
    rng = np.random.default_rng(5)
    x = np.round(rng.standard_normal((3, 1000)), 1)
    window = 128
    bounds = list(range(0, 1000, window))
    high = np.stack([x[:, b : b + window].max(axis=1) for b in bounds], axis=1)
    low = np.stack([x[:, b : b + window].min(axis=1) for b in bounds], axis=1)
    at_top, at_bottom = _flags_kernels.extreme_counts(x, window, high, low)
    np.testing.assert_array_equal(at_top, (x == x.max(axis=1, keepdims=True)).sum(axis=1))
    np.testing.assert_array_equal(at_bottom, (x == x.min(axis=1, keepdims=True)).sum(axis=1))


@pytest.mark.parametrize("width", [1, 2, 359, 360])
def test_sorted_row_medians_are_numpys(width: int) -> None:
    """Medians by sorting equal np.median on float32 rows, odd and even widths, with ties."""
    rng = np.random.default_rng(width)
    matrix = np.abs(np.round(rng.standard_normal((50, width)), 2)).astype(np.float32)
    expected = np.median(matrix, axis=1)
    got = _sorted_row_medians(matrix)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
