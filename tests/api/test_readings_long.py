"""The reading API on a long record reads only what each action shows: the median beat,
the signing and the FHIR report the engine's first 10 s, the PDF its pages' seconds, the
DICOM file the whole record a window at a time; each gives what the whole-record path
gives for the same 10 s as a short record."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import numpy as np
import pydicom
import pytest

from api.reading_fhir import ReadingFhirController
from api.readings import file_length, file_window
from consults.reading_repositories import ReadingRecord
from ecg.dicom import read_dicom
from ecg.record import Record, read_record
from tests.api.test_readings import RECORD, Api, serving
from tests.pg import Database, database

__all__ = ["database"]

LONG_S = 3600  # 1 h of 12 leads at 500 Hz: 43 MB in format 16


def _write(path: Path, counts: np.ndarray, fs_hz: float, names: tuple[str, ...]) -> None:
    counts.astype("<i2").tofile(path.with_suffix(".dat"))
    lines = [f"{path.name} {len(names)} {fs_hz:g} {counts.shape[0]}"]
    lines += [f"{path.name}.dat 16 1000(0)/mV 16 0 0 0 0 {name}" for name in names]
    path.with_suffix(".hea").write_text("\n".join(lines) + "\n")


class ShortAndLong:
    """Stream ``short`` is a 10 s record read whole (the whole-record path); any other
    stream is the same 10 s repeated for an hour, whose whole signal must never be read
    (``signal_of`` fails the test)."""

    def __init__(self, folder: Path) -> None:
        found = read_record(RECORD)
        counts = np.round(np.nan_to_num(found.signal_mv) * 1000).astype(np.int16)
        self.short, self.long = folder / "short", folder / "long"
        _write(self.short, counts, found.fs_hz, found.lead_names)
        _write(self.long, np.tile(counts, (LONG_S // 10, 1)), found.fs_hz, found.lead_names)

    def signal_of(self, record: ReadingRecord) -> Record | None:
        if record.stream != "short":
            raise AssertionError("the whole of the long record was read")
        return read_record(self.short)

    def _path(self, record: ReadingRecord) -> Path:
        return self.short if record.stream == "short" else self.long

    def length_of(self, record: ReadingRecord) -> tuple[int, float] | None:
        return file_length(self._path(record))

    def window_of(self, record: ReadingRecord, start: int, stop: int) -> Record | None:
        return file_window(self._path(record), start, stop)


@pytest.fixture
async def api(database: Database, tmp_path: Path) -> AsyncIterator[Api]:
    """The account, reading and FHIR APIs over the short and the long record."""
    if not RECORD.with_suffix(".hea").exists():
        pytest.skip(f"PTB-XL sample not found at {RECORD}")
    async with serving(database, ShortAndLong(tmp_path), ReadingFhirController) as served:
        yield served


def _read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


async def test_median_signing_and_reports_of_a_long_record_read_a_bounded_part(
    api: Api,
) -> None:
    """On a 1-hour 12-lead record (43 MB) the median beat and the signing read < 1 MiB,
    the PDF < 4 MiB more than the short record's (its 20 pages of 10 s, the footer
    saying the record's hour); the median beat,
    and the FHIR Observations equal the short record's."""
    rw = api.rw
    reader = await api.client("liu.reader")
    answers = {}
    waveforms: dict[str, np.ndarray] = {}
    pdf_read: dict[str, int] = {}  # the renderer reads its CJK font (~20 MB) each time
    for stream in ("short", "long"):
        made = rw.stream_task(stream)
        url = f"/api/v1/readings/{made.task.id}"
        before = _read_bytes()
        median = await reader.get(f"{url}/median")
        assert median.status_code == 200, median.text
        assert (await reader.post(f"{url}/claim")).status_code == 200
        saved = await reader.put(f"{url}/report", json={"statements": ["SR"], "text": "ok"})
        assert saved.status_code == 200, saved.text
        signed = await reader.post(f"{url}/sign", json={"totp": api.fresh_totp("liu.reader")})
        assert signed.status_code == 200, signed.text
        read = _read_bytes() - before
        if stream == "long":
            assert read < 1024 * 1024, read
        before = _read_bytes()
        pdf = await reader.get(f"{url}/report.pdf")
        assert pdf.status_code == 200, pdf.text
        pdf_read[stream] = _read_bytes() - before
        if stream == "long":  # the footer says how much of how long a record is shown
            text = await anyio.run_process(["pdftotext", "-", "-"], input=pdf.content)
            assert f"{LONG_S}" in text.stdout.decode()
        dcm = await reader.get(f"{url}/report.dcm")
        assert dcm.status_code == 200, dcm.text
        waveforms[stream] = read_dicom(dcm.content).signal_mv
        fhir = await reader.get(f"{url}/report.fhir")
        assert fhir.status_code == 200, fhir.text
        document = signed.json()
        observations = [
            entry["resource"].get("valueQuantity")
            for entry in json.loads(fhir.content)["entry"]
            if entry["resource"]["resourceType"] == "Observation"
        ]
        median_json = median.json()
        median_json.pop("reading", None)
        answers[stream] = (
            median_json,
            observations,
            document["state"],
        )
    assert answers["long"] == answers["short"]
    # The DICOM file, quantised a window at a time, holds the whole hour, the same
    # samples as the short record's whole-record file.
    assert waveforms["long"].shape == (LONG_S * 500, 12)
    np.testing.assert_array_equal(waveforms["long"][:5000], waveforms["short"])
    np.testing.assert_array_equal(waveforms["long"][-5000:], waveforms["short"])
    assert pdf_read["long"] - pdf_read["short"] < 4 * 1024 * 1024, pdf_read


async def test_the_dicom_file_is_sent_from_a_temporary_file_then_removed(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The long record's report.dcm is an attachment, not cached, whose bytes are
    pydicom's encoding of the dataset they hold, with every sample of the hour; it is
    sent from a temporary file that is gone once the server has finished the request."""
    if not RECORD.with_suffix(".hea").exists():
        pytest.skip(f"PTB-XL sample not found at {RECORD}")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    signals = ShortAndLong(tmp_path)
    async with serving(database, signals) as served:
        made = served.rw.stream_task("long")
        url = f"/api/v1/readings/{made.task.id}"
        reader = await served.client("liu.reader")
        assert (await reader.post(f"{url}/claim")).status_code == 200
        saved = await reader.put(f"{url}/report", json={"statements": ["SR"], "text": "ok"})
        assert saved.status_code == 200, saved.text
        totp = served.fresh_totp("liu.reader")
        assert (await reader.post(f"{url}/sign", json={"totp": totp})).status_code == 200
        dcm = await reader.get(f"{url}/report.dcm")
        await reader.aclose()
    assert list(temporary.glob("teleconsult-*")) == []
    assert dcm.status_code == 200, dcm.text
    assert dcm.headers["content-type"] == "application/dicom"
    assert dcm.headers["content-disposition"] == f'attachment; filename="ecg-{made.task.id}.dcm"'
    assert dcm.headers["cache-control"] == "no-store"
    ds = pydicom.dcmread(io.BytesIO(dcm.content))
    again = io.BytesIO()
    ds.save_as(again, enforce_file_format=True)
    assert again.getvalue() == dcm.content
    counts = np.fromfile(signals.long.with_suffix(".dat"), dtype="<i2").reshape(-1, 12)
    np.testing.assert_array_equal(read_dicom(dcm.content).samples, counts)
