"""DICOM export a window at a time: the file is the bytes of the one-shot export and of
pydicom's own encoding, and a long record is written in the memory of one window."""

from __future__ import annotations

import io
import itertools
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from ecg.dicom import (
    GENERAL_ECG_SOP_CLASS,
    DicomError,
    DicomErrorCode,
    check_iod,
    read_dicom,
    write_dicom,
    write_dicom_to,
)
from tests.ecg.test_dicom import NOW, _info, _ludb, _uids


def test_a_file_written_window_by_window_is_the_one_shot_file(
    ecg_dir: Path, tmp_path: Path
) -> None:
    """LUDB record 1 cut in uneven windows (one empty) gives write_dicom's bytes, which
    are what pydicom writes of the dataset it reads from them; pydicom reads back the
    samples, channels and annotations, and the IOD is complete."""
    record, names = _ludb(ecg_dir)
    counts = record.d_signal
    options: dict[str, Any] = {
        "counts_per_mv": record.adc_gain,
        "baseline_counts": record.baseline,
        "now": NOW,
    }
    whole = write_dicom(counts, record.fs, names, _info(), new_uid=_uids(), **options)
    cuts = [0, 1000, 1000, 1001, 3333, counts.shape[0]]
    path = tmp_path / "ecg.dcm"
    with path.open("wb") as file:
        write_dicom_to(
            file,
            (counts[a:b] for a, b in itertools.pairwise(cuts)),
            counts.shape[0],
            record.fs,
            names,
            _info(),
            new_uid=_uids(),
            **options,
        )
    written = path.read_bytes()
    assert written == whole
    ds = pydicom.dcmread(path)
    again = io.BytesIO()
    ds.save_as(again, enforce_file_format=True)
    assert again.getvalue() == written
    assert check_iod(ds) == []
    group = ds.WaveformSequence[0]
    assert group.NumberOfWaveformChannels == len(names)
    assert [str(c.ChannelLabel) for c in group.ChannelDefinitionSequence] == names
    ecg = read_dicom(written)
    assert np.allclose(ds.waveform_array(0) / 1000.0, ecg.signal_mv, rtol=0, atol=1e-9)
    assert np.array_equal(ecg.samples, counts)
    assert len(ds.WaveformAnnotationSequence) == len(
        pydicom.dcmread(io.BytesIO(whole)).WaveformAnnotationSequence
    )
    assert ecg.info.statements == _info().statements
    assert ecg.info.critical == _info().critical


def test_windows_that_disagree_with_the_header_are_refused(tmp_path: Path) -> None:
    """More or fewer samples than announced, or windows of different kinds, are
    ``bad_signal``."""
    counts = np.zeros((100, 1), dtype=np.int16)
    cases: list[tuple[list[np.ndarray], int]] = [
        ([counts, counts], 150),
        ([counts], 150),
        ([counts, counts / 1000.0], 200),
    ]
    for windows, n_samples in cases:
        with pytest.raises(DicomError) as caught, (tmp_path / "x.dcm").open("wb") as file:
            write_dicom_to(file, windows, n_samples, 500.0, ["II"], counts_per_mv=1000.0)
        assert caught.value.code is DicomErrorCode.BAD_SIGNAL


FS_HZ = 500.0
LONG_S = 3600  # 2 leads for an hour: 7.2 MB of waveform data
WINDOW = 1 << 12  # 8 s at 500 Hz


def _long_windows() -> Iterator[np.ndarray]:
    """Two leads in mV, made a window at a time (never whole)."""
    n = round(LONG_S * FS_HZ)
    for start in range(0, n, WINDOW):
        t = np.arange(start, min(start + WINDOW, n)) / FS_HZ
        yield np.stack([np.sin(2 * np.pi * 1.2 * t), 0.5 * np.cos(2 * np.pi * 0.3 * t)], axis=1)


def test_a_long_record_is_written_in_the_memory_of_one_window(tmp_path: Path) -> None:
    """An hour of 2 leads (7.2 MB of samples), given in windows of 8 s, is written with
    a traced peak under an eighth of that (~0.5 MB measured: a window's temporaries and
    the header), and the file is the one-shot export's."""
    n = round(LONG_S * FS_HZ)
    data_bytes = n * 2 * 2
    path = tmp_path / "long.dcm"
    with path.open("wb") as file:
        tracemalloc.start()
        try:
            write_dicom_to(file, _long_windows(), n, FS_HZ, ["II", "V5"], _info(),
                           new_uid=_uids(), now=NOW)  # fmt: skip
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    print(f"peak traced {peak / 1e6:.2f} MB for {data_bytes / 1e6:.1f} MB of samples")
    assert peak < data_bytes / 8, (peak, data_bytes)
    whole = np.concatenate(list(_long_windows()))
    written = path.read_bytes()
    assert written == write_dicom(whole, FS_HZ, ["II", "V5"], _info(), new_uid=_uids(), now=NOW)
    assert pydicom.dcmread(path).SOPClassUID == GENERAL_ECG_SOP_CLASS
