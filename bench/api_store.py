"""The store half of the platform benchmark: the queries behind login, the directory and
the auditor's page, at scale, on SQLite and PostgreSQL.

Run: ``.venv/bin/python bench/api_store.py [--people 10000] [--institutions 300]
[--audit-rows 1000000] [--samples 2000] [--databases sqlite,postgresql]
[--database-url URL]``.

Populated (:func:`populate`, reusable by ``bench/api.py``): a tree of ``--institutions``
institutions (one city, counties, townships below them), ``--people`` people spread
over them (doctors, experts, ECG readers, a few admins) with argon2 PHC strings as
their password hashes, and ``--audit-rows`` chained audit rows (a realistic mix of
joins, logins and ECG views naming people, rooms and patients), bulk-inserted in
batches through the same :func:`store.audit.chain` that appends in production, then
checked by ``verify``. PostgreSQL is a private server started for the run
(``tests/pg.py``, with fsync on, unlike the tests' servers) unless ``--database-url``
names one.

Measured, each ``--samples`` times with random keys, after a warm-up (p50/p99 in ms):

- ``login``: the person by username and their credentials, as ``Accounts.login`` reads
  them (two repository calls, two transactions);
- ``people_page``: one page (50) of an institution's doctors, ordered by username, with
  the total for the pager (``list_people``);
- ``audit_page``: the newest 50 rows of one actor (``audit.query``), and
  ``audit_patient_page`` the same for one patient;
- ``audit_append``: one chained row appended and committed (what a login costs the
  trail, fsync included on SQLite);
- ``verify_s``: the whole chain verified once, in seconds.

The last line of output is one JSON object of every figure, per database.
The machine must be otherwise idle for the figures to mean anything.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import insert, update  # noqa: E402

from consults.directory import Role  # noqa: E402
from consults.repositories import PageRequest, PeopleFilter  # noqa: E402
from store import schema  # noqa: E402
from store.audit import AuditQuery, AuditRecord, append, chain, query, verify  # noqa: E402
from store.stores import Stores, open_store  # noqa: E402

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"
BATCH_ROWS = 10_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def institution_codes(count: int) -> list[tuple[str, str, str | None]]:
    """``(code, level, parent)`` of a tree: a city, ~count/30 counties, townships below."""
    counties = max(1, count // 30)
    tree: list[tuple[str, str, str | None]] = [("city", "city", None)]
    tree += [(f"county-{c:02d}", "county", "city") for c in range(counties)]
    town = 0
    while len(tree) < count:
        tree.append((f"town-{town:04d}", "township", f"county-{town % counties:02d}"))
        town += 1
    return tree[:count]


def populate(stores: Stores, *, people: int, institutions: int, audit_rows: int) -> dict[str, Any]:
    """Fill an empty store; what was made (usernames, codes) for the measurements."""
    rng = random.Random(7)
    tree = institution_codes(institutions)
    codes = [code for code, _, _ in tree]
    now = datetime.now(UTC)
    usernames: list[str] = []
    with stores.engine.begin() as conn:
        conn.execute(
            insert(schema.institutions),
            [
                {"code": c, "name": f"机构 {c}", "level": lv, "parent": p, "created_at": now}
                for c, lv, p in tree
            ],
        )
        people_rows, role_rows, cred_rows = [], [], []
        for i in range(people):
            person_id = f"p{i:06d}"
            username = f"user{i:06d}"
            usernames.append(username)
            people_rows.append(
                {
                    "id": person_id,
                    "username": username,
                    "display_name": "张三" if i % 2 else "Zhang San",
                    "institution": codes[i % len(codes)],
                    "created_at": now,
                }
            )
            roles = ["doctor"] if i % 3 else ["expert", "ecg_reader"]
            if i % 500 == 0:
                roles.append("admin")
            for role in roles:
                scope = "institution" if role == "admin" else None
                role_rows.append({"person_id": person_id, "role": role, "scope": scope})
            cred_rows.append({"person_id": person_id, "password_hash": HASH})
        for table, table_rows in (
            (schema.people, people_rows),
            (schema.person_roles, role_rows),
            (schema.credentials, cred_rows),
        ):
            for start in range(0, len(table_rows), BATCH_ROWS):
                conn.execute(insert(table), table_rows[start : start + BATCH_ROWS])
    actions = ["join", "leave", "auth.login", "ecg.viewed", "admit", "stream.started"]
    patients = [f"patient-{n:05d}" for n in range(20_000)]
    seq, prev = 0, schema.GENESIS_HASH
    started = time.perf_counter()
    while seq < audit_rows:
        count = min(BATCH_ROWS, audit_rows - seq)
        records = []
        for n in range(count):
            action = actions[(seq + n) % len(actions)]
            records.append(
                AuditRecord(
                    time=T0 + timedelta(seconds=(seq + n) * 2),
                    actor=f"p{rng.randrange(people):06d}",
                    action=action,
                    room=f"c-{rng.randrange(5000)}",
                    patient=rng.choice(patients) if action == "ecg.viewed" else "",
                    institution=rng.choice(codes),
                    detail={"n": seq + n},
                )
            )
        rows = chain(records, after_seq=seq, after_hash=prev)
        with stores.engine.begin() as conn:
            conn.execute(insert(schema.audit), rows)
            conn.execute(
                update(schema.audit_head)
                .where(schema.audit_head.c.id == 1)
                .values(seq=rows[-1]["seq"], hash=rows[-1]["hash"])
            )
        seq, prev = rows[-1]["seq"], rows[-1]["hash"]
    load_s = time.perf_counter() - started
    return {"usernames": usernames, "codes": codes, "patients": patients, "audit_load_s": load_s}


def measure(samples: int, operation: Callable[[], object]) -> dict[str, float]:
    """p50/p99 in ms of ``operation`` over ``samples`` calls after a warm-up of 50."""
    for _ in range(50):
        operation()
    times = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        operation()
        times.append((time.perf_counter_ns() - started) / 1e6)
    cuts = statistics.quantiles(times, n=100)
    return {"p50_ms": round(cuts[49], 3), "p99_ms": round(cuts[98], 3)}


def run(stores: Stores, args: argparse.Namespace) -> dict[str, Any]:
    """Populate, then measure every figure on one store."""
    made = populate(
        stores, people=args.people, institutions=args.institutions, audit_rows=args.audit_rows
    )
    rng = random.Random(11)
    usernames, codes, patients = made["usernames"], made["codes"], made["patients"]

    def login() -> None:
        person = stores.directory.person_by_username(rng.choice(usernames))
        assert person is not None
        assert stores.credentials.get_credentials(person.id) is not None

    def people_page() -> None:
        where = PeopleFilter(institutions=frozenset({rng.choice(codes)}), role=Role.DOCTOR)
        stores.directory.list_people(where, PageRequest(limit=50))

    def audit_page(what: Callable[[], AuditQuery]) -> Callable[[], None]:
        def page() -> None:
            with stores.engine.connect() as conn:
                query(conn, what(), limit=50, newest_first=True)

        return page

    def audit_append() -> None:
        with stores.engine.begin() as conn:
            append(conn, [AuditRecord(time=datetime.now(UTC), actor="bench", action="bench")])

    actors = [f"p{n:06d}" for n in range(args.people)]
    figures: dict[str, Any] = {"audit_load_s": round(made["audit_load_s"], 1)}
    figures["login"] = measure(args.samples, login)
    figures["people_page"] = measure(args.samples, people_page)
    figures["audit_page"] = measure(
        args.samples, audit_page(lambda: AuditQuery(actor=rng.choice(actors)))
    )
    figures["audit_patient_page"] = measure(
        args.samples, audit_page(lambda: AuditQuery(patient=rng.choice(patients)))
    )
    figures["audit_append"] = measure(max(100, args.samples // 10), audit_append)
    started = time.perf_counter()
    report = verify(stores.engine)
    figures["verify_s"] = round(time.perf_counter() - started, 1)
    assert report.ok, report.problem
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--institutions", type=int, default=300)
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--database-url", help="an empty PostgreSQL database to use")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for kind in args.databases.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-store-") as folder:
            server = None
            url = None
            if kind == "postgresql":
                url = args.database_url
                if url is None:
                    from tests.pg import PostgresServer

                    server = PostgresServer().start(durable=True)
                    url = server.url(server.create_database("bench"))
            stores = open_store(data_dir=Path(folder), database_url=url)
            try:
                results[kind] = run(stores, args)
            finally:
                stores.close()
                if server is not None:
                    server.stop()
        print(kind, json.dumps(results[kind]), flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
