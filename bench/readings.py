"""The ECG centre at scale: the reading worklist and its statistics with many ECGs.

The ECG centre's target: worklist p99 <= 100 ms with 100,000 ECGs from 500 clinics, on SQLite
and PostgreSQL. The store is filled in bulk (SQL inserts; the tree and its people as in
``bench/consults.py``: a city, its counties — each the ECG centre of the clinics below it,
with two ECG readers — townships and villages) with ``--ecgs`` reading tasks received
over the last 90 days from the villages, in the proportions of a working centre (most
signed, some waiting, claimed, in draft, returned or amended; 5 % STAT; 2 % with a
critical value, which has its row in the register, mostly acknowledged). Then, one call
at a time in this process, through :class:`consults.reading_service.ReadingService` on the
real store (the SQL the API runs):

``worklist_new``
    a county reader's ``state=new`` worklist (one page of 50 with the total, critical
    first, then STAT, then the longest waiting);
``worklist_all`` / ``worklist_clinic`` / ``worklist_mine``
    every state; one clinic's; the tasks the reader claimed or signed;
``stats_30d_by_clinic`` / ``stats_30d_by_reader``
    the ECG centre's statistics (:mod:`store.reading_stats`) as the deployment admin.

Each figure is ``--samples`` calls (a random county's reader or clinic each time): p50
and p99 in milliseconds, one JSON line per database.

Run on an otherwise idle machine::

    .venv/bin/python bench/readings.py [--databases sqlite,postgresql]
    .venv/bin/python bench/readings.py --ecgs 2000 --samples 20  # a quick check
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import Engine, insert  # noqa: E402

from bench.consults import NOW, Alliance, _NoSigning, _timed, bench_engine, insert_people, populate  # noqa: E402
from consults.directory import Person, Role  # noqa: E402
from consults.reading_service import ReadingService  # noqa: E402
from consults.reading_stats import ReadingStatsGroup, reading_statistics  # noqa: E402
from consults.readings import ReadingState  # noqa: E402
from consults.repositories import PageRequest  # noqa: E402
from store.consults import SqlConsultRepository  # noqa: E402
from store.directory import SqlDirectoryRepository  # noqa: E402
from store.reading_schema import critical_values, reading_tasks  # noqa: E402
from store.reading_stats import SqlReadingStatistics  # noqa: E402
from store.readings import SqlReadingRepository  # noqa: E402

BATCH = 5_000
# (state, share) of a working ECG centre's tasks after 90 days.
STATES = (
    ("signed", 0.84),
    ("new", 0.07),
    ("claimed", 0.03),
    ("draft", 0.02),
    ("returned", 0.02),
    ("amended", 0.02),
)


def _add_readers(engine: Engine, alliance: Alliance) -> dict[str, list[Person]]:
    readers = {
        c: [
            Person(
                id=uuid.uuid4().hex,
                username=f"reader{k}.{c}",
                display_name="Bench reader",
                institution=c,
                roles=frozenset({Role.ECG_READER}),
            )
            for k in range(2)
        ]
        for c in alliance.counties
    }
    insert_people(engine, [r for group in readers.values() for r in group])
    return readers


def fill(engine: Engine, alliance: Alliance, readers: dict[str, list[Person]], n: int) -> None:
    """``n`` reading tasks (and their critical values) in bulk."""
    rng = random.Random(3)
    states = [s for s, _ in STATES]
    weights = [w for _, w in STATES]
    villages = list(alliance.villages)
    made = 0
    while made < n:
        tasks: list[dict[str, Any]] = []
        criticals: list[dict[str, Any]] = []
        for _ in range(min(BATCH, n - made)):
            village = rng.choice(villages)
            county = alliance.villages[village]
            reader = rng.choice(readers[county]).username
            state = rng.choices(states, weights)[0]
            received = NOW - timedelta(seconds=rng.uniform(60, 90 * 86400))
            critical = ["PAUSE"] if rng.random() < 0.02 else []
            stat = rng.random() < 0.05
            signed = state in ("signed", "amended")
            task_id = uuid.uuid4().hex
            tasks.append(
                {
                    "id": task_id,
                    "state": state,
                    "clinic": village,
                    "centre": county,
                    "stream": uuid.uuid4().hex,
                    "record": None,
                    "patient": uuid.uuid4().hex,
                    "received_at": received,
                    "stat": stat,
                    "urgency": (0 if critical else 2) + (0 if stat else 1),
                    "critical": json.dumps(critical),
                    "top_statements": json.dumps(["SR", "STE_ANT"]),
                    "claimant": reader if state in ("claimed", "draft", "amended") else None,
                    "signer": reader if signed else None,
                    "version": 1 if signed else 0,
                    "signed_at": received + timedelta(seconds=rng.uniform(120, 7200))
                    if signed
                    else None,
                    "reason": "导联脱落" if state == "returned" else None,
                    "revision": 1,
                }
            )
            if critical:
                acknowledged = rng.random() < 0.95
                detected = received + timedelta(seconds=2)
                criticals.append(
                    {
                        "id": uuid.uuid4().hex,
                        "reading": task_id,
                        "code": critical[0],
                        "state": "acknowledged" if acknowledged else "escalated",
                        "clinic": village,
                        "centre": county,
                        "patient": None,
                        "raised_by": None,
                        "detected_at": detected,
                        "notified": json.dumps([alliance.doctors[village].username]),
                        "level": -1 if acknowledged else 0,
                        "notified_at": detected,
                        "acknowledged_by": alliance.doctors[village].username
                        if acknowledged
                        else None,
                        "acknowledged_at": detected + timedelta(seconds=rng.uniform(20, 900))
                        if acknowledged
                        else None,
                        "read_back": "心脏停搏 3.5 秒，已知悉" if acknowledged else None,
                        "escalate_at": None,
                        "revision": 1,
                    }
                )
            made += 1
        with engine.begin() as conn:
            conn.execute(insert(reading_tasks), tasks)
            if criticals:
                conn.execute(insert(critical_values), criticals)


def measure(
    engine: Engine, alliance: Alliance, readers: dict[str, list[Person]], samples: int
) -> dict[str, Any]:
    rng = random.Random(4)
    directory = SqlDirectoryRepository(engine)
    service = ReadingService(
        readings=SqlReadingRepository(engine),
        keys=SqlConsultRepository(engine),
        directory=directory,
        second_factor=_NoSigning(),
    )
    page = PageRequest(limit=50)

    def reader() -> Person:
        return rng.choice(readers[rng.choice(alliance.counties)])

    def clinic_of(person: Person) -> str:
        return rng.choice([v for v, c in alliance.villages.items() if c == person.institution])

    new = frozenset({ReadingState.NEW})
    results: dict[str, Any] = {
        "worklist_new": _timed(samples, lambda: service.worklist(reader(), page, states=new)),
        "worklist_all": _timed(samples, lambda: service.worklist(reader(), page)),
    }

    def one_clinic() -> object:
        person = reader()
        return service.worklist(person, page, clinic=clinic_of(person))

    results["worklist_clinic"] = _timed(samples, one_clinic)

    def mine() -> object:
        person = reader()
        return service.worklist(person, page, reader=person.username)

    results["worklist_mine"] = _timed(samples, mine)
    stats = SqlReadingStatistics(engine)
    month_ago = NOW - timedelta(days=30)
    for by in (ReadingStatsGroup.CLINIC, ReadingStatsGroup.READER):
        results[f"stats_30d_by_{by.value}"] = _timed(
            samples,
            lambda by=by: reading_statistics(
                stats, lambda person: None, alliance.admin, since=month_ago, until=NOW, by=by
            ),
        )
    return results


def run(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    with bench_engine(kind) as engine:
        start = time.perf_counter()
        alliance = populate(engine, args.institutions, 0)
        readers = _add_readers(engine, alliance)
        fill(engine, alliance, readers, args.ecgs)
        filled_s = time.perf_counter() - start
        results = measure(engine, alliance, readers, args.samples)
    return {
        "database": kind,
        "clinics": len(alliance.villages),
        "ecgs": args.ecgs,
        "fill_s": round(filled_s, 1),
        **results,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ecgs", type=int, default=100_000)
    parser.add_argument("--institutions", type=int, default=560, help="560: 504 villages")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    worst_p99_ms = 0.0
    for kind in args.databases.split(","):
        result = run(kind, args)
        print(json.dumps(result, ensure_ascii=False), flush=True)
        worst_p99_ms = max(
            worst_p99_ms, *(v["p99_ms"] for k, v in result.items() if k.startswith("worklist"))
        )
    verdict = "met" if worst_p99_ms <= 100 else "missed"
    print(f"target worklist p99 <= 100 ms: {verdict} (worst {worst_p99_ms} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
