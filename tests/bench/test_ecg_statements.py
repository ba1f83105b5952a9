"""bench/ecg_statements.py: the PR that LUDB's own wave annotations give, beside its 1AVB label."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

wfdb = pytest.importorskip("wfdb")

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import ecg_statements  # noqa: E402

FS = 500


def _wrann(folder: Path, lead: str, samples: list[int], symbols: list[str]) -> None:
    """LUDB's annotation file ``rec.<lead>`` (wfdb writes letters-only extensions: the
    file is renamed to LUDB's, such as ``rec.v1``)."""
    wfdb.wrann("rec", "tmp", np.asarray(samples), symbols, fs=FS, write_dir=str(folder))
    (folder / "rec.tmp").rename(folder / f"rec.{lead}")


def _write(folder: Path, lead: str, p_on: list[int], qrs_on: list[int]) -> None:
    """One lead's LUDB triplets: a P 40 ms wide after each onset, a QRS 40 ms after its."""
    samples: list[int] = []
    symbols: list[str] = []
    for p, q in zip(p_on, qrs_on, strict=True):
        samples += [p, p + 20, p + 40, q, q + 20, q + 40]
        symbols += ["(", "p", ")", "(", "N", ")"]
    _wrann(folder, lead, samples, symbols)


def test_reference_pr_is_the_earliest_p_onset_to_the_earliest_qrs_onset(tmp_path: Path) -> None:
    """Over the leads, per beat: the earliest P onset to the earliest QRS onset; the
    median over the beats; NaN without P waves."""
    beats = [1000, 1400, 1800]
    for k, lead in enumerate(ecg_statements.LUDB_LEADS):
        # Leads start their waves up to 11 samples late; lead "i" has the earliest P
        # (110 samples, 220 ms before the beat) and "ii" the earliest QRS onset.
        p_late = 0 if lead == "i" else 5 + k
        q_late = 0 if lead == "ii" else 1 + k
        _write(tmp_path, lead, [b - 110 + p_late for b in beats], [b + q_late for b in beats])
    assert ecg_statements._reference_pr_ms(tmp_path / "rec") == pytest.approx(220.0)


def test_reference_pr_is_nan_without_p_waves(tmp_path: Path) -> None:
    """A record with QRS complexes and no P (atrial fibrillation) has no reference PR."""
    for lead in ecg_statements.LUDB_LEADS:
        _wrann(tmp_path, lead, [980, 1000, 1020, 1380, 1400, 1420], ["(", "N", ")"] * 2)
    assert np.isnan(ecg_statements._reference_pr_ms(tmp_path / "rec"))
