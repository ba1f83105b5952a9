"""The reading page's ECG window made from what it shows: the engine's first 10 s and
the window with its filter padding, read from the stored record alone, equals the
window cut from the whole record."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from api.readings import file_length, file_window, reading_ecg, window_answer, window_span
from ecg.record import read_record
from fixtures.make_fixtures import STANDARD_LEADS, regular_beats, synthetic_ecg, write_record

FS_HZ = 500.0
SECONDS = 120.0


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two minutes of 12-lead ECG at 500 Hz as a stored 16-bit WFDB record."""
    signal = synthetic_ecg(FS_HZ, SECONDS, regular_beats(SECONDS, 72.0), n_leads=12)
    return write_record(tmp_path_factory.mktemp("window"), "two-min", signal, FS_HZ,
                        list(STANDARD_LEADS))  # fmt: skip


@pytest.mark.parametrize(
    ("start_s", "duration_s", "band"),
    [(0.0, 10.0, "diagnostic"), (3.7, 10.0, "monitoring"), (61.0, 30.0, "diagnostic"),
     (115.0, 10.0, "diagnostic"), (500.0, 10.0, "monitoring")],
)  # fmt: skip
def test_the_window_read_alone_equals_the_window_of_the_whole_record(
    stored: Path, start_s: float, duration_s: float, band: str
) -> None:
    task = uuid.uuid4().hex
    whole = reading_ecg(task, read_record(stored), start_s, duration_s, band)  # type: ignore[arg-type]
    length = file_length(stored)
    assert length == (round(SECONDS * FS_HZ), FS_HZ)
    span = window_span(*length, start_s, duration_s)
    head = file_window(stored, 0, int(10.0 * FS_HZ))
    padded = file_window(stored, *span.padded)
    assert head is not None
    assert padded is not None
    assert padded.n_samples == span.padded[1] - span.padded[0]
    windowed = window_answer(task, head, padded, span, band)  # type: ignore[arg-type]
    assert windowed == whole


def test_an_absent_record_has_no_length_and_no_window(tmp_path: Path) -> None:
    assert file_length(tmp_path / "none") is None
    assert file_window(tmp_path / "none", 0, 10) is None
