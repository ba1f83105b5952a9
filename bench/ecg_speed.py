"""Speed of the whole batch annotation path, stage by stage, on one core.

Usage::

    python bench/ecg_speed.py [--ecg-dir DIR] [--db mitdb[,ptbxl-sample,...]]
                              [--records 100,101] [--repeat 3] [--peers xqrs,gqrs]
                              [--json FILE]
    python bench/ecg_speed.py --interpret [--db ludb-dev] [--records 1,35,38]
                              [--repeat 20] [--json FILE]

What it measures
----------------
Issue 2's speed target: "the whole batch path (read excluded, filtering included) at
>= 10 million samples per second per lead on one core". For every record of each
database the record is read (not timed), then :func:`ecg.annotate.annotate` is timed,
best of ``--repeat`` runs, by wall clock (``time.perf_counter``) and by CPU time of the
process (``time.process_time``; on a machine shared with other work the CPU time is the
steadier figure). Then each stage of it on its own, in the order ``annotate`` runs
them (:data:`ecg.annotate.STAGES`): filtering, detection, quality flags, rhythm flags,
summary. The per-stage times add up to about the ``annotate`` time.

Rates: *samples per second per lead* is ``n_samples / time`` (the issue's figure: a
two-lead record at 10 M/s per lead is 20 M lead-samples/s); *lead-samples per second*
is ``n_samples * n_leads / time``. Totals are over the database: total samples over the
sum of the best times.

``--peers xqrs,gqrs`` also times wfdb's detectors (``teleconsult.bench_cmd``'s
``peer_detector``) on the first lead of each record, once per record (they are slow),
and prints the ratio of our samples per second per lead (the whole ``annotate``
path) to theirs (detection alone on one lead): the issue asks for that ratio.

``--interpret`` measures the 12-lead interpretation's speed target instead:
"measurements, statements and critical values of a 10 s 12-lead 500 Hz record <= 20 ms
on one core" (what a reader waits for when a cart's ECG arrives). For each
record (default: :data:`INTERPRET_RECORDS` of LUDB's dev half, which hold its fast
and irregular rhythms) the stages before ``measure`` run once, untimed; then the part
of ``annotate`` that makes the measurements, statements and critical values is timed,
best of ``--repeat`` by CPU time: the ``measure`` and ``interpret`` stages and the
JSON form of the statements and critical values that ``annotate`` keeps. Printed per
record with the rhythm LUDB's header gives, then the median and the maximum over the
records against the target. The figures are indicative unless the machine is idle.

The process is pinned to one core (``os.sched_setaffinity``) and BLAS/OpenMP thread
pools are limited to one thread (``threadpoolctl`` when installed, else the usual
environment variables, set before numpy is imported).
"""

from __future__ import annotations

import os

# Before numpy is imported anywhere: one thread in every pool.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ecg.annotate import STAGES, AnnotateConfig, Work, annotate  # noqa: E402
from ecg.errors import EcgError  # noqa: E402
from ecg.record import Record, read_record, record_paths  # noqa: E402
from ecg.statements import critical_to_json, statements_to_json  # noqa: E402
from teleconsult.bench_cmd import parse_peers, peer_detector  # noqa: E402

DEFAULT_ECG_DIR = Path(os.environ.get("TELECONSULT_ECG_DIR", REPO.parent / "shared" / "ecg"))

#: ``--interpret``'s LUDB dev records, by the rhythm of their header: every atrial
#: fibrillation (8 is paced in AF), both flutters, the sinus tachycardia, sinus
#: arrhythmia, bradycardia and rhythm with conduction and ST findings beside them.
INTERPRET_RECORDS = (
    "1", "8", "13", "22", "24", "35", "38", "44", "51", "52",
    "70", "83", "88", "93", "95", "96",
)  # fmt: skip
INTERPRET_TARGET_MS = 20.0


@dataclass
class Timing:
    """Best wall and CPU time of one piece of work, seconds."""

    wall_s: float = float("inf")
    cpu_s: float = float("inf")


@dataclass
class RecordTiming:
    """Timings of one record: the whole of ``annotate`` and each stage."""

    name: str
    n_samples: int
    n_leads: int
    total: Timing = field(default_factory=Timing)
    stages: dict[str, Timing] = field(default_factory=dict)
    peers: dict[str, Timing] = field(default_factory=dict)


def one_core() -> str:
    """Pin this process to one core and limit thread pools; say what was done."""
    done = []
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        done.append(f"pinned to core {core}")
    try:
        import threadpoolctl  # type: ignore[import-not-found, unused-ignore]

        threadpoolctl.threadpool_limits(1)
        done.append("threadpoolctl limits 1")
    except ImportError:
        done.append("OMP/OPENBLAS_NUM_THREADS=1")
    return ", ".join(done)


@contextlib.contextmanager
def _timed(into: Timing) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into.wall_s = min(into.wall_s, time.perf_counter() - wall)
    into.cpu_s = min(into.cpu_s, time.process_time() - cpu)


def time_record(
    record: Record, config: AnnotateConfig, repeat: int, peers: tuple[str, ...] = ()
) -> RecordTiming:
    """Best-of-``repeat`` timings of ``annotate`` and of its stages on one record.

    Each peer detector is timed once, on the first lead.
    """
    result = RecordTiming(record.name, record.n_samples, record.n_leads)
    first_lead = np.nan_to_num(record.signal_mv[:, 0])
    for name in peers:
        detect = peer_detector(name)
        with _timed(result.peers.setdefault(name, Timing())):
            detect(first_lead, record.fs_hz)
    for _ in range(repeat):
        with _timed(result.total):
            annotate(record, config)
    for _ in range(repeat):
        work = Work(record, config)
        for name, stage in STAGES:
            with _timed(result.stages.setdefault(name, Timing())):
                stage(work)
    return result


def time_interpret(record: Record, config: AnnotateConfig, repeat: int) -> Timing:
    """Best-of-``repeat`` time of the measurements, statements and critical values.

    The stages before ``measure`` run once, untimed; then ``measure``, ``interpret``
    and the JSON form of their statements and critical values (what :func:`annotate`
    keeps of them) are timed together.
    """
    stages = dict(STAGES)
    work = Work(record, config)
    for name, stage in STAGES:
        if name == "measure":
            break
        stage(work)
    best = Timing()
    for _ in range(repeat):
        with _timed(best):
            stages["measure"](work)
            stages["interpret"](work)
            if work.interpretation is not None:
                statements_to_json(work.interpretation)
                critical_to_json(work.interpretation, record.fs_hz)
    return best


def _header_rhythm(record: Record) -> str:
    """The ``Rhythm:`` comment of the record's header (LUDB's), or ''."""
    for line in record.comments:
        if "Rhythm:" in line:
            return line.split("Rhythm:", 1)[1].strip().rstrip(".")
    return ""


def interpret_main(args: argparse.Namespace, config: AnnotateConfig) -> dict[str, Any]:
    """``--interpret``: the interpretation's CPU time per record, then the median and
    the maximum against the 20 ms target."""
    db = args.db if args.db != "mitdb" else "ludb-dev"
    folder = args.ecg_dir / db
    names = [name for name in args.records.split(",") if name] or list(INTERPRET_RECORDS)
    print(
        f"## {db}: measurements + statements + critical values (measure and interpret"
        f" stages), best of {args.repeat}, CPU ms; target <= {INTERPRET_TARGET_MS:.0f} ms"
    )
    print(f"{'record':>8} {'cpu_ms':>7} {'wall_ms':>7}  rhythm (header)")
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        path = str(folder / name)
        try:
            record = read_record(path)
        except EcgError as error:
            print(f"{error}: skipped", file=sys.stderr)
            continue
        best = time_interpret(record, config, args.repeat)
        rhythm = _header_rhythm(record)
        rows[name] = {"cpu_ms": best.cpu_s * 1e3, "wall_ms": best.wall_s * 1e3, "rhythm": rhythm}
        print(f"{name:>8} {best.cpu_s * 1e3:7.1f} {best.wall_s * 1e3:7.1f}  {rhythm}", flush=True)
    if not rows:
        return {}
    cpu = np.asarray([row["cpu_ms"] for row in rows.values()])
    over = [name for name, row in rows.items() if row["cpu_ms"] > INTERPRET_TARGET_MS]
    print(
        f"\nrecords {cpu.size}: median {np.median(cpu):.1f} ms, max {cpu.max():.1f} ms CPU"
        f" (target <= {INTERPRET_TARGET_MS:.0f}); over the target: {', '.join(over) or 'none'}"
    )
    print(
        f"indicative unless the machine is idle: load average {os.getloadavg()[0]:.2f}"
        f" on {os.cpu_count()} cores"
    )
    return {"records": rows, "median_cpu_ms": float(np.median(cpu)), "max_cpu_ms": float(cpu.max())}


def _rate(samples: float, seconds: float) -> float:
    return samples / seconds / 1e6 if seconds > 0 else float("inf")


def _line(label: str, samples: int, n_leads: int, total: Timing, stages: dict[str, Timing]) -> str:
    parts = [
        f"{label:>10} {samples:>10} {n_leads:>2}",
        f"{total.wall_s * 1e3:8.1f} {total.cpu_s * 1e3:8.1f}",
        f"{_rate(samples, total.cpu_s):7.2f} {_rate(samples * n_leads, total.cpu_s):7.2f}",
    ]
    parts += [f"{stages[name].cpu_s * 1e3:8.1f}" for name, _ in STAGES]
    return " ".join(parts)


def report(timings: list[RecordTiming], out: Callable[[str], None] = print) -> dict[str, Any]:
    """Print one line per record and the database totals; return the totals."""
    header = (
        f"{'record':>10} {'samples':>10} {'L':>2} {'wall_ms':>8} {'cpu_ms':>8} "
        f"{'M/s/ld':>7} {'M ld/s':>7} " + " ".join(f"{name[:8]:>8}" for name, _ in STAGES)
    )
    out(header + "   (stage columns: CPU ms)")
    for item in timings:
        out(_line(item.name, item.n_samples, item.n_leads, item.total, item.stages))
    samples = sum(item.n_samples for item in timings)
    lead_samples = sum(item.n_samples * item.n_leads for item in timings)
    total = Timing(
        sum(item.total.wall_s for item in timings), sum(item.total.cpu_s for item in timings)
    )
    stage_cpu = {name: sum(item.stages[name].cpu_s for item in timings) for name, _ in STAGES}
    out("")
    out(f"records {len(timings)}, samples per lead {samples}, lead-samples {lead_samples}")
    peer_cpu = {name: sum(item.peers[name].cpu_s for item in timings) for name in timings[0].peers}
    out(
        f"annotate  wall {total.wall_s:7.3f} s  cpu {total.cpu_s:7.3f} s  "
        f"{_rate(samples, total.wall_s):6.2f} M samples/s per lead (wall)  "
        f"{_rate(samples, total.cpu_s):6.2f} (cpu)  "
        f"{_rate(lead_samples, total.cpu_s):6.2f} M lead-samples/s (cpu)"
    )
    for name, _ in STAGES:
        seconds = stage_cpu[name]
        out(
            f"  {name:<10} cpu {seconds:7.3f} s  {100 * seconds / total.cpu_s:5.1f} %  "
            f"{_rate(samples, seconds):8.2f} M samples/s per lead"
        )
    for name, seconds in peer_cpu.items():
        out(
            f"  peer {name:<5} cpu {seconds:7.3f} s  {_rate(samples, seconds):8.2f} M samples/s "
            f"(one lead, detection only); annotate per lead is {seconds / total.cpu_s:5.1f}x "
            f"its rate"
        )
    return {
        "records": len(timings),
        "samples_per_lead": samples,
        "lead_samples": lead_samples,
        "wall_s": total.wall_s,
        "cpu_s": total.cpu_s,
        "msamples_per_s_per_lead_wall": _rate(samples, total.wall_s),
        "msamples_per_s_per_lead_cpu": _rate(samples, total.cpu_s),
        "stage_cpu_s": stage_cpu,
        "peer_cpu_s": peer_cpu,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ecg-dir", type=Path, default=DEFAULT_ECG_DIR)
    parser.add_argument("--db", default="mitdb", help="comma-separated database folders")
    parser.add_argument("--records", default="", help="comma-separated record names (all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mode", default="diagnostic", choices=["diagnostic", "monitoring"])
    parser.add_argument("--peers", default="none", help="also time these: xqrs,gqrs (none)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--interpret",
        action="store_true",
        help="time measurements + statements + critical values per LUDB record (<= 20 ms)",
    )
    args = parser.parse_args(argv)
    try:
        peers = parse_peers(args.peers)
    except ValueError as error:
        parser.error(str(error))
    print(f"# {one_core()}; best of {args.repeat}; load average {os.getloadavg()}")
    config = AnnotateConfig(mode=args.mode)
    if args.interpret:
        found = interpret_main(args, config)
        if args.json:
            args.json.write_text(json.dumps(found, indent=1, default=float))
        return 0 if found else 2
    wanted = {name for name in args.records.split(",") if name}
    results: dict[str, Any] = {}
    for db in [name for name in args.db.split(",") if name]:
        folder = args.ecg_dir / db
        if not folder.is_dir():
            print(f"{folder}: not found, skipped", file=sys.stderr)
            continue
        timings = []
        for path in record_paths(folder):
            if wanted and Path(path).name not in wanted:
                continue
            try:
                record = read_record(path)
            except EcgError as error:
                print(f"{error}: skipped", file=sys.stderr)
                continue
            timings.append(time_record(record, config, args.repeat, peers))
        if not timings:
            continue
        print(f"\n## {db}")
        totals = report(timings)
        results[db] = {"totals": totals, "records": [asdict(item) for item in timings]}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
