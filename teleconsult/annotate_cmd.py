"""``teleconsult ecg annotate PATH... --out DIR``: pre-annotate recorded ECGs.

Each PATH is a WFDB record path (as ``wfdb`` takes it, without extension) or a folder,
which stands for every record (``.hea`` file) directly inside it. For each record the
command writes ``DIR/<record>.qrs`` (WFDB annotations) and ``DIR/<record>.json``
(summary, beats, flags; schema in docs/ecg-annotations.md) and prints one line on
stdout. A record that cannot be read or annotated is reported on stderr with its file
and the reason, and the others are still annotated.

``--mode`` chooses the filter band the quality flags are measured on (diagnostic
0.05–150 Hz: slow baseline wander and muscle noise are flagged as the diagnostic trace
shows them; monitoring 0.5–40 Hz: only what remains in a monitor's band). Beats and
rhythm flags do not depend on it. No filtered signal is stored.

``--fiducials`` also writes, per lead, ``DIR/<record>.dl_<lead>`` (lead in LUDB's
lower-case spelling: ``1.dl_ii``, ``1.dl_v1``): the P, QRS and T onset, peak and offset
of every beat of the measured window as WFDB annotations in the LUDB triplet convention
(``(`` onset, ``p``/``N``/``t`` peak, ``)`` offset).

Exit status: 0 when every record was annotated, 1 when any failed, 2 for usage errors.
``--jobs N`` annotates N records at a time in worker processes (the work is CPU-bound
numpy/scipy, which threads would serialise).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AnnotateResult", "annotate_one", "register", "run"]

PROG = "teleconsult ecg annotate"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``annotate`` to the ``ecg`` command group."""
    parser = sub.add_parser(
        "annotate",
        help="pre-annotate WFDB records (beats, heart rate, rhythm and quality flags)",
        description=(
            "Write <record>.qrs (WFDB annotations) and <record>.json for each record. "
            "Exit status 1 if any record failed, 2 for usage errors."
        ),
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="record path without extension (e.g. mitdb/100), or a folder of records",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--jobs",
        type=_positive_int,
        default=1,
        metavar="N",
        help="records annotated in parallel, in worker processes (default 1)",
    )
    parser.add_argument(
        "--mode",
        choices=["diagnostic", "monitoring"],
        default="diagnostic",
        help="filter band of the quality measures (default diagnostic: 0.05-150 Hz)",
    )
    parser.add_argument(
        "--mains",
        type=int,
        choices=[50, 60],
        default=50,
        help="mains frequency in Hz to notch (default 50)",
    )
    parser.add_argument(
        "--fiducials",
        action="store_true",
        help="also write <record>.dl_<lead> per lead: P, QRS and T onset/peak/offset "
        "(WFDB annotations, LUDB triplets)",
    )
    parser.set_defaults(handler=run)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class AnnotateResult:
    """Outcome of one record: ``error`` is None on success."""

    record_path: str
    line: str = ""
    error: str | None = None


def annotate_one(
    record_path: str, out_dir: str, mode: str, mains_hz: float, fiducials: bool = False
) -> AnnotateResult:
    """Read, annotate and write one record; never raises (the error is in the result)."""
    from ecg.annotate import AnnotateConfig, annotate
    from ecg.errors import EcgError
    from ecg.filters import FilterMode
    from ecg.output import write_annotations, write_fiducials
    from ecg.record import read_record

    try:
        record = read_record(record_path)
        annotation = annotate(record, AnnotateConfig(mode=FilterMode(mode), mains_hz=mains_hz))
        qrs_path, json_path = write_annotations(annotation, out_dir)
        n_fiducial_files = 0
        if fiducials and annotation.measurements is not None:
            written = write_fiducials(annotation.measurements.delineation, record.name, out_dir)
            n_fiducial_files = len(written)
    except EcgError as error:
        return AnnotateResult(record_path, error=str(error))
    except Exception as error:  # a bug for one record must not stop the others
        return AnnotateResult(
            record_path, error=f"{record_path}: internal error: {type(error).__name__}: {error}"
        )
    summary = annotation.summary
    flags = sum(summary.flag_counts.values())
    rate = (
        "no heart rate" if summary.beat_count < 2 else f"median HR {summary.hr_median_bpm:.0f} bpm"
    )
    line = (
        f"{record.name}: {summary.beat_count} beats, {rate}, {flags} flags "
        f"-> {qrs_path}, {json_path}"
    )
    if fiducials:
        line += f", {n_fiducial_files} fiducial files"
    return AnnotateResult(record_path, line=line)


def run(args: argparse.Namespace) -> int:
    """Handler of ``teleconsult ecg annotate``; returns the exit status."""
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        print(f"{PROG}: error: --out {out_dir} exists and is not a folder", file=sys.stderr)
        return 2
    jobs, failures = _plan(args.paths)
    for message in failures:
        print(f"{PROG}: {message}", file=sys.stderr)
    failed = len(failures)
    for result in _progress(_execute(jobs, args), len(jobs)):
        if result.error is None:
            _write_line(result.line, sys.stdout)
        else:
            failed += 1
            _write_line(f"{PROG}: {result.error}", sys.stderr)
    if failed:
        _write_line(f"{PROG}: {failed} of {len(jobs) + len(failures)} records failed", sys.stderr)
    return 1 if failed else 0


def _plan(paths: list[str]) -> tuple[list[str], list[str]]:
    """Record paths to annotate, and messages for what cannot even be attempted."""
    from ecg.record import record_paths

    jobs: list[str] = []
    failures: list[str] = []
    seen: dict[str, str] = {}
    for path in paths:
        expanded = record_paths(path)
        if os.path.isdir(path) and not expanded:
            failures.append(f"{path}: folder holds no record (no .hea file)")
        for record_path in expanded:
            name = os.path.basename(record_path)
            if name in seen:
                if os.path.abspath(seen[name]) != os.path.abspath(record_path):
                    failures.append(
                        f"{record_path}: another record named {name!r} ({seen[name]}) "
                        "writes the same output files; annotate it into another --out"
                    )
                continue
            seen[name] = record_path
            jobs.append(record_path)
    return jobs, failures


def _execute(jobs: list[str], args: argparse.Namespace) -> Iterator[AnnotateResult]:
    options = (str(args.out), args.mode, float(args.mains), bool(args.fiducials))
    if args.jobs == 1 or len(jobs) <= 1:
        for record_path in jobs:
            yield annotate_one(record_path, *options)
        return
    # forkserver, not fork: the progress bar runs a monitor thread, and forking a
    # process that has threads can deadlock the child.
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=min(args.jobs, len(jobs)), mp_context=context) as pool:
        futures: dict[Future[AnnotateResult], str] = {
            pool.submit(annotate_one, record_path, *options): record_path for record_path in jobs
        }
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as error:  # a worker process died (killed, out of memory)
                yield AnnotateResult(
                    futures[future], error=f"{futures[future]}: worker failed: {error!r}"
                )


def _progress(results: Iterator[AnnotateResult], total: int) -> Iterator[AnnotateResult]:
    from tqdm import tqdm

    # Only for more than one record, on stderr, so stdout stays one line per record.
    yield from tqdm(
        results, total=total, disable=total <= 1, file=sys.stderr, unit="record", leave=True
    )


def _write_line(text: str, stream: Any) -> None:
    from tqdm import tqdm

    # tqdm.write keeps the progress bar intact below the line.
    tqdm.write(text, file=stream)
