"""Reading WFDB records: every shared format, lead names, units, and every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecg.errors import EcgError, RecordError
from ecg.record import Record, normalise_lead_name, read_record, record_length, record_paths
from fixtures.make_fixtures import STANDARD_LEADS, regular_beats, synthetic_ecg, write_record


def _write(tmp_path: Path, name: str = "rec", n_samples: int = 1000, fs_hz: float = 250.0) -> Path:
    rng = np.random.default_rng(0)
    signal = rng.normal(0.0, 0.5, (n_samples, 2))
    return write_record(tmp_path, name, signal, fs_hz, ["ii", "v1"])


def _wrsamp(
    tmp_path: Path, name: str, signal: np.ndarray, unit: str, lead: list[str], **extra: object
) -> Path:
    n_leads = signal.shape[1]
    wfdb.wrsamp(
        name,
        fs=250,
        units=[unit] * n_leads,
        sig_name=lead,
        p_signal=signal,
        fmt=["16"] * n_leads,
        adc_gain=[1.0 if unit == "uV" else 10.0 if unit == "mmHg" else 1000.0] * n_leads,
        baseline=[0] * n_leads,
        write_dir=str(tmp_path),
        **extra,
    )
    return tmp_path / name


@pytest.mark.parametrize(
    ("database", "record", "n_leads", "fs_hz", "fmt"),
    [
        ("mitdb", "100", 2, 360.0, "212"),
        ("ludb-dev", "1", 12, 500.0, "16"),
        ("ptbxl-sample", "HR06000", 12, 500.0, "16"),
        ("ptb-sample", "s0010_re", 15, 1000.0, "16"),
    ],
)
def test_reads_each_shared_database(
    ecg_dir: Path, database: str, record: str, n_leads: int, fs_hz: float, fmt: str
) -> None:
    """Each shared database's format reads in mV, equal to wfdb's own physical signal."""
    path = ecg_dir / database / record
    result = read_record(path)
    reference = wfdb.rdrecord(str(path))
    assert result.n_leads == n_leads == reference.n_sig
    assert result.fs_hz == fs_hz
    assert reference.fmt[0] == fmt
    assert result.signal_mv.dtype == np.float64
    np.testing.assert_array_equal(result.signal_mv, reference.p_signal)
    assert result.n_samples == reference.sig_len
    assert result.duration_s == pytest.approx(reference.sig_len / fs_hz)
    assert result.adc_limits_mv is not None
    assert np.all(result.adc_limits_mv[0] < np.nanmin(result.signal_mv, axis=0) + 1e-9)
    assert np.all(result.adc_limits_mv[1] > np.nanmax(result.signal_mv, axis=0) - 1e-9)


def test_twelve_lead_names_normalised_on_every_database(ecg_dir: Path) -> None:
    """LUDB's lower-case and PTB-XL's mixed-case names both become the standard names."""
    for path in (ecg_dir / "ludb-dev" / "1", ecg_dir / "ptbxl-sample" / "HR06000"):
        assert read_record(path).lead_names == tuple(STANDARD_LEADS)
    ptb = read_record(ecg_dir / "ptb-sample" / "s0010_re")
    assert ptb.lead_names[:12] == tuple(STANDARD_LEADS)
    assert ptb.lead_names[12:] == ("vx", "vy", "vz")
    assert read_record(ecg_dir / "mitdb" / "100").lead_names == ("MLII", "V5")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("avr", "aVR"),
        ("AVR", "aVR"),
        ("aVr", "aVR"),
        ("v1", "V1"),
        ("V-1", "V1"),
        ("lead II", "II"),
        (" iii ", "III"),
        ("MLII", "MLII"),
        ("ML II", "ML II"),
        ("vx", "vx"),
        ("noise1", "noise1"),
    ],
)
def test_normalise_lead_name(raw: str, expected: str) -> None:
    """Standard names from any spelling; other names kept."""
    assert normalise_lead_name(raw) == expected


def test_microvolts_are_converted_to_millivolts(tmp_path: Path) -> None:
    """A record stored in uV reads in mV."""
    signal_uv = np.array([[0.0, 100.0], [1000.0, -500.0], [250.0, 0.0]])
    path = _wrsamp(tmp_path, "uv", signal_uv, "uV", ["I", "II"])
    np.testing.assert_allclose(read_record(path).signal_mv, signal_uv / 1000.0)


def test_non_voltage_unit_is_refused(tmp_path: Path) -> None:
    """A signal in mmHg is refused with its name and unit."""
    path = _wrsamp(tmp_path, "bp", np.zeros((10, 1)), "mmHg", ["ABP"])
    with pytest.raises(RecordError, match=r"ABP.*mmHg"):
        read_record(path)


def test_base_datetime_read(tmp_path: Path) -> None:
    """The header's base date and time reach the record."""
    import datetime as dt

    when = dt.datetime(2024, 3, 1, 8, 30, 0)
    path = _wrsamp(tmp_path, "dated", np.zeros((10, 1)), "mV", ["II"], base_datetime=when)
    assert read_record(path).base_datetime == when


def test_missing_record_names_the_file(tmp_path: Path) -> None:
    """A missing header is a RecordError naming the .hea file."""
    with pytest.raises(RecordError, match=r"nope\.hea: header file not found") as info:
        read_record(tmp_path / "nope")
    assert info.value.path.endswith("nope.hea")


def test_missing_signal_file_names_it(tmp_path: Path) -> None:
    """A header whose .dat is missing names the .dat file."""
    path = _write(tmp_path)
    Path(f"{path}.dat").unlink()
    with pytest.raises(RecordError, match=r"rec\.dat: signal file not found"):
        read_record(path)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage here\nfoo\n",
        "rec 2 250 1000\n",
        "rec 2 250 1000\nrec.dat 16 1000 16 0 0 0 0 ii\n",
        "\x00\x01\x02binary",
    ],
    ids=["empty", "garbage", "no-signal-lines", "one-of-two-lines", "binary"],
)
def test_corrupt_header(tmp_path: Path, header: str) -> None:
    """Every kind of corrupt header becomes a RecordError, not a wfdb exception."""
    path = _write(tmp_path)
    Path(f"{path}.hea").write_text(header, encoding="latin-1")
    with pytest.raises(RecordError, match=r"rec"):
        read_record(path)


@pytest.mark.parametrize("keep_bytes", [0, 1, 1001, 3998])
def test_truncated_data(tmp_path: Path, keep_bytes: int) -> None:
    """A signal file shorter than the header says is a RecordError."""
    path = _write(tmp_path)
    data = Path(f"{path}.dat")
    data.write_bytes(data.read_bytes()[:keep_bytes])
    with pytest.raises(RecordError, match=r"truncated"):
        read_record(path)


def test_nan_samples_preserved(tmp_path: Path) -> None:
    """Samples stored as the format's invalid value read as NaN, the others intact."""
    signal = synthetic_ecg(250.0, 4.0, regular_beats(4.0, 60.0), n_leads=2)
    signal[100:150, 0] = np.nan
    path = write_record(tmp_path, "gappy", signal, 250.0, ["II", "V1"])
    result = read_record(path)
    assert np.isnan(result.signal_mv[100:150, 0]).all()
    assert np.isfinite(result.signal_mv[:100]).all()
    assert np.isfinite(result.signal_mv[150:]).all()
    np.testing.assert_allclose(result.signal_mv[150:, 0], signal[150:, 0], atol=1e-3)


def test_two_sample_record_is_valid(tmp_path: Path) -> None:
    """A 2-sample record reads as a valid, short record."""
    path = _write(tmp_path, n_samples=2)
    result = read_record(path)
    assert result.n_samples == 2
    assert result.signal_mv.shape == (2, 2)
    assert result.duration_s == pytest.approx(2 / 250.0)


def test_one_sample_record_is_valid(tmp_path: Path) -> None:
    """A 1-sample record reads too."""
    assert read_record(_write(tmp_path, n_samples=1)).n_samples == 1


def test_zero_sample_record_is_refused(tmp_path: Path) -> None:
    """A header declaring no sample at all is a RecordError saying so."""
    path = _write(tmp_path)
    Path(f"{path}.hea").write_text("rec 1 250 0\nrec.dat 16 1000 16 0 0 0 0 II\n")
    with pytest.raises(RecordError, match="no sample"):
        read_record(path)


def test_flat_lead_reads_as_zeros(tmp_path: Path) -> None:
    """A flat lead is data, not an error: it reads as constant."""
    signal = synthetic_ecg(250.0, 2.0, [1.0], n_leads=2)
    signal[:, 1] = 0.0
    result = read_record(write_record(tmp_path, "flat", signal, 250.0, ["II", "V1"]))
    assert np.all(result.signal_mv[:, 1] == 0.0)


@pytest.mark.parametrize(("fs_hz", "reason"), [(50.0, "sampling rate"), (4000.0, "sampling rate")])
def test_out_of_range_sampling_rate(tmp_path: Path, fs_hz: float, reason: str) -> None:
    """Sampling rates outside 100-2000 Hz are refused with the reason."""
    path = _write(tmp_path, fs_hz=fs_hz)
    with pytest.raises(RecordError, match=reason):
        read_record(path)


def test_too_many_leads(tmp_path: Path) -> None:
    """More than 15 leads is refused."""
    names = [f"ch{i}" for i in range(16)]
    path = write_record(tmp_path, "wide", np.zeros((10, 16)), 250.0, names)
    with pytest.raises(RecordError, match="16 signals"):
        read_record(path)


def test_record_error_is_an_ecg_error(tmp_path: Path) -> None:
    """Callers can catch the package's base class."""
    with pytest.raises(EcgError):
        read_record(tmp_path / "absent")


def test_hea_suffix_accepted(tmp_path: Path) -> None:
    """A path given with its .hea extension reads the same record."""
    path = _write(tmp_path)
    assert read_record(f"{path}.hea").name == "rec"


def test_folder_is_refused_by_read_record(tmp_path: Path) -> None:
    """read_record on a folder says to expand it first."""
    with pytest.raises(RecordError, match="folder"):
        read_record(tmp_path)


def test_record_paths_expands_folder_in_natural_order(tmp_path: Path) -> None:
    """A folder expands to its records by .hea file, 2 before 10."""
    for name in ("10", "2", "a1"):
        _write(tmp_path, name=name, n_samples=10)
    (tmp_path / "notes.txt").write_text("not a record")
    assert record_paths(tmp_path) == [str(tmp_path / n) for n in ("2", "10", "a1")]
    assert record_paths(str(tmp_path / "2.hea")) == [str(tmp_path / "2")]
    assert record_paths(tmp_path / "missing") == [str(tmp_path / "missing")]


def test_record_paths_of_shared_database(ecg_dir: Path) -> None:
    """The MIT-BIH folder expands to its 48 records, matching its RECORDS file."""
    paths = record_paths(ecg_dir / "mitdb")
    listed = (ecg_dir / "mitdb" / "RECORDS").read_text().split()
    assert [Path(p).name for p in paths] == listed


def test_record_validates_shape() -> None:
    """A Record built in memory checks signal and lead names agree."""
    with pytest.raises(RecordError, match="lead names"):
        Record(name="x", fs_hz=250.0, signal_mv=np.zeros((10, 2)), lead_names=("I",))
    with pytest.raises(RecordError, match="2-D"):
        Record(name="x", fs_hz=250.0, signal_mv=np.zeros(10), lead_names=("I",))


def _outcome(path: Path) -> Record | RecordError:
    try:
        return read_record(path)
    except RecordError as error:
        return error


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=st.text(max_size=300), data=st.binary(max_size=400))
def test_random_files_only_ever_give_record_error(tmp_path: Path, header: str, data: bytes) -> None:
    """Whatever bytes the header and signal files hold, the result is a Record or a RecordError."""
    Path(tmp_path / "fuzz.hea").write_text(header, encoding="utf-8", errors="replace")
    Path(tmp_path / "fuzz.dat").write_bytes(data)
    result = _outcome(tmp_path / "fuzz")
    if isinstance(result, RecordError):
        assert "fuzz" in str(result)
    else:
        assert result.signal_mv.ndim == 2


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=4100), line=st.sampled_from(["rec 2 250", "rec 2 250 1000"]))
def test_random_signal_bytes_under_a_valid_header(tmp_path: Path, data: bytes, line: str) -> None:
    """A valid header over random signal bytes reads, or fails with a RecordError."""
    path = _write(tmp_path)
    header = Path(f"{path}.hea").read_text().splitlines()
    Path(f"{path}.hea").write_text("\n".join([line, *header[1:]]) + "\n")
    Path(f"{path}.dat").write_bytes(data)
    result = _outcome(path)
    if isinstance(result, RecordError):
        assert result.reason
    else:
        assert result.n_leads == 2


@pytest.mark.parametrize(("start", "stop"), [(0, 250), (100, 350), (900, None), (990, 5000)])
def test_a_window_reads_those_samples_only(tmp_path: Path, start: int, stop: int | None) -> None:
    """``read_record(start=, stop=)`` equals the whole record's slice (clamped to its end);
    ``record_length`` gives the whole length and rate from the header alone."""
    path = _write(tmp_path, n_samples=1000)
    whole = read_record(path)
    window = read_record(path, start=start, stop=stop)
    np.testing.assert_array_equal(window.signal_mv, whole.signal_mv[start:stop])
    assert window.lead_names == whole.lead_names
    assert window.fs_hz == whole.fs_hz
    assert record_length(path) == (1000, 250.0)


def test_a_window_of_a_long_record_does_not_read_the_rest(tmp_path: Path) -> None:
    """A 10 s window of a 6-hour 2-lead record reads its own bytes (format 16: 4 bytes
    a sample), not the record's 43 MB (the process's read bytes, /proc/self/io)."""
    fs_hz, n = 500, 6 * 3600 * 500
    ramp = (np.arange(n, dtype=np.int64) % 2000).astype(np.int16)
    np.stack([ramp, -ramp], axis=1).astype("<i2").tofile(tmp_path / "holter.dat")
    (tmp_path / "holter.hea").write_text(
        f"holter 2 {fs_hz} {n}\n"
        "holter.dat 16 200(0)/mV 16 0 0 0 0 I\n"
        "holter.dat 16 200(0)/mV 16 0 0 0 0 II\n"
    )
    path = tmp_path / "holter"
    start = 3 * 3600 * fs_hz

    def read_bytes() -> int:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
        raise AssertionError("no rchar in /proc/self/io")

    before = read_bytes()
    window = read_record(path, start=start, stop=start + 10 * fs_hz)
    read = read_bytes() - before
    assert read < 1024 * 1024, read
    assert record_length(path) == (n, 500.0)
    np.testing.assert_array_equal(window.signal_mv[:, 0], ramp[start : start + 5000] / 200.0)
    np.testing.assert_array_equal(window.signal_mv[:, 1], -ramp[start : start + 5000] / 200.0)


def test_a_window_past_the_end_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, n_samples=1000)
    with pytest.raises(RecordError, match="no sample"):
        read_record(path, start=1000, stop=1100)
