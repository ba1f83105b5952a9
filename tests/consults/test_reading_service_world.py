"""The world the reading service's tests run in: the consult world (real store on SQLite
or PostgreSQL, real accounts with TOTP, the county alliance, the test's clock) with the
county ECG centre's readers and the reading service over it. Holds no test itself."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from consults.accounts import NewPerson, Principal
from consults.directory import Role
from consults.reading_repositories import ReadingRecord
from consults.reading_service import NoReadingNotices, ReadingService
from ecg.critical import CRITICAL_TEXT
from ecg.statements import LIBRARY
from store.audit import AuditQuery, query
from store.readings import SqlReadingRepository
from tests.consults.test_service_world import PASSWORD, World, make_world
from tests.pg import Database

# Codes a report may carry / a reader may raise in these tests (the wiring passes
# ecg.statements.LIBRARY and ecg.critical.CRITICAL_TEXT).
STATEMENTS = frozenset({"SR", "STACH", "AFIB", "STE_ANT", "STD_INF", "PVC", "3AVB"})
CRITICALS = frozenset({"PAUSE", "VF", "VT", "STEMI", "3AVB_40"})
READERS = ("liu.reader", "ma.reader")


@dataclass
class ReadingWorld:
    """The consult world, the reading service and its notices."""

    world: World
    service: ReadingService
    repository: SqlReadingRepository
    notices: NoReadingNotices

    def actions(self, target: str) -> list[tuple[str, str]]:
        """(action, outcome) of each audit row on ``reading:<id>`` or
        ``critical:<id>``, oldest first."""
        with self.world.stores.engine.connect() as conn:
            rows = query(conn, AuditQuery(target=target), limit=100_000)
        return [(row.action, row.detail_object()["outcome"]) for row in rows]

    def stream_task(
        self, stream: str, *, critical: tuple[str, ...] = (), stat: bool = False, ago_s: float = 0
    ) -> ReadingRecord:
        """The task of a finished stream of the village clinic's cart."""
        return self.service.task_for_stream(
            stream,
            "village-1",
            "patient-" + stream,
            self.world.clock.now - timedelta(seconds=ago_s),
            critical,
            ("SR", "STE_ANT"),
            stat=stat,
        )


def make_reading_world(database: Database, *, whole_library: bool = False) -> ReadingWorld:
    """``county-1`` is also the ECG centre: readers ``liu.reader`` and ``ma.reader``
    (enrolled in TOTP), coordinator ``zhao.coord``; ``county-2`` has reader
    ``far.reader``, who must not see ``village-1``'s ECGs. ``whole_library``: the
    service takes the engine's whole statement library and every critical code (as the
    server wires it), not the few the domain tests use."""
    world = make_world(database)
    for username, institution in (*((u, "county-1") for u in READERS), ("far.reader", "county-2")):
        person = world.directory.create_person(
            world["root"],
            NewPerson(
                username=username,
                display_name=username.split(".")[0].capitalize() + " reader",
                password=PASSWORD,
                roles=frozenset({Role.ECG_READER}),
                institution=institution,
            ),
        )
        world.people[username] = person
        if username in READERS:
            world.totp_secrets[username] = world.accounts.enrol_totp(Principal(person=person))
    world.clock.advance(30)  # past the enrolment's TOTP step
    repository = SqlReadingRepository(world.stores.engine)
    notices = NoReadingNotices()
    service = ReadingService(
        readings=repository,
        keys=world.repository,
        directory=world.stores.directory,
        second_factor=world.accounts,
        clock=world.clock,
        notifier=notices,
        statement_codes=frozenset(LIBRARY) if whole_library else STATEMENTS,
        critical_codes=frozenset(CRITICAL_TEXT) if whole_library else CRITICALS,
    )
    return ReadingWorld(world=world, service=service, repository=repository, notices=notices)


@pytest.fixture
def rw(database: Database) -> Iterator[ReadingWorld]:
    """The reading world on SQLite and on PostgreSQL."""
    made = make_reading_world(database)
    try:
        yield made
    finally:
        made.world.stores.close()
