"""``teleconsult ecg report`` end to end: real records in, PDF and PNG files out, read back
with poppler and Pillow."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import wfdb
from PIL import Image

from ecg.dicom import write_dicom
from ecg.paper_content import Patient, ReportInfo
from ecg.record import normalise_lead_name
from teleconsult.cli import main

needs_poppler = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) not installed"
)


def _text(pdf: Path) -> str:
    done = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, check=True)
    return done.stdout.decode("utf-8")


def _annotations(path: Path) -> Path:
    document = {
        "format": "teleconsult-ecg-annotations",
        "summary": {"hr_median_bpm": 45.4},
        "measurements": {
            "global": {"pr_ms": 158.0, "qrs_ms": 94.0, "qt_ms": None,
                       "qtc_ms": {"bazett": None, "fridericia": 401.0}}
        },
        "statements": [
            {"code": "SBRAD", "text_en": "Sinus bradycardia", "text_zh": "窦性心动过缓",
             "severity": "abnormal", "evidence": {}},
            {"text_en": "a statement without a code is left out"},
        ],
        "critical": [{"code": "PAUSE", "onset": 10, "offset": 2000, "text_en": "Pause",
                      "text_zh": "长间歇"}],
    }  # fmt: skip
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@needs_poppler
def test_pdf_of_a_ludb_record_with_annotations(
    ecg_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A LUDB record and its annotation JSON give a one-page A4 PDF whose text names the
    patient's sex and age from the header, the measurements and the statements."""
    out = tmp_path / "reports" / "1.pdf"
    status = main(["ecg", "report", str(ecg_dir / "ludb-dev" / "1"), "--out", str(out),
                   "--annotations", str(_annotations(tmp_path / "1.json"))])  # fmt: skip
    assert status == 0
    assert str(out) in capsys.readouterr().out
    text = _text(out)
    for words in (
        "性别: 女",
        "年龄: 51岁",
        "45 次/分",
        "158 ms",
        "94 ms",
        "窦性心动过缓 (SBRAD)",
        "危急值: 长间歇 (PAUSE)",
        "滤波 0.05–150 Hz",
        "500 Hz",
    ):
        assert words in text, words
    assert "without a code" not in text
    info = subprocess.run(["pdfinfo", str(out)], capture_output=True, text=True, check=True)
    assert "Pages:           1" in info.stdout
    assert "(A4)" in info.stdout
    assert [p.name for p in out.parent.iterdir()] == ["1.pdf"]  # no staging file left


def test_png_page_of_a_long_record(ecg_dir: Path, tmp_path: Path) -> None:
    """A 30 min MIT-BIH record prints its third page as a PNG at the asked resolution,
    in English, 12x1, with the two leads it has."""
    out = tmp_path / "100.png"
    status = main(["ecg", "report", str(ecg_dir / "mitdb" / "100"), "--out", str(out),
                   "--lang", "en", "--layout", "12x1", "--page", "3", "--dpi", "100",
                   "--filter", "monitoring"])  # fmt: skip
    assert status == 0
    with Image.open(out) as image:
        assert image.size == (round(297 / 25.4 * 100), round(210 / 25.4 * 100))


@needs_poppler
def test_dicom_record_is_printed_with_its_own_header(ecg_dir: Path, tmp_path: Path) -> None:
    """A DICOM waveform (written by ecg.dicom) prints with the patient from its patient
    module, in English."""
    record = wfdb.rdrecord(str(ecg_dir / "ludb-dev" / "2"), physical=False)
    names = [normalise_lead_name(n) for n in record.sig_name]
    source = tmp_path / "2.dcm"
    info = ReportInfo(patient=Patient("Li^Si", "C-77", "M", 70))
    source.write_bytes(
        write_dicom(record.d_signal, record.fs, names, info, counts_per_mv=record.adc_gain,
                    baseline_counts=record.baseline)
    )  # fmt: skip
    out = tmp_path / "2.pdf"
    assert main(["ecg", "report", str(source), "--out", str(out), "--lang", "en"]) == 0
    text = _text(out)
    for words in ("Name: Li^Si", "ID: C-77", "Sex: male", "Age: 70 y"):
        assert words in text, words


def test_bad_input_is_reported_not_raised(
    ecg_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing record, a file that is not DICOM, broken annotations, a wrong suffix:
    exit 1 or 2 with the reason, and no file written."""
    out = tmp_path / "x.pdf"
    assert main(["ecg", "report", str(tmp_path / "nothing"), "--out", str(out)]) == 1
    assert "header file not found" in capsys.readouterr().err
    fake = tmp_path / "fake.dcm"
    fake.write_bytes(b"\x00" * 300)
    assert main(["ecg", "report", str(fake), "--out", str(out)]) == 1
    assert "not_dicom" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    record = str(ecg_dir / "ludb-dev" / "1")
    assert main(["ecg", "report", record, "--out", str(out), "--annotations", str(broken)]) == 1
    assert "cannot read annotation JSON" in capsys.readouterr().err
    assert main(["ecg", "report", record, "--out", str(tmp_path / "x.svg")]) == 2
    assert "must end in .pdf or .png" in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.glob(".x.pdf.*")) == []


def test_record_with_few_leads_and_unknown_names(tmp_path: Path) -> None:
    """A 3 s 100 Hz record of two leads, one named 'vx', prints without complaint."""
    signal = np.sin(np.linspace(0, 20, 300))[:, None] * np.array([[1.0, 0.5]])
    wfdb.wrsamp("odd", fs=100, units=["mV", "mV"], sig_name=["II", "vx"], p_signal=signal,
                fmt=["16", "16"], write_dir=str(tmp_path))  # fmt: skip
    out = tmp_path / "odd.png"
    assert main(["ecg", "report", str(tmp_path / "odd"), "--out", str(out)]) == 0
    assert out.stat().st_size > 0
