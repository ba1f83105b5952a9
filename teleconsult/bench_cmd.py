"""``teleconsult ecg bench DB_DIR...``: score our QRS detector and its peers.

Design notes
------------
- Every record of each folder that has a ``.atr`` reference is scored whole, with the
  protocol of ``DESIGN.md`` (beat symbols, 150 ms window, gross totals) through
  :mod:`ecg.scoring`. Our detector sees every lead; the peers (wfdb's ``xqrs`` and
  ``gqrs``, NeuroKit2 when it is importable) see the first lead, as they usually do.
- Records run in parallel worker processes (``--jobs``); inside a worker, detectors run
  one after the other on one core, and each is timed with the process CPU clock
  (``time.process_time``), which other load on the machine disturbs far less than
  wall time; ours, which is cheap and deterministic, as the best of ``--repeat`` runs.
  Speed is reported as samples per second per lead (``n_samples / s``) and as samples
  times leads per second.
- Peers are slow (``xqrs`` takes seconds per record) and deterministic, so
  ``--peer-cache DIR`` keeps their detections and timings between runs.
- A record that cannot be read is reported with its path and the reason; the others
  are still scored and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ecg.detect import detect_qrs
from ecg.scoring import Score, reference_beats, score_beats

OURS = "teleconsult"
PEERS = ("xqrs", "gqrs", "neurokit2")
DEFAULT_PEERS = "xqrs,gqrs"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(slots=True)
class RecordResult:
    """What one record gave: its size, and each detector's score and CPU time."""

    path: str
    fs_hz: float = 0.0
    n_samples: int = 0
    n_leads: int = 0
    scores: dict[str, Score] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """Gross totals of one detector over all records."""

    detector: str
    score: Score
    n_records: int
    samples: int  # samples per lead, summed over records
    lead_samples: int  # samples times the leads the detector used
    cpu_s: float

    @property
    def samples_per_s(self) -> float:
        """Samples per second per lead."""
        return self.samples / self.cpu_s if self.cpu_s > 0 else float("inf")

    @property
    def lead_samples_per_s(self) -> float:
        """Samples times leads per second."""
        return self.lead_samples / self.cpu_s if self.cpu_s > 0 else float("inf")


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``bench`` to the ``teleconsult ecg`` group."""
    parser = commands.add_parser(
        "bench",
        help="score the QRS detector against .atr references, beside wfdb's xqrs and gqrs",
        description=(
            "Score the QRS detector on every record with a .atr reference in each folder "
            "(whole records, 150 ms window, gross totals) and the peer detectors on the "
            "same records in the same run."
        ),
    )
    parser.add_argument("db_dirs", nargs="+", metavar="DB_DIR", type=Path)
    parser.add_argument(
        "--peers",
        default=DEFAULT_PEERS,
        help=f"comma-separated peers among {', '.join(PEERS)}, or 'none' (default {DEFAULT_PEERS})",
    )
    parser.add_argument("--records", help="comma-separated record names to keep (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="time our detector as the best of this many runs per record (default 3)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--peer-cache", type=Path, help="folder that keeps peer detections")
    parser.add_argument("--verbose", action="store_true", help="print one row per record")
    parser.set_defaults(handler=run)


def parse_peers(text: str) -> tuple[str, ...]:
    """Parse ``--peers``; raises ``ValueError`` naming an unknown peer."""
    if text.strip().lower() in ("", "none"):
        return ()
    names = tuple(dict.fromkeys(name.strip().lower() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer {', '.join(unknown)}; choose among {', '.join(PEERS)}")
    return names


def find_records(db_dir: Path, names: set[str] | None) -> list[Path]:
    """Record paths (without extension) in ``db_dir`` that have a header and a .atr."""
    if not db_dir.is_dir():
        raise ValueError(f"{db_dir}: not a folder")
    found = [
        atr.with_suffix("")
        for atr in db_dir.glob("*.atr")
        if atr.with_suffix(".hea").exists() and (names is None or atr.stem in names)
    ]
    return sorted(found, key=lambda p: (len(p.name), p.name))


def peer_detector(name: str) -> Callable[[FloatArray, float], npt.ArrayLike]:
    """The peer detector ``name`` as ``beats = detect(first_lead_mv, fs_hz)``."""
    from wfdb import processing

    if name == "xqrs":
        return lambda x, fs: processing.xqrs_detect(sig=x, fs=fs, verbose=False)
    if name == "gqrs":
        return lambda x, fs: processing.gqrs_detect(sig=x, fs=fs)
    import neurokit2

    def neurokit(x: FloatArray, fs: float) -> npt.ArrayLike:
        _, info = neurokit2.ecg_peaks(neurokit2.ecg_clean(x, sampling_rate=fs), sampling_rate=fs)
        return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)

    return neurokit


def _timed(run: Callable[[], npt.ArrayLike]) -> tuple[IntArray, float]:
    start = time.process_time()
    beats = np.asarray(run(), dtype=np.int64).ravel()
    return beats, time.process_time() - start


def _cache_file(cache: Path, path: Path, peer: str) -> Path:
    return cache / f"{path.parent.name}_{path.name}_{peer}.json"


def _run_peer(
    peer: str, path: Path, first_lead: FloatArray, fs_hz: float, cache: Path | None
) -> tuple[IntArray, float]:
    stamp = path.with_suffix(".dat").stat().st_mtime_ns if path.with_suffix(".dat").exists() else 0
    if cache is not None:
        file = _cache_file(cache, path, peer)
        if file.exists():
            cached = json.loads(file.read_text())
            if cached.get("stamp") == stamp:
                return np.asarray(cached["beats"], dtype=np.int64), float(cached["cpu_s"])
    detect = peer_detector(peer)
    clean = np.nan_to_num(first_lead)
    beats, cpu_s = _timed(lambda: detect(clean, fs_hz))
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        payload = {"stamp": stamp, "beats": beats.tolist(), "cpu_s": cpu_s}
        _cache_file(cache, path, peer).write_text(json.dumps(payload))
    return beats, cpu_s


def bench_record(
    path: Path, peers: Sequence[str], cache: Path | None = None, repeat: int = 1
) -> RecordResult:
    """Score our detector and ``peers`` on one record (runs inside a worker).

    Our detector runs ``repeat`` times and keeps the least CPU time (the usual way to
    time a deterministic function on a shared machine); the peers run once.
    """
    import wfdb

    result = RecordResult(path=str(path))
    try:
        record = wfdb.rdrecord(str(path))
        annotation = wfdb.rdann(str(path), "atr")
    except Exception as error:  # wfdb raises anything from OSError to IndexError
        result.error = f"cannot read: {type(error).__name__}: {error}"
        return result
    signal = np.asarray(record.p_signal, dtype=np.float64)
    if signal.ndim != 2 or signal.shape[0] == 0:
        result.error = f"no samples (shape {signal.shape})"
        return result
    fs_hz = float(record.fs)
    reference = reference_beats(annotation.sample, annotation.symbol)
    result.fs_hz, result.n_samples, result.n_leads = fs_hz, signal.shape[0], signal.shape[1]
    try:
        runs = [_timed(lambda: detect_qrs(signal, fs_hz)) for _ in range(max(1, repeat))]
        beats, result.cpu_s[OURS] = runs[0][0], min(cpu_s for _, cpu_s in runs)
    except ValueError as error:
        result.error = f"{OURS}: {error}"
        return result
    result.scores[OURS] = score_beats(reference, beats, fs_hz)
    first = np.ascontiguousarray(signal[:, 0])
    for peer in peers:
        beats, result.cpu_s[peer] = _run_peer(peer, path, first, fs_hz, cache)
        result.scores[peer] = score_beats(reference, beats, fs_hz)
    return result


def summarise(results: Sequence[RecordResult], detectors: Sequence[str]) -> list[Summary]:
    """Gross totals per detector over the records that were scored."""
    out = []
    for name in detectors:
        done = [r for r in results if name in r.scores]
        leads = (lambda r: r.n_leads) if name == OURS else (lambda r: 1)
        out.append(
            Summary(
                detector=name,
                score=Score.total(r.scores[name] for r in done),
                n_records=len(done),
                samples=sum(r.n_samples for r in done),
                lead_samples=sum(r.n_samples * leads(r) for r in done),
                cpu_s=sum(r.cpu_s[name] for r in done),
            )
        )
    return out


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def format_records(results: Sequence[RecordResult], detectors: Sequence[str]) -> str:
    """One row per record: TP/FP/FN and F1 of each detector."""
    head = f"{'record':<12}" + "".join(f"{name + ' TP/FP/FN F1%':>30}" for name in detectors)
    rows = [head]
    for r in results:
        cells = []
        for name in detectors:
            s = r.scores.get(name)
            cells.append(f"{s.tp}/{s.fp}/{s.fn} {_pct(s.f1)}" if s else "-")
        rows.append(f"{Path(r.path).name:<12}" + "".join(f"{c:>30}" for c in cells))
    return "\n".join(rows)


def format_summary(summaries: Sequence[Summary]) -> str:
    """The totals table, with our speed ratio to each peer."""
    head = (
        f"{'detector':<12}{'records':>8}{'TP':>9}{'FP':>7}{'FN':>7}{'Se %':>8}{'+P %':>8}"
        f"{'F1 %':>8}{'Msamp/s/lead':>14}{'Msamp*leads/s':>15}"
    )
    rows = [head]
    for s in summaries:
        rows.append(
            f"{s.detector:<12}{s.n_records:>8}{s.score.tp:>9}{s.score.fp:>7}{s.score.fn:>7}"
            f"{_pct(s.score.sensitivity):>8}{_pct(s.score.positive_predictivity):>8}"
            f"{_pct(s.score.f1):>8}{s.samples_per_s / 1e6:>14.2f}"
            f"{s.lead_samples_per_s / 1e6:>15.2f}"
        )
    ours = next((s for s in summaries if s.detector == OURS), None)
    if ours is not None:
        for s in summaries:
            if s.detector != OURS and s.cpu_s > 0 and ours.cpu_s > 0:
                ratio = ours.samples_per_s / s.samples_per_s
                rows.append(f"speed {OURS}/{s.detector}: {ratio:.1f}x (samples per lead)")
    return "\n".join(rows)


def to_json(results: Sequence[RecordResult], summaries: Sequence[Summary]) -> dict[str, Any]:
    """Results as plain JSON data."""

    def score(s: Score) -> dict[str, Any]:
        return {
            "tp": s.tp,
            "fp": s.fp,
            "fn": s.fn,
            "se": s.sensitivity,
            "ppv": s.positive_predictivity,
            "f1": s.f1,
        }

    return {
        "summary": {
            s.detector: {
                **score(s.score),
                "records": s.n_records,
                "cpu_s": s.cpu_s,
                "samples_per_s_per_lead": s.samples_per_s,
                "lead_samples_per_s": s.lead_samples_per_s,
            }
            for s in summaries
        },
        "records": [
            {
                "path": r.path,
                "fs_hz": r.fs_hz,
                "n_samples": r.n_samples,
                "n_leads": r.n_leads,
                "error": r.error,
                "detectors": {
                    name: {**score(s), "cpu_s": r.cpu_s[name]} for name, s in r.scores.items()
                },
            }
            for r in results
        ],
    }


def run(args: argparse.Namespace) -> int:
    """Handler of ``teleconsult ecg bench``; returns the exit status."""
    from tqdm import tqdm

    try:
        peers = parse_peers(args.peers)
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        if args.repeat < 1:
            raise ValueError(f"--repeat must be >= 1, got {args.repeat}")
        names = {n.strip() for n in args.records.split(",") if n.strip()} if args.records else None
        paths = [p for db in args.db_dirs for p in find_records(db, names)]
    except ValueError as error:
        print(f"teleconsult ecg bench: {error}", file=sys.stderr)
        return 2
    if "neurokit2" in peers:
        try:
            import neurokit2  # noqa: F401
        except ImportError:
            print("neurokit2 is not installed: skipping it", file=sys.stderr)
            peers = tuple(p for p in peers if p != "neurokit2")
    if not paths:
        print("teleconsult ecg bench: no record with a .atr reference found", file=sys.stderr)
        return 2
    detectors = (OURS, *peers)
    results: list[RecordResult] = []
    bar = tqdm(total=len(paths), unit="record", file=sys.stderr)
    if args.jobs == 1:
        for path in paths:
            results.append(bench_record(path, peers, args.peer_cache, args.repeat))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=min(args.jobs, os.cpu_count() or 1)) as pool:
            futures = [
                pool.submit(bench_record, p, peers, args.peer_cache, args.repeat) for p in paths
            ]
            for future in futures:
                results.append(future.result())
                bar.update()
    bar.close()
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"{r.path}: {r.error}", file=sys.stderr)
    summaries = summarise(results, detectors)
    if args.verbose:
        print(format_records([r for r in results if not r.error], detectors))
        print()
    print(format_summary(summaries))
    if args.json:
        args.json.write_text(json.dumps(to_json(results, summaries), indent=2))
    return 1 if failed else 0
