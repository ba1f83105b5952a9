"""``teleconsult ecg streams`` and ``ecg export`` on streams stored by the real service."""

from __future__ import annotations

import functools
import json
import math
import uuid
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecg.device import Start
from ecg.output import read_json
from fixtures.make_fixtures import synthetic12
from sessions.tokens import verify_token
from signaling.server import SignalingServer
from store.audit import AuditQuery, query
from store.stores import open_store
from teleconsult.app import STREAMS_DIR, install_ecg
from teleconsult.cli import main
from teleconsult.device_cmd import SimulatedRecord, simulate
from tests.ecg.test_device import make_start
from tests.signaling.conftest import SECRET, server, web_dir, ws_url
from tests.signaling.test_device_endpoint import device_token

__all__ = ["server", "web_dir"]  # fixtures


@pytest.fixture
async def data_dir(server: SignalingServer, tmp_path: Path) -> Path:
    """A data folder holding one ended 3 s stream and one left open (its device vanished)."""
    data = tmp_path / "var"
    ecg = install_ecg(server, data / STREAMS_DIR, functools.partial(verify_token, SECRET))
    source = SimulatedRecord.read(str(synthetic12()), duration_s=3.0)
    url = ws_url(server, "/device")
    await simulate(source, url=url, token=device_token(), device="cart-1", speed=math.inf)
    writer = ecg.store.open("cart-2", _start(source))
    writer.append(0, source.samples[:250])
    writer.sync()
    ecg.store.release(writer)
    return data


def _start(source: SimulatedRecord) -> Start:
    """A start message for a second device's stream of the same shape."""
    return make_start(device="cart-2", leads=source.leads)


def test_streams_lists_states(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both streams are listed with device, samples and state; the JSON form parses."""
    assert main(["ecg", "streams", "--data-dir", str(data_dir), "--json"]) == 0
    rows = {row["device"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["cart-1"]["samples"] == 1500
    assert rows["cart-1"]["state"] in ("ended", "finalised")
    assert rows["cart-2"]["state"] == "live"
    assert rows["cart-2"]["samples"] == 250
    assert main(["ecg", "streams", "--data-dir", str(data_dir)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 3
    assert table[1].split()[-1] in ("live", "ended", "finalised")


def test_export_is_bit_exact_with_annotations(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exported .dat holds the device's samples; .qrs and .json describe the same record."""
    main(["ecg", "streams", "--data-dir", str(data_dir), "--json"])
    ended = next(r for r in json.loads(capsys.readouterr().out) if r["device"] == "cart-1")
    out = tmp_path / "out"
    assert (
        main(["ecg", "export", ended["stream"], "--out", str(out), "--data-dir", str(data_dir)])
        == 0
    )
    source = SimulatedRecord.read(str(synthetic12()), duration_s=3.0)
    exported = wfdb.rdrecord(str(out / ended["stream"]), physical=False)
    np.testing.assert_array_equal(exported.d_signal, source.samples)
    assert exported.adc_gain == source.adc_gain
    annotation = read_json(out / f"{ended['stream']}.json")
    assert annotation.n_samples == 1500
    assert len(annotation.beats) >= 2
    assert (out / f"{ended['stream']}.qrs").exists()
    # The export is on the audit trail, naming the patient.
    stores = open_store(data_dir=data_dir)
    try:
        with stores.engine.connect() as conn:
            rows = query(conn, AuditQuery(action="ecg.exported"))
    finally:
        stores.close()
    assert [(r.target, r.patient) for r in rows] == [
        (f"stream:{ended['stream']}", ended["patient"])
    ]
    assert rows[0].actor.startswith("cli:")


def test_export_refusals(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown id, a malformed id and a stream still open each exit 1 with the reason."""
    base = ["--out", str(tmp_path / "o"), "--data-dir", str(data_dir)]
    assert main(["ecg", "export", str(uuid.uuid4()), *base]) == 1
    assert "no stream" in capsys.readouterr().err
    assert main(["ecg", "export", "nope", *base]) == 1
    assert "not a stream id" in capsys.readouterr().err
    main(["ecg", "streams", "--data-dir", str(data_dir), "--json"])
    live = next(r for r in json.loads(capsys.readouterr().out) if r["device"] == "cart-2")
    assert main(["ecg", "export", live["stream"], *base]) == 1
    assert "has not ended" in capsys.readouterr().err
    assert main(["ecg", "streams", "--data-dir", str(tmp_path / "empty")]) == 1
    assert "no streams" in capsys.readouterr().err
