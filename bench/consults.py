"""The consult service at scale: worklist and dashboard latency with many consults.

The store is filled in bulk (SQL inserts, not the service: 100,000 requests through the
service would take longer than the measurement) with ``--institutions`` (1,000)
institutions — a city, its counties (the consult centres, each with coordinators and
experts), townships and villages (a doctor each) — and ``--consults`` (100,000) consults
submitted over the last 90 days from the villages to their county, in the proportions of
a working alliance (most signed and closed, some waiting, declined, cancelled, expired),
each with its expert. Then, one call at a time in this process, through
:class:`consults.service.ConsultService` on the real store (the same SQL the API runs):

``worklist``
    a county coordinator's ``untriaged`` and ``overdue`` queues, an expert's
    ``assigned`` queue, a clinic's requests (one page of 50 with the total);
``dashboard``
    the supervision statistics of the last 30 days by clinic as the deployment admin,
    by month over a year, and by clinic as a county coordinator.

Each figure is ``--samples`` calls (random county, expert or clinic each time): p50 and
p99 in milliseconds, printed per database as one JSON line. On SQLite in a temporary
data dir and on PostgreSQL (a private server with fsync on, ``tests/pg.py``).

Run on an otherwise idle machine::

    .venv/bin/python bench/consults.py [--databases sqlite,postgresql]
    .venv/bin/python bench/consults.py --consults 2000 --institutions 100 --samples 20  # check
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import Engine, insert  # noqa: E402

from consults.consult_repositories import Queue, StatsGroup  # noqa: E402
from consults.directory import AdminScope, Person, Role  # noqa: E402
from consults.lifecycle import DeadlinePolicy, Priority  # noqa: E402
from consults.repositories import PageRequest  # noqa: E402
from consults.requests import FieldCipher  # noqa: E402
from consults.service import ConsultService, NoNotices  # noqa: E402
from store.consult_schema import consult_experts, consults  # noqa: E402
from store.consult_stats import SqlConsultStatistics  # noqa: E402
from store.consults import FileBlobStore, SqlConsultRepository  # noqa: E402
from store.directory import SqlDirectoryRepository  # noqa: E402
from store.engine import open_engine  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.schema import institutions, people, person_roles  # noqa: E402

BATCH = 5_000
NOW = datetime.now(UTC).replace(microsecond=0)
# (state, share): what a working alliance's consults look like after 90 days.
STATES = (
    ("closed", 0.55),
    ("reported", 0.15),
    ("submitted", 0.05),
    ("assigned", 0.04),
    ("accepted", 0.04),
    ("scheduled", 0.03),
    ("declined", 0.02),
    ("cancelled", 0.06),
    ("expired", 0.04),
    ("reporting", 0.02),
)
AWAITING = {"submitted", "assigned", "declined"}


@dataclass
class Alliance:
    counties: list[str]
    villages: dict[str, str]  # village -> its county
    coordinators: dict[str, Person]  # county -> a coordinator
    experts: dict[str, list[Person]]  # county -> experts
    doctors: dict[str, Person]  # village -> its doctor
    admin: Person


def _person(username: str, institution: str | None, role: Role) -> Person:
    return Person(
        id=uuid.uuid4().hex,
        username=username,
        display_name="Bench " + role.value,
        institution=institution,
        roles=frozenset({role}),
        admin_scope=AdminScope.DEPLOYMENT if role is Role.ADMIN else None,
    )


def insert_people(engine: Engine, everyone: list[Person]) -> None:
    """``everyone`` with their one role each, in bulk."""
    with engine.begin() as conn:
        conn.execute(
            insert(people),
            [
                {
                    "id": p.id,
                    "username": p.username,
                    "display_name": p.display_name,
                    "institution": p.institution,
                    "created_at": NOW,
                }
                for p in everyone
            ],
        )
        conn.execute(
            insert(person_roles),
            [
                {
                    "person_id": p.id,
                    "role": next(iter(p.roles)).value,
                    "scope": None if p.admin_scope is None else p.admin_scope.value,
                }
                for p in everyone
            ],
        )


def populate(engine: Engine, n_institutions: int, n_consults: int, seed: int = 1) -> Alliance:
    """Fill an empty store at head: the tree, its people, the consults."""
    rng = random.Random(seed)
    n_counties = max(1, n_institutions // 111)
    n_towns = max(n_counties, n_institutions // 11)
    n_villages = max(1, n_institutions - 1 - n_counties - n_towns)
    rows: list[dict[str, Any]] = [
        {"code": "city", "name": "某市", "level": "city", "parent": None, "created_at": NOW}
    ]
    counties = [f"county-{i}" for i in range(n_counties)]
    towns = [f"town-{i}" for i in range(n_towns)]
    villages = {f"village-{i}": "" for i in range(n_villages)}
    rows += [
        {"code": c, "name": c, "level": "county", "parent": "city", "created_at": NOW}
        for c in counties
    ]
    town_county = {t: counties[i % n_counties] for i, t in enumerate(towns)}
    rows += [
        {"code": t, "name": t, "level": "township", "parent": town_county[t], "created_at": NOW}
        for t in towns
    ]
    for i, v in enumerate(villages):
        town = towns[i % n_towns]
        villages[v] = town_county[town]
        rows.append({"code": v, "name": v, "level": "village", "parent": town, "created_at": NOW})
    admin = _person("bench.admin", None, Role.ADMIN)
    coordinators = {c: _person(f"coord.{c}", c, Role.COORDINATOR) for c in counties}
    experts = {c: [_person(f"expert{k}.{c}", c, Role.EXPERT) for k in range(10)] for c in counties}
    doctors = {v: _person(f"doctor.{v}", v, Role.DOCTOR) for v in villages}
    everyone = [admin, *coordinators.values(), *doctors.values()]
    everyone += [e for group in experts.values() for e in group]
    with engine.begin() as conn:
        conn.execute(insert(institutions), rows)
    insert_people(engine, everyone)
    policy = DeadlinePolicy()
    states = [s for s, _ in STATES]
    weights = [w for _, w in STATES]
    village_list = list(villages)
    made = 0
    while made < n_consults:
        batch: list[dict[str, Any]] = []
        experts_rows: list[dict[str, Any]] = []
        for _ in range(min(BATCH, n_consults - made)):
            village = rng.choice(village_list)
            county = villages[village]
            state = rng.choices(states, weights)[0]
            priority = rng.choices(list(Priority), [0.8, 0.17, 0.03])[0]
            submitted = NOW - timedelta(seconds=rng.uniform(60, 90 * 86400))
            accept_s = policy.accept_within_s[priority]
            due = submitted + timedelta(seconds=accept_s)
            expires = submitted + timedelta(seconds=policy.expire_after_s[priority])
            accepted = (
                None
                if state in AWAITING | {"cancelled", "expired"}
                else submitted + timedelta(seconds=rng.uniform(30, accept_s))
            )
            signed = (
                None
                if accepted is None or state not in ("reported", "closed")
                else accepted + timedelta(seconds=rng.uniform(600, 86400))
            )
            expert = rng.choice(experts[county])
            consult_id = uuid.uuid4().hex
            batch.append(
                {
                    "id": consult_id,
                    "state": state,
                    "priority": priority.value,
                    "mode": rng.choice(("realtime", "async")),
                    "requester": doctors[village].username,
                    "clinic": village,
                    "centre": county,
                    "lead_expert": None if state == "submitted" else expert.username,
                    "created_at": submitted,
                    "submitted_at": submitted,
                    "accepted_at": accepted,
                    "scheduled_start": None,
                    "signed_at": signed,
                    "closed_at": signed + timedelta(hours=1)
                    if state == "closed" and signed
                    else None,
                    "last_reason": None,
                    "accept_due": due if state in AWAITING else None,
                    "expires_at": expires if state in AWAITING else None,
                    "escalated_at": None,
                    "revision": 1,
                    "patient_id": uuid.uuid4().hex,
                    "patient_name": f"患者{made}",
                    "patient_sex": rng.choice(("male", "female")),
                    "patient_birth_date": date(1940 + rng.randrange(70), 1, 1),
                    "record_number": f"MZ-{made:07d}",
                    "national_id_sealed": None,
                    "reason": "胸痛",
                    "purpose": "明确诊断",
                    "summary": "病历摘要" * 20,
                    "specialty": rng.choice(("心内科", "神经内科", "呼吸内科", "儿科")),
                    "title_wanted": None,
                    "expert_wanted": None,
                    "consent_kind": "written",
                    "consent_recorded_by": doctors[village].username,
                    "consent_time": submitted,
                    "consent_witness": None,
                    "search_text": f"患者{made} mz-{made:07d} {consult_id}",
                }
            )
            if state != "submitted":
                experts_rows.append(
                    {"consult": consult_id, "username": expert.username, "position": 0}
                )
            made += 1
        with engine.begin() as conn:
            conn.execute(insert(consults), batch)
            if experts_rows:
                conn.execute(insert(consult_experts), experts_rows)
    return Alliance(counties, villages, coordinators, experts, doctors, admin)


def _timed(samples: int, call: Callable[[], object]) -> dict[str, float]:
    call()  # warm the caches and the connection pool
    took: list[float] = []
    for _ in range(samples):
        start = time.perf_counter()
        call()
        took.append((time.perf_counter() - start) * 1000.0)
    took.sort()
    return {
        "p50_ms": round(statistics.median(took), 2),
        "p99_ms": round(took[min(len(took) - 1, int(0.99 * len(took)))], 2),
    }


def measure(engine: Engine, alliance: Alliance, samples: int, seed: int = 2) -> dict[str, Any]:
    rng = random.Random(seed)
    service = ConsultService(
        consults=SqlConsultRepository(engine),
        statistics=SqlConsultStatistics(engine),
        directory=SqlDirectoryRepository(engine),
        second_factor=_NoSigning(),
        cipher=FieldCipher(bytes(32)),
        blobs=FileBlobStore(Path(tempfile.mkdtemp())),
        notifier=NoNotices(),
    )
    page = PageRequest(limit=50)
    county = lambda: rng.choice(alliance.counties)  # noqa: E731
    results: dict[str, Any] = {}
    results["worklist_untriaged"] = _timed(
        samples, lambda: service.worklist(alliance.coordinators[county()], Queue.UNTRIAGED, page)
    )
    results["worklist_overdue"] = _timed(
        samples, lambda: service.worklist(alliance.coordinators[county()], Queue.OVERDUE, page)
    )
    results["worklist_assigned"] = _timed(
        samples,
        lambda: service.worklist(rng.choice(alliance.experts[county()]), Queue.ASSIGNED, page),
    )
    village_list = list(alliance.villages)
    results["worklist_clinic"] = _timed(
        samples,
        lambda: service.worklist(alliance.doctors[rng.choice(village_list)], Queue.CLINIC, page),
    )
    month_ago, year_ago = NOW - timedelta(days=30), NOW - timedelta(days=365)
    results["dashboard_30d_by_clinic"] = _timed(
        samples,
        lambda: service.statistics(
            alliance.admin, since=month_ago, until=NOW, by=StatsGroup.CLINIC
        ),
    )
    results["dashboard_year_by_month"] = _timed(
        samples,
        lambda: service.statistics(alliance.admin, since=year_ago, until=NOW, by=StatsGroup.MONTH),
    )
    results["dashboard_county_30d"] = _timed(
        samples,
        lambda: service.statistics(
            alliance.coordinators[county()], since=month_ago, until=NOW, by=StatsGroup.CLINIC
        ),
    )
    return results


class _NoSigning:
    """No signature is made in this benchmark."""

    def confirm_totp(self, person: Person, code: str | None) -> None:
        raise RuntimeError("not used")


@contextlib.contextmanager
def bench_engine(kind: str) -> Iterator[Engine]:
    """An empty store at head on ``kind`` (``sqlite`` in a temporary data dir, or
    ``postgresql`` on a private server with fsync on), removed afterwards."""
    with tempfile.TemporaryDirectory() as folder:
        server = None
        if kind == "sqlite":
            engine = open_engine(data_dir=Path(folder))
        else:
            from tests.pg import PostgresServer

            server = PostgresServer().start(durable=True)
            engine = open_engine(url=server.url(server.create_database()))
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()
            if server is not None:
                server.stop()


def run(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    with bench_engine(kind) as engine:
        start = time.perf_counter()
        alliance = populate(engine, args.institutions, args.consults)
        filled_s = time.perf_counter() - start
        results = measure(engine, alliance, args.samples)
    return {
        "database": kind,
        "institutions": args.institutions,
        "consults": args.consults,
        "fill_s": round(filled_s, 1),
        **results,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--institutions", type=int, default=1_000)
    parser.add_argument("--consults", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    for kind in args.databases.split(","):
        print(json.dumps(run(kind.strip(), args), ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
