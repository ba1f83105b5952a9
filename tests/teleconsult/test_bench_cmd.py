"""Tests of ``teleconsult ecg bench``: scoring real records, peers, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import wfdb

from ecg.detect import detect_qrs
from ecg.scoring import reference_beats, score_beats
from teleconsult.bench_cmd import parse_peers
from teleconsult.cli import main


def _link_record(src_dir: Path, name: str, dst_dir: Path) -> None:
    """Make a record visible in dst_dir through symbolic links (no data is copied)."""
    for suffix in (".hea", ".dat", ".atr"):
        (dst_dir / f"{name}{suffix}").symlink_to(src_dir / f"{name}{suffix}")


def test_bench_scores_a_record_with_a_peer(
    ecg_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One record, gqrs beside us: the JSON totals equal a direct scoring of each."""
    out = tmp_path / "bench.json"
    args = ["ecg", "bench", str(ecg_dir / "mitdb"), "--records", "100", "--peers", "gqrs"]
    status = main([*args, "--json", str(out), "--verbose"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "teleconsult" in printed
    assert "speed teleconsult/gqrs" in printed
    summary = json.loads(out.read_text())["summary"]
    path = str(ecg_dir / "mitdb" / "100")
    record = wfdb.rdrecord(path)
    annotation = wfdb.rdann(path, "atr")
    reference = reference_beats(annotation.sample, annotation.symbol)
    ours = score_beats(reference, detect_qrs(record.p_signal, record.fs), record.fs)
    assert (summary["teleconsult"]["tp"], summary["teleconsult"]["fp"]) == (ours.tp, ours.fp)
    assert summary["teleconsult"]["fn"] == ours.fn
    assert summary["gqrs"]["tp"] + summary["gqrs"]["fn"] == reference.size
    assert summary["teleconsult"]["samples_per_s_per_lead"] > 0


def test_unreadable_record_is_reported_and_others_scored(
    ecg_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt header names the record and exits 1; the good record is still scored."""
    _link_record(ecg_dir / "mitdb", "100", tmp_path)
    (tmp_path / "999.hea").write_text("this is not a header\n")
    (tmp_path / "999.atr").symlink_to(ecg_dir / "mitdb" / "100.atr")
    out = tmp_path / "bench.json"
    status = main(["ecg", "bench", str(tmp_path), "--peers", "none", "--json", str(out)])
    assert status == 1
    assert "999" in capsys.readouterr().err
    data = json.loads(out.read_text())
    assert data["summary"]["teleconsult"]["records"] == 1
    errors = {Path(r["path"]).name: r["error"] for r in data["records"]}
    assert errors["100"] is None
    assert errors["999"]


def test_folder_without_records_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No .atr in the folder: exit status 2 and a message."""
    assert main(["ecg", "bench", str(tmp_path), "--peers", "none"]) == 2
    assert "no record" in capsys.readouterr().err


def test_missing_folder_and_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing folder, an unknown peer, --jobs 0 or --repeat 0: exit 2 with the reason."""
    assert main(["ecg", "bench", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["ecg", "bench", str(tmp_path), "--peers", "pan"]) == 2
    assert "unknown peer pan" in capsys.readouterr().err
    assert main(["ecg", "bench", str(tmp_path), "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err
    assert main(["ecg", "bench", str(tmp_path), "--repeat", "0"]) == 2
    assert "--repeat" in capsys.readouterr().err


def test_parse_peers() -> None:
    """Peer lists are split, lower-cased and deduplicated; 'none' means no peer."""
    assert parse_peers("XQRS, gqrs,xqrs") == ("xqrs", "gqrs")
    assert parse_peers("none") == ()
