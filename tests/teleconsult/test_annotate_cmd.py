"""``teleconsult ecg annotate`` end to end on records written into a temporary folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wfdb

from fixtures.make_fixtures import STANDARD_LEADS, regular_beats, synthetic_ecg, write_record
from teleconsult.cli import main

REPO = Path(__file__).resolve().parents[2]
FS_HZ = 360.0


def _good(folder: Path, name: str, rate_bpm: float = 72.0, duration_s: float = 12.0) -> Path:
    signal = synthetic_ecg(FS_HZ, duration_s, regular_beats(duration_s, rate_bpm), n_leads=3)
    return write_record(folder, name, signal, FS_HZ, ["ii", "avr", "v1"])


def _corrupt(folder: Path, name: str) -> Path:
    path = _good(folder, name)
    Path(f"{path}.hea").write_text("this is not a header\n")
    return path


def test_one_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One record: both files written, one stdout line, no progress bar, exit 0."""
    record = _good(tmp_path / "in", "rec1")
    status = main(["ecg", "annotate", str(record), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 0
    assert captured.out.startswith("rec1: 14 beats, median HR 72 bpm, 0 flags")
    assert "%" not in captured.err
    document = json.loads((tmp_path / "out" / "rec1.json").read_text())
    assert document["record"]["lead_names"] == ["II", "aVR", "V1"]
    assert document["summary"]["beat_count"] == 14
    annotations = wfdb.rdann(str(tmp_path / "out" / "rec1"), "qrs")
    assert list(annotations.sample) == document["beats"]["sample"]


def test_folder_with_a_bad_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Corrupt and truncated records in a folder: reported, the others annotated, exit 1."""
    folder = tmp_path / "in"
    for name in ("a", "b", "c"):
        _good(folder, name)
    _corrupt(folder, "broken")
    truncated = _good(folder, "short")
    data = Path(f"{truncated}.dat")
    data.write_bytes(data.read_bytes()[:100])
    status = main(["ecg", "annotate", str(folder), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.json",
        "a.qrs",
        "b.json",
        "b.qrs",
        "c.json",
        "c.qrs",
    ]
    assert f"{folder / 'broken'}.hea: corrupt header" in captured.err
    assert f"{folder / 'short'}: " in captured.err
    assert "truncated" in captured.err
    assert "2 of 5 records failed" in captured.err
    assert "/5 [" in captured.err  # the progress bar, on stderr
    assert sorted(line.split(":")[0] for line in captured.out.splitlines()) == ["a", "b", "c"]


def test_missing_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path that names no record is reported with the file it looked for; exit 1."""
    good = _good(tmp_path / "in", "fine")
    missing = tmp_path / "in" / "absent"
    status = main(["ecg", "annotate", str(missing), str(good), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 1
    assert f"{missing}.hea: header file not found" in captured.err
    assert (tmp_path / "out" / "fine.qrs").exists()


def test_empty_folder_is_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder without any .hea file is reported and the exit status is 1."""
    (tmp_path / "empty").mkdir()
    status = main(["ecg", "annotate", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert status == 1
    assert "holds no record" in capsys.readouterr().err


def test_nan_flat_and_tiny_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """NaN samples, a flat lead and a 2-sample record all annotate (exit 0)."""
    folder = tmp_path / "in"
    signal = synthetic_ecg(FS_HZ, 12.0, regular_beats(12.0, 72.0), n_leads=3)
    signal[1000:2000, 0] = np.nan
    signal[:, 2] = 0.0
    write_record(folder, "odd", signal, FS_HZ, STANDARD_LEADS[:3])
    write_record(folder, "tiny", np.array([[0.1], [0.2]]), FS_HZ, ["II"])
    status = main(["ecg", "annotate", str(folder), "--out", str(tmp_path / "out")])
    assert status == 0, capsys.readouterr().err
    odd = json.loads((tmp_path / "out" / "odd.json").read_text())
    lead_off = {f["lead_name"] for f in odd["flags"] if f["kind"] == "lead_off"}
    assert lead_off == {"I", "III"}
    assert odd["summary"]["beat_count"] == 14
    tiny = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert tiny["record"]["n_samples"] == 2


def test_duplicate_record_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two records of one name from two folders: the second is refused, not overwritten."""
    first = _good(tmp_path / "x", "same", rate_bpm=60.0)
    second = _good(tmp_path / "y", "same", rate_bpm=90.0)
    status = main(["ecg", "annotate", str(first), str(second), "--out", str(tmp_path / "out")])
    assert status == 1
    assert "writes the same output files" in capsys.readouterr().err
    document = json.loads((tmp_path / "out" / "same.json").read_text())
    assert round(document["summary"]["hr_median_bpm"]) == 60


def test_mode_and_mains_reach_the_output(tmp_path: Path) -> None:
    """--mode monitoring --mains 60 are recorded in the JSON's annotator block."""
    record = _good(tmp_path / "in", "rec")
    argv = ["ecg", "annotate", str(record), "--out", str(tmp_path / "out")]
    assert main([*argv, "--mode", "monitoring", "--mains", "60"]) == 0
    annotator = json.loads((tmp_path / "out" / "rec.json").read_text())["annotator"]
    assert annotator == {**annotator, "filter_mode": "monitoring", "mains_hz": 60.0}


@pytest.mark.parametrize(
    "extra",
    [["--jobs", "0"], ["--jobs", "x"], ["--mode", "holter"], ["--mains", "55"], []],
    ids=["jobs-zero", "jobs-text", "bad-mode", "bad-mains", "no-out"],
)
def test_usage_errors_exit_2(tmp_path: Path, extra: list[str]) -> None:
    """Bad options (and a missing --out) are usage errors: exit status 2."""
    argv = ["ecg", "annotate", str(tmp_path / "rec")]
    if extra:
        argv += ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as info:
        main(argv + extra)
    assert info.value.code == 2


def test_out_is_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--out naming an existing file is a usage error (2), nothing annotated."""
    record = _good(tmp_path / "in", "rec")
    (tmp_path / "out").write_text("a file")
    assert main(["ecg", "annotate", str(record), "--out", str(tmp_path / "out")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_jobs_in_processes_as_a_real_command(tmp_path: Path) -> None:
    """The real command with --jobs 2: same outputs as one job, exit 1 for the bad record."""
    folder = tmp_path / "in"
    for name, rate in (("r1", 60.0), ("r2", 80.0), ("r3", 110.0)):
        _good(folder, name, rate_bpm=rate)
    _corrupt(folder, "r4")
    command = [sys.executable, "-m", "teleconsult", "ecg", "annotate", str(folder)]
    parallel = subprocess.run(
        [*command, "--out", str(tmp_path / "p"), "--jobs", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert parallel.returncode == 1, parallel.stderr
    assert "r4.hea: corrupt header" in parallel.stderr
    assert main(["ecg", "annotate", str(folder), "--out", str(tmp_path / "s")]) == 1
    for name in ("r1", "r2", "r3"):
        in_processes = json.loads((tmp_path / "p" / f"{name}.json").read_text())
        in_line = json.loads((tmp_path / "s" / f"{name}.json").read_text())
        assert in_processes == in_line
    r3 = json.loads((tmp_path / "p" / "r3.json").read_text())
    assert r3["summary"]["flag_counts"]["tachycardia"] == 1


def test_shared_12_lead_folders(
    ecg_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PTB-XL (.mat) and PTB (.dat + .xyz) folders annotate in place, read-only, exit 0."""
    folders = [str(ecg_dir / "ptbxl-sample"), str(ecg_dir / "ptb-sample")]
    assert main(["ecg", "annotate", *folders, "--out", str(tmp_path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 11
    ptb = json.loads((tmp_path / "s0010_re.json").read_text())
    assert ptb["record"]["lead_names"][-3:] == ["vx", "vy", "vz"]
    assert ptb["summary"]["beat_count"] > 40
    for document in map(json.loads, map(Path.read_text, tmp_path.glob("HR*.json"))):
        assert document["record"]["fs_hz"] == 500.0
        assert document["summary"]["beat_count"] >= 5


def test_fiducials_files_in_ludb_triplets(tmp_path: Path) -> None:
    """--fiducials writes RECORD.dl_LEAD per lead (LUDB spelling), '(' peak ')' triplets
    around every detected beat, and the JSON carries measurements and statements."""
    record = _good(tmp_path / "in", "rec1")
    out = tmp_path / "out"
    assert main(["ecg", "annotate", str(record), "--out", str(out), "--fiducials"]) == 0
    assert sorted(p.name for p in out.glob("rec1.dl_*")) == [
        "rec1.dl_avr",
        "rec1.dl_ii",
        "rec1.dl_v1",
    ]
    document = json.loads((out / "rec1.json").read_text())
    ann = wfdb.rdann(str(out / "rec1"), "dl_ii")
    symbols = "".join(ann.symbol)
    assert symbols.count("N") == len(document["measurements"]["delineation"]["beats"]["qrs_on"])
    for peak in "pNt":
        assert f"({peak})" in symbols
    assert np.all(np.diff(ann.sample) >= 0)
    assert document["measurements"]["global"]["hr_bpm"] == pytest.approx(72.0, abs=1.0)
    assert isinstance(document["statements"], list)
    assert isinstance(document["critical"], list)
