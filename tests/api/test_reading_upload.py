"""``POST /api/v1/ecg/records`` over real uvicorn on 127.0.0.1 and the real store: WFDB
records written by ``wfdb`` (a PTB-XL 12-lead in format 16, MIT-BIH's format 212)
become reading tasks whose stored signal is the uploaded one; bad records, oversize
files and uploads for another county's clinic are refused with their codes, audited,
and leave nothing stored."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import wfdb

from api.app import create_app, openapi_gaps
from api.auth import account_api
from api.edge import Edge, EdgeConfig
from api.reading_upload import (
    REFUSALS,
    RecordStore,
    RecordUploadConfig,
    RecordUploads,
    UploadedOrStreamed,
    parse_wfdb,
    record_upload_api,
)
from api.readings import reading_api
from ecg.record import read_record
from tests.api.test_consults import error_of
from tests.api.test_readings import Api
from tests.conftest import ecg_data_dir
from tests.consults.test_reading_service_world import make_reading_world
from tests.pg import Database, database
from tests.teleconsult.test_platform_server import Running, build_directory, running

__all__ = ["database", "running"]

URL = "/api/v1/ecg/records"
CONFIG = RecordUploadConfig(max_signal_bytes=4 * 1024 * 1024, max_samples_per_lead=700_000)


@dataclass
class UploadApi(Api):
    """The running app, its world and the record store."""

    store: RecordStore


@pytest.fixture
async def api(database: Database, tmp_path: Path) -> AsyncIterator[UploadApi]:
    """Account, reading and upload APIs on a free loopback port; the reading API's
    signals are the uploaded records."""
    rw = make_reading_world(database)
    store = RecordStore(tmp_path / "records")
    uploads = RecordUploads(
        service=rw.service,
        store=store,
        directory=rw.world.stores.directory,
        audit=rw.world.stores.audit,
        config=CONFIG,
    )
    parts = [
        account_api(rw.world.accounts, rw.world.directory),
        reading_api(rw.service, UploadedOrStreamed(store)),
        record_upload_api(uploads),
    ]
    app = create_app(
        route_handlers=[h for p in parts for h in p.route_handlers],
        dependencies={k: v for p in parts for k, v in p.dependencies.items()},
        middleware=[m for p in parts for m in p.middleware],
    )
    edge = Edge(app, EdgeConfig(port=0), ws_max_size_bytes=1 << 20)
    await edge.start()
    try:
        yield UploadApi(edge.url, rw, store)
    finally:
        await edge.close()
        rw.world.stores.close()


def _write(folder: Path, name: str, digital: np.ndarray, fmt: str, fs: float = 500.0) -> Path:
    """A record written by wfdb (gain 1000/mV, baseline 0); its path without suffix."""
    n_leads = digital.shape[1]
    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * n_leads,
        sig_name=[*leads, "V3R", "V4R", "V5R", "V7"][:n_leads],
        d_signal=digital.astype(np.int32),
        fmt=[fmt] * n_leads,
        adc_gain=[1000.0] * n_leads,
        baseline=[0] * n_leads,
        write_dir=str(folder),
    )
    return folder / name


def _synthetic(seconds: float = 2.0, leads: int = 12, fs: float = 500.0) -> np.ndarray:
    t = np.arange(int(seconds * fs)) / fs
    return np.stack([np.round(400 * np.sin(2 * np.pi * 1.2 * t + k)) for k in range(leads)], axis=1)


def _files(path: Path) -> dict[str, tuple[str, bytes]]:
    return {
        "header": (path.name + ".hea", path.with_suffix(".hea").read_bytes()),
        "signal": (path.name + ".dat", path.with_suffix(".dat").read_bytes()),
    }


def _stored(store: RecordStore) -> list[str]:
    return sorted(p.name for p in store.root.glob("*")) if store.root.exists() else []


async def test_a_12_lead_record_becomes_a_reading_task(api: UploadApi, tmp_path: Path) -> None:
    """A PTB-XL 12-lead record, rewritten by wfdb in format 16, uploaded by the clinic's
    doctor: 201 with the task; it is on the reader's worklist with its record; the
    stored record reads back the uploaded physical values exactly; the reading page's
    window is that signal; the upload is audited with the files' digests."""
    source = ecg_data_dir() / "ptbxl-sample" / "HR06000"
    if not source.with_suffix(".hea").exists():
        pytest.skip(f"PTB-XL sample not found at {source}")
    original = wfdb.rdrecord(str(source), physical=False)
    path = tmp_path / "HR06000"
    wfdb.wrsamp(
        "HR06000",
        fs=original.fs,
        units=original.units,
        sig_name=original.sig_name,
        d_signal=original.d_signal,
        fmt=["16"] * original.n_sig,
        adc_gain=original.adc_gain,
        baseline=original.baseline,
        comments=[*original.comments, "患者 张三"],
        write_dir=str(tmp_path),
    )
    doctor = await api.client("li.doctor")
    reader = await api.client("liu.reader")
    answer = await doctor.post(URL, files=_files(path), data={"patient": "p-42", "stat": "true"})
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["clinic"] == "village-1"
    assert made["state"] == "new"
    assert made["leads"][:3] == ["I", "II", "III"]
    assert made["n_samples"] == original.sig_len
    assert made["fs_hz"] == original.fs
    assert isinstance(made["critical"], list)
    assert made["top_statements"]

    listed = (await reader.get("/api/v1/readings", params={"state": "new"})).json()
    [item] = listed["items"]
    assert (item["id"], item["record"], item["stream"]) == (made["reading"], made["record"], None)
    assert item["patient"] == "p-42"
    assert item["stat"] is True

    stored = read_record(api.store.root / made["record"])
    expected = read_record(path)
    assert stored.lead_names == expected.lead_names
    assert stored.fs_hz == expected.fs_hz
    np.testing.assert_array_equal(stored.signal_mv, expected.signal_mv)
    # Kept as UTF-8 in the stored header (wfdb itself reads comments as ASCII).
    assert "# 患者 张三" in (api.store.root / f"{made['record']}.hea").read_text("utf-8")
    window = await reader.get(f"/api/v1/readings/{made['reading']}/ecg", params={"duration_s": 2})
    assert window.status_code == 200, window.text
    assert window.json()["leads"] == list(expected.lead_names)

    rows = api.rw.actions(f"record:{made['record']}")
    assert rows == [("record.upload", "ok")]
    created = api.rw.actions(f"reading:{made['reading']}")
    assert created[0] == ("reading.created", "ok")
    for client in (doctor, reader):
        await client.aclose()


async def test_format_212_from_mitdb(api: UploadApi, tmp_path: Path) -> None:
    """MIT-BIH record 100 (format 212, 2 leads, 30 min) as wfdb reads it: the centre's
    reader uploads it for the clinic; the stored samples equal the original's."""
    source = ecg_data_dir() / "mitdb" / "100"
    if not source.with_suffix(".hea").exists():
        pytest.skip(f"MIT-BIH record not found at {source}")
    reader = await api.client("liu.reader")
    answer = await reader.post(URL, files=_files(source), data={"clinic": "village-1"})
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["leads"] == ["MLII", "V5"]
    stored = read_record(api.store.root / made["record"])
    np.testing.assert_array_equal(stored.signal_mv, read_record(source).signal_mv)
    await reader.aclose()


def _header(path: Path) -> str:
    return path.with_suffix(".hea").read_text()


async def test_bad_records_are_refused_and_nothing_is_stored(
    api: UploadApi, tmp_path: Path
) -> None:
    """Each lie or excess of a record: its 4xx and stable code, an audit row ``denied``,
    no file stored, no task made."""
    good = _write(tmp_path, "good", _synthetic(), "16")
    files = _files(good)
    head, dat = files["header"][1], files["signal"][1]
    text = _header(good)
    record_line, *signal_lines = text.splitlines()
    wide = _write(tmp_path, "wide", _synthetic(leads=16), "16")
    long = _write(tmp_path, "long", _synthetic(seconds=1500, leads=1), "16")
    lines_13 = "\n".join([record_line.replace(" 12 ", " 13 "), *signal_lines, signal_lines[0]])
    cases: list[tuple[str, bytes, bytes, str]] = [
        ("not a header", b"hello world\n", dat, "bad_header"),
        ("empty header", b"", dat, "bad_header"),
        ("NUL", b"good 12 500 1000\x00\n", dat, "bad_header"),
        ("not UTF-8", head + b"# \xff\xfe patient\n", dat, "not_utf8"),
        ("truncated signal", head, dat[:-2], "wrong_length"),
        ("signal too long", head, dat + b"\0\0", "wrong_length"),
        ("lies about length", text.replace(" 1000", " 900", 1).encode(), dat, "wrong_length"),
        ("lies about leads", lines_13.encode(), dat, "wrong_length"),
        ("describes fewer", "\n".join(text.splitlines()[:-1]).encode(), dat, "bad_header"),
        ("rate", text.replace(" 500 ", " 5000 ", 1).encode(), dat, "bad_sampling_rate"),
        ("no rate", f"good 12\n{chr(10).join(signal_lines)}".encode(), dat, "bad_header"),
        ("format 80", text.replace(" 16 ", " 80 ").encode(), dat, "unsupported_record"),
        ("offset", text.replace(".dat 16 ", ".dat 16+8 ").encode(), dat, "unsupported_record"),
        ("segments", text.replace("good 12", "good/2 12", 1).encode(), dat, "unsupported_record"),
        ("unit", text.replace("/mV", "/mmHg", 1).encode(), dat, "not_voltage"),
        ("checksum", head, bytes([dat[0] ^ 1]) + dat[1:], "checksum_mismatch"),
        ("leads", *(_files(wide)[k][1] for k in ("header", "signal")), "too_many_leads"),
        ("samples", *(_files(long)[k][1] for k in ("header", "signal")), "too_many_samples"),
        ("header size", head + b"#" * CONFIG.max_header_bytes, dat, "header_too_large"),
        ("signal size", head, b"\0" * (CONFIG.max_signal_bytes + 2), "signal_too_large"),
    ]
    doctor = await api.client("li.doctor")
    reader = await api.client("liu.reader")
    for what, header, signal, code in cases:
        answer = await doctor.post(
            URL, files={"header": ("x.hea", header), "signal": ("x.dat", signal)}
        )
        assert error_of(answer) == (REFUSALS[code][0], code), (what, answer.text)
        assert answer.json()["error"]["reason"], what
        assert _stored(api.store) == [], what
    denied = [o for a, o in api.rw.actions("record:") if a == "record.upload"]
    assert denied == ["denied"] * len(cases)
    assert error_of(await doctor.post(URL, files={"header": ("x.hea", head)})) == (
        400,
        "missing_file",
    )
    assert (await reader.get("/api/v1/readings")).json()["total"] == 0
    for client in (doctor, reader):
        await client.aclose()


async def test_who_may_upload(api: UploadApi, tmp_path: Path) -> None:
    """Another county's reader uploading for the village clinic is refused (403),
    as is a clinic nobody knows; the request over the configured size is 413
    ``too_large`` before it is read; the OpenAPI document describes the endpoint."""
    good = _files(_write(tmp_path, "good", _synthetic(), "16"))
    far = await api.client("far.reader")
    assert error_of(await far.post(URL, files=good, data={"clinic": "village-1"})) == (
        403,
        "forbidden",
    )
    doctor = await api.client("li.doctor")
    assert error_of(await doctor.post(URL, files=good, data={"clinic": "nowhere"})) == (
        403,
        "forbidden",
    )
    huge = {"header": good["header"], "signal": ("x.dat", b"\0" * (CONFIG.max_request_bytes))}
    assert error_of(await doctor.post(URL, files=huge)) == (413, "too_large")
    assert _stored(api.store) == []
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        assert error_of(await anonymous.post(URL, files=good))[0] == 401
        document = (await anonymous.get("/api/v1/openapi.json")).json()
    assert URL in document["paths"]
    form = document["paths"][URL]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["required"] == ["header", "signal"]
    assert [g for g in openapi_gaps(document) if "/ecg/records" in g] == []
    for client in (far, doctor):
        await client.aclose()


async def test_the_assembled_server_takes_uploads(running: Running, tmp_path: Path) -> None:
    """On the server as ``teleconsult serve`` wires it: the clinic's doctor uploads a
    record; the county's reader sees the task and its signal (the reading API draws
    uploads from the data dir); its report is not signed yet (``report.fhir`` 409)."""
    await build_directory(running)
    doctor = await running.login("li.doctor")
    reader = await running.login("chen.reader")
    good = _files(_write(tmp_path, "good", _synthetic(seconds=10), "16"))
    answer = await running.http.post(URL, files=good, headers={"authorization": f"Bearer {doctor}"})
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["clinic"] == "town-1"
    assert made["centre"] == "county-1"
    found = await running.call(reader, "GET", f"/readings/{made['reading']}/ecg?duration_s=1")
    assert found.status_code == 200, found.text
    assert found.json()["leads"][:2] == ["I", "II"]
    fhir = await running.call(reader, "GET", f"/readings/{made['reading']}/report.fhir")
    assert error_of(fhir) == (409, "not_signed")


async def test_the_signal_size_limit_at_its_boundary(api: UploadApi) -> None:
    """A signal of exactly ``max_signal_bytes`` (4 leads in format 16) is taken; one
    byte more is refused while it streams, 413 ``signal_too_large`` with a reason,
    nothing kept (not even the partly received file) and the attempt audited."""
    limit = CONFIG.max_signal_bytes
    n = limit // 8  # 4 leads, 2 bytes each
    names = ("I", "II", "V1", "V2")
    head = (
        f"big 4 500 {n}\n" + "".join(f"big.dat 16 200(0)/mV 16 0 0 0 0 {x}\n" for x in names)
    ).encode()
    doctor = await api.client("li.doctor")
    over = await doctor.post(
        URL, files={"header": ("big.hea", head), "signal": ("big.dat", b"\0" * (limit + 1))}
    )
    assert error_of(over) == (413, "signal_too_large")
    assert str(limit) in over.json()["error"]["reason"]
    assert _stored(api.store) == []
    assert [o for a, o in api.rw.actions("record:") if a == "record.upload"] == ["denied"]
    at = await doctor.post(
        URL, files={"header": ("big.hea", head), "signal": ("big.dat", b"\0" * limit)}
    )
    assert at.status_code == 201, at.text
    assert at.json()["n_samples"] == n
    assert not [name for name in _stored(api.store) if name.startswith(".")]
    await doctor.aclose()


def test_checking_a_long_record_holds_a_few_mib(tmp_path: Path) -> None:
    """A 1-hour 12-lead record in format 212 (39 MB) is checked and written as format 16
    with at most 12 MiB allocated at once (tracemalloc's peak), its checksums right and
    the stored samples those of the upload."""
    fs_hz, n, leads = 500, 3600 * 500, 12
    ramp = (np.arange(n, dtype=np.int64) % 2000 - 1000).astype(np.int16)
    counts = np.stack([ramp] * leads, axis=1).ravel()
    pairs = counts.reshape(-1, 2).astype(np.int32) & 0xFFF
    packed = np.empty((pairs.shape[0], 3), dtype=np.uint8)
    packed[:, 0] = pairs[:, 0] & 0xFF
    packed[:, 1] = ((pairs[:, 0] >> 8) & 0x0F) | (((pairs[:, 1] >> 8) & 0x0F) << 4)
    packed[:, 2] = pairs[:, 1] & 0xFF
    signal = tmp_path / "long.dat"
    packed.tofile(signal)
    del counts, pairs, packed
    checksum = int(ramp.astype(np.int64).sum()) & 0xFFFF
    checksum -= 0x10000 if checksum >= 0x8000 else 0
    header = f"long {leads} {fs_hz} {n}\n" + "".join(
        f"long.dat 212 200(0)/mV 12 0 0 {checksum} 0 V{lead}\n" for lead in range(leads)
    )
    config = RecordUploadConfig(max_signal_bytes=64 * 1024 * 1024, max_samples_per_lead=n)
    canonical = tmp_path / "canonical.dat"
    tracemalloc.start()
    try:
        parsed = parse_wfdb(header.encode(), signal, config, canonical)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * 1024 * 1024, peak
    assert parsed.n_samples == n
    assert canonical.stat().st_size == n * leads * 2
    stored = np.memmap(canonical, dtype="<i2", mode="r").reshape(n, leads)
    np.testing.assert_array_equal(stored[:, 5], ramp)
    assert parsed.head.shape == (10 * fs_hz, leads)
