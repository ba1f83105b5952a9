"""DICOM 12-lead ECG waveforms: round trips of real records through pydicom, the IOD
checked by our check and by dciodvfy (dicom3tools), and files that lie refused with a
code."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import wfdb
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ecg.dicom import (
    GENERAL_ECG_SOP_CLASS,
    PADDING,
    TWELVE_LEAD_SOP_CLASS,
    DicomError,
    DicomErrorCode,
    check_iod,
    read_dicom,
    write_dicom,
)
from ecg.paper_content import (
    Patient,
    ReportInfo,
    critical_from,
    measurements_from,
    statements_from,
)
from ecg.record import normalise_lead_name

NOW = dt.datetime(2026, 12, 2, 2, 0, tzinfo=dt.UTC)


def _info() -> ReportInfo:
    return ReportInfo(
        patient=Patient("张^三", "P0001", "F", 51, dt.date(1975, 3, 4)),
        acquired_at=dt.datetime(2026, 12, 2, 9, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        record_name="ludb-1",
        institution="东关镇卫生院",
        device="cart-7",
        filter_low_hz=0.05,
        filter_high_hz=150.0,
        mains_hz=50.0,
        measurements=measurements_from(
            {"hr_bpm": 45.5, "rr_ms": 1318.0, "pr_ms": 162.0, "p_ms": None, "qrs_ms": 92.0,
             "qt_ms": 446.0, "qtc_ms": {"bazett": 389.5, "fridericia": 407.0},
             "p_axis_deg": 55.0, "qrs_axis_deg": -35.0, "t_axis_deg": 41.0}
        ),
        statements=statements_from(
            [{"code": "SBRAD", "text_en": "Sinus bradycardia", "text_zh": "窦性心动过缓"},
             {"code": "LAD", "text_en": "Left axis deviation", "text_zh": "电轴左偏"},
             {"code": "STE", "text_en": "ST elevation, anterior", "text_zh": "前壁ST段抬高",
              "severity": "critical"}]
        ),
        critical=critical_from(
            [{"code": "STEMI", "text_en": "Acute ST-elevation MI pattern",
              "text_zh": "急性ST段抬高型心肌梗死图形"}]
        ),
    )  # fmt: skip


def _ludb(ecg_dir: Path, name: str = "1") -> tuple[Any, list[str]]:
    record = wfdb.rdrecord(str(ecg_dir / "ludb-dev" / name), physical=False)
    return record, [normalise_lead_name(n) for n in record.sig_name]


def _uids() -> Callable[[], str]:
    counter = iter(range(1, 1000))
    return lambda: f"1.2.826.0.1.3680043.10.1234.{next(counter)}"


def test_round_trip_of_a_real_record_is_bit_exact(ecg_dir: Path) -> None:
    """LUDB record 1's digital samples, gains, fs, leads, patient, time, filter,
    measurements and statements come back from the file exactly."""
    record, names = _ludb(ecg_dir)
    info = _info()
    data = write_dicom(
        record.d_signal,
        record.fs,
        names,
        info,
        counts_per_mv=record.adc_gain,
        baseline_counts=record.baseline,
        now=NOW,
    )
    ecg = read_dicom(data)
    assert ecg.samples.dtype == np.int16
    assert np.array_equal(ecg.samples, record.d_signal)
    assert np.allclose(ecg.counts_per_mv, record.adc_gain, rtol=1e-12, atol=0)
    assert ecg.fs_hz == record.fs
    assert ecg.lead_names == tuple(names)
    assert ecg.info.patient == info.patient
    assert ecg.info.acquired_at == info.acquired_at
    assert (ecg.info.filter_low_hz, ecg.info.filter_high_hz, ecg.info.mains_hz) == (
        0.05, 150.0, 50.0,
    )  # fmt: skip
    assert (ecg.info.record_name, ecg.info.institution, ecg.info.device) == (
        "ludb-1", "东关镇卫生院", "cart-7",
    )  # fmt: skip
    assert dict(ecg.info.measurements.values) == {
        name: value if value.value is not None else value.__class__(None, "not measurable")
        for name, value in info.measurements.values.items()
    }
    assert ecg.info.measurements.value("p_ms") is None
    assert ecg.info.statements == info.statements
    assert ecg.info.critical == info.critical
    # In mV the samples are what wfdb makes of them.
    physical = wfdb.rdrecord(str(ecg_dir / "ludb-dev" / "1")).p_signal
    assert np.allclose(ecg.signal_mv, physical, rtol=0, atol=1e-12)


def test_pydicom_reads_what_we_write(ecg_dir: Path) -> None:
    """pydicom's own waveform decoder gives our samples times the sensitivity in µV,
    and the instance is a 12-lead ECG waveform with every required attribute."""
    record, names = _ludb(ecg_dir, "2")
    data = write_dicom(
        record.d_signal,
        record.fs,
        names,
        _info(),
        counts_per_mv=record.adc_gain,
        baseline_counts=record.baseline,
    )
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.SOPClassUID == TWELVE_LEAD_SOP_CLASS
    assert ds.file_meta.MediaStorageSOPClassUID == TWELVE_LEAD_SOP_CLASS
    assert ds.Modality == "ECG"
    assert str(ds.PatientName) == "张^三"
    assert check_iod(ds) == []
    group = ds.WaveformSequence[0]
    assert group.NumberOfWaveformChannels == 12
    assert [ch.ChannelSourceSequence[0].CodingSchemeDesignator
            for ch in group.ChannelDefinitionSequence] == ["SCPECG"] * 12  # fmt: skip
    assert group.ChannelDefinitionSequence[3].ChannelSourceSequence[0].CodeValue == "5.6.3-9-62"
    microvolts = ds.waveform_array(0)
    assert np.allclose(microvolts / 1000.0, read_dicom(data).signal_mv, rtol=0, atol=1e-9)


def test_float_millivolts_are_quantised_and_nan_is_padding(ecg_dir: Path) -> None:
    """A float signal in mV returns within half a count (1 µV), NaN as NaN."""
    signal = wfdb.rdrecord(str(ecg_dir / "ptbxl-sample" / "HR06000")).p_signal
    signal = signal[:5000].copy()
    signal[100:150, 2] = np.nan
    names = [f"V{i}" if i else "II" for i in range(signal.shape[1])][:12]
    ecg = read_dicom(write_dicom(signal, 500.0, names[: signal.shape[1]], new_uid=_uids()))
    assert np.all(ecg.samples[100:150, 2] == PADDING)
    mv = ecg.signal_mv
    assert np.array_equal(np.isnan(mv), np.isnan(signal))
    finite = np.isfinite(signal)
    assert np.max(np.abs(mv[finite] - signal[finite])) <= 0.0005 + 1e-12


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) missing")
def test_dciodvfy_finds_no_error(ecg_dir: Path, tmp_path: Path) -> None:
    """David Clunie's IOD validator recognises a 12-lead ECG and reports no error (only
    warnings that it does not know our private coding scheme)."""
    record, names = _ludb(ecg_dir)
    path = tmp_path / "ecg.dcm"
    path.write_bytes(
        write_dicom(record.d_signal, record.fs, names, _info(), counts_per_mv=record.adc_gain)
    )
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).splitlines()
    assert "TwelveLeadECG" in lines
    errors = [line for line in lines if line.startswith("Error")]
    assert errors == []
    warnings = [line for line in lines if line.startswith("Warning")]
    assert all("99TCECG" in line for line in warnings), warnings


def test_unknown_leads_and_mdc_codes_are_read_by_name() -> None:
    """A lead outside the code table keeps its label; MDC-coded sources are read too."""
    counts = np.arange(600, dtype=np.int16).reshape(300, 2)
    data = write_dicom(counts, 250.0, ["MLII", "aVR"], counts_per_mv=200.0)
    assert read_dicom(data).lead_names == ("MLII", "aVR")
    ds = pydicom.dcmread(io.BytesIO(data))
    source = ds.WaveformSequence[0].ChannelDefinitionSequence[1].ChannelSourceSequence[0]
    source.CodeValue, source.CodingSchemeDesignator = "2:63", "MDC"
    assert read_dicom(_bytes(ds)).lead_names == ("MLII", "aVL")


def _bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _small() -> Dataset:
    counts = np.zeros((500, 3), dtype=np.int16)
    data = write_dicom(counts, 500.0, ["I", "II", "III"], counts_per_mv=1000.0)
    return pydicom.dcmread(io.BytesIO(data))


def _expect(code: DicomErrorCode, data: bytes) -> DicomError:
    with pytest.raises(DicomError) as caught:
        read_dicom(data)
    assert caught.value.code is code
    assert caught.value.reason
    return caught.value


def test_files_that_lie_are_refused_with_a_code() -> None:
    """Wrong channel count, sample count, sampling rate, sample format, SOP class or
    not DICOM at all: each a DicomError with its code."""
    _expect(DicomErrorCode.NOT_DICOM, b"not a dicom file at all" * 10)
    _expect(DicomErrorCode.NOT_DICOM, b"")
    ds = _small()
    ds.WaveformSequence[0].NumberOfWaveformChannels = 4
    error = _expect(DicomErrorCode.CHANNEL_COUNT, _bytes(ds))
    assert "is 4 but 3 channels" in error.reason
    ds = _small()
    ds.WaveformSequence[0].NumberOfWaveformSamples = 600
    _expect(DicomErrorCode.DATA_LENGTH, _bytes(ds))
    for rate in ("50", "5000", "0"):
        ds = _small()
        ds.WaveformSequence[0].SamplingFrequency = rate
        _expect(DicomErrorCode.SAMPLING_FREQUENCY, _bytes(ds))
    ds = _small()
    del ds.WaveformSequence[0].SamplingFrequency
    _expect(DicomErrorCode.MISSING_ATTRIBUTE, _bytes(ds))
    ds = _small()
    ds.WaveformSequence[0].WaveformSampleInterpretation = "UB"
    _expect(DicomErrorCode.SAMPLE_FORMAT, _bytes(ds))
    ds = _small()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    _expect(DicomErrorCode.NOT_ECG_WAVEFORM, _bytes(ds))
    image = Dataset()
    image.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    image.SOPInstanceUID = generate_uid()
    image.PatientName = "x"
    image.file_meta = pydicom.dataset.FileMetaDataset()
    image.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    _expect(DicomErrorCode.NOT_ECG_WAVEFORM, _bytes(image))


def test_export_refuses_what_the_iod_cannot_hold() -> None:
    """Too many leads, no sample, a rate outside 200-1000 Hz, samples beyond 16 bits."""
    cases: list[tuple[DicomErrorCode, Callable[[], bytes]]] = [
        (DicomErrorCode.CHANNEL_COUNT,
         lambda: write_dicom(np.zeros((10, 25)), 500.0, ["II"] * 25)),
        (DicomErrorCode.TOO_LONG, lambda: write_dicom(np.zeros((0, 1)), 500.0, ["II"])),
        (DicomErrorCode.SAMPLING_FREQUENCY,
         lambda: write_dicom(np.zeros((1000, 1)), 100.0, ["II"])),
        (DicomErrorCode.SAMPLE_RANGE, lambda: write_dicom(np.full((10, 1), 40.0), 500.0, ["II"])),
        (DicomErrorCode.SAMPLE_RANGE,
         lambda: write_dicom(np.full((10, 1), -32768, dtype=np.int32), 500.0, ["II"],
                             counts_per_mv=1000.0)),
        (DicomErrorCode.BAD_SIGNAL,
         lambda: write_dicom(np.zeros((10, 1), dtype=np.int16), 500.0, ["II"])),
        (DicomErrorCode.BAD_SIGNAL, lambda: write_dicom(np.zeros((10, 2)), 500.0, ["II"])),
    ]  # fmt: skip
    for code, attempt in cases:
        with pytest.raises(DicomError) as caught:
            attempt()
        assert caught.value.code is code


def test_a_waveform_from_another_writer() -> None:
    """pydicom's own 12-lead test file (two groups, legacy SCP-ECG measurement codes,
    statements as text): the rhythm group, its leads, scale, measurements, statements
    and patient are read, and it prints."""
    from pydicom.data import get_testdata_file

    from ecg.paper import layout_pages

    path = get_testdata_file("waveform_ecg.dcm")
    assert isinstance(path, str)
    ecg = read_dicom(Path(path).read_bytes())
    ds = pydicom.dcmread(path)
    assert ecg.fs_hz == 1000.0
    assert ecg.samples.shape == (10000, 12)
    assert ecg.lead_names == ("I", "II", "III", "aVR", "aVL", "aVF",
                              "V1", "V2", "V3", "V4", "V5", "V6")  # fmt: skip
    assert np.allclose(ecg.signal_mv, ds.waveform_array(0) / 1000.0, rtol=0, atol=1e-9)
    values = {name: m.value for name, m in ecg.info.measurements.values.items()}
    assert values == {"rr_ms": 982.0, "pr_ms": 161.0, "qrs_ms": 75.0, "qt_ms": 368.0,
                      "qtc_bazett_ms": 370.0, "p_axis_deg": 74.0, "qrs_axis_deg": 52.0,
                      "t_axis_deg": 57.0}  # fmt: skip
    assert [s.text_en for s in ecg.info.statements] == ["RITMO SINUSALE", "ECG NORMALE"]
    assert (ecg.info.patient.sex, ecg.info.patient.age_years) == ("F", 42)
    pages = layout_pages(ecg.signal_mv, ecg.fs_hz, ecg.lead_names, ecg.info)
    assert "161 ms" in [label.text for label in pages[0].labels]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) missing")
def test_long_and_wide_records_are_general_ecg(ecg_dir: Path, tmp_path: Path) -> None:
    """A 60 s record (30000 samples) and PTB's 15 leads do not fit the 12-lead IOD:
    they are written whole as General ECG waveforms, which dciodvfy accepts and which
    read back bit for bit."""
    long = np.arange(30000 * 2, dtype=np.int16).reshape(30000, 2) % 2000
    ptb = wfdb.rdrecord(str(next((ecg_dir / "ptb-sample").rglob("*.hea")).with_suffix("")),
                        physical=False)  # fmt: skip
    cases = [
        (long, 500.0, ["II", "V5"], 200.0, 0.0),
        (ptb.d_signal, ptb.fs, [normalise_lead_name(n) for n in ptb.sig_name], ptb.adc_gain,
         ptb.baseline),
    ]  # fmt: skip
    for counts, fs_hz, names, gains, baseline in cases:
        data = write_dicom(counts, fs_hz, names, counts_per_mv=gains, baseline_counts=baseline)
        ds = pydicom.dcmread(io.BytesIO(data))
        assert ds.SOPClassUID == GENERAL_ECG_SOP_CLASS
        ecg = read_dicom(data)
        assert np.array_equal(ecg.samples, counts)
        assert ecg.lead_names == tuple(names)
        path = tmp_path / "general.dcm"
        path.write_bytes(data)
        done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        lines = (done.stdout + done.stderr).splitlines()
        assert "GeneralECG" in lines
        assert [line for line in lines if line.startswith("Error")] == []
