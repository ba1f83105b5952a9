"""The world the consult service's tests run in: the real SQL store (SQLite or
PostgreSQL), real accounts with TOTP, a county alliance's directory and a clock the test
moves. Holds no test itself; test_service*.py and tests/api/test_consults*.py use it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest

from consults.accounts import AccountPolicy, Accounts, DirectoryAdmin, NewPerson, Principal
from consults.directory import AdminScope, Level, Person, Role
from consults.lifecycle import Mode, Priority
from consults.requests import Consent, ConsentKind, ConsultRequest, FieldCipher, Patient, Sex
from consults.service import ConsultService, NoNotices
from store.audit import AuditQuery, AuditRow, query
from store.consult_stats import SqlConsultStatistics
from store.consults import FileBlobStore, SqlConsultRepository
from store.secrets import SecretBox
from store.stores import Stores, open_store
from tests.pg import Database

FAST_POLICY = AccountPolicy(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "a long passphrase"
FIELD_KEY = bytes(range(32))


@dataclass
class Clock:
    """The time of the service and of the accounts (TOTP steps), moved by the test."""

    now: datetime = field(
        default_factory=lambda: datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    )

    def __call__(self) -> datetime:
        return self.now

    def epoch(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    """The store, the services and the people of one test."""

    stores: Stores
    accounts: Accounts
    directory: DirectoryAdmin
    service: ConsultService
    repository: SqlConsultRepository
    notices: NoNotices
    clock: Clock
    data_dir: Path
    people: dict[str, Person] = field(default_factory=dict)
    totp_secrets: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, username: str) -> Person:
        return self.people[username]

    def add_person(self, username: str, institution: str, role: Role) -> Person:
        """One more person, made by the deployment admin (an admin's scope is their
        institution)."""
        person = self.directory.create_person(
            self.people["root"],
            NewPerson(
                username=username,
                display_name=username.split(".")[0].capitalize() + " " + role.value,
                password=PASSWORD,
                roles=frozenset({role}),
                institution=institution,
                admin_scope=AdminScope.INSTITUTION if role is Role.ADMIN else None,
            ),
        )
        self.people[username] = person
        return person

    def totp(self, username: str) -> str:
        """The person's current TOTP code at the world's clock."""
        return pyotp.TOTP(self.totp_secrets[username]).at(self.clock.now)

    def audit(self, consult: str | None = None) -> list[AuditRow]:
        """The audit rows (of one consult), oldest first."""
        with self.stores.engine.connect() as conn:
            return query(conn, AuditQuery(consult=consult), limit=100_000)

    def actions(self, consult: str) -> list[tuple[str, str]]:
        """(action, outcome) of each audit row of a consult, oldest first."""
        return [(row.action, row.detail_object()["outcome"]) for row in self.audit(consult)]

    def request(self, **changes: Any) -> ConsultRequest:
        """A valid urgent realtime request for a patient of the village clinic."""
        values: dict[str, Any] = {
            "patient": Patient(
                name="张三",
                sex=Sex.MALE,
                birth_date=date(1960, 5, 1),
                record_number="MZ-2026-0001",
                national_id="11010519491231002X",
            ),
            "reason": "胸痛两小时",
            "purpose": "明确诊断，指导治疗",
            "summary": "男，66岁，胸骨后压榨样疼痛两小时，心电图示 V1-V4 ST 段抬高。",
            "specialty": "心内科",
            "priority": Priority.URGENT,
            "mode": Mode.REALTIME,
            "consent": Consent(
                kind=ConsentKind.VERBAL,
                recorded_by="li.doctor",
                time=datetime.now(UTC) - timedelta(minutes=5),
                witness="护士 王芳",
            ),
        }
        values.update(changes)
        return ConsultRequest(**values)


def _person(
    directory: DirectoryAdmin,
    root: Person,
    username: str,
    institution: str,
    *roles: Role,
    title: str | None = None,
) -> Person:
    return directory.create_person(
        root,
        NewPerson(
            username=username,
            display_name=username.split(".")[0].capitalize() + " " + roles[0].value,
            password=PASSWORD,
            roles=frozenset(roles),
            institution=institution,
            title=title,
        ),
    )


def make_world(database: Database, clock: Clock | None = None) -> World:
    """A county alliance on the store of ``database``.

    ``city-1`` ▸ ``county-1`` (the consult centre: coordinator ``zhao.coord``, experts
    ``wang.expert`` and ``chen.expert``) ▸ ``town-1`` ▸ ``village-1`` (doctors
    ``li.doctor`` and ``sun.doctor``); and another county ``county-2`` ▸ ``town-2``
    (doctor ``zhou.doctor``, expert ``qian.expert``, coordinator ``wu.coord``) that
    must not see the first county's consults.
    """
    clock = clock or Clock()
    data_dir = database.data_dir
    stores = open_store(
        data_dir=data_dir,
        database_url=database.url,
        totp_key=FIELD_KEY,
        clock=clock.epoch,
    )
    accounts = Accounts(
        directory=stores.directory,
        credentials=stores.credentials,
        sessions=stores.sessions,
        audit=stores.audit,
        policy=FAST_POLICY,
        clock=clock.epoch,
    )
    directory = DirectoryAdmin(accounts)
    root = directory.create_first_admin(
        username="root", display_name="Root", password="deployment passphrase 1"
    )
    for code, name, level, parent in (
        ("city-1", "某市人民医院", Level.CITY, None),
        ("county-1", "某县人民医院", Level.COUNTY, "city-1"),
        ("town-1", "某镇卫生院", Level.TOWNSHIP, "county-1"),
        ("village-1", "某村卫生室", Level.VILLAGE, "town-1"),
        ("county-2", "另一县医院", Level.COUNTY, "city-1"),
        ("town-2", "另一镇卫生院", Level.TOWNSHIP, "county-2"),
    ):
        directory.create_institution(root, code=code, name=name, level=level, parent=parent)
    repository = SqlConsultRepository(stores.engine, secrets=SecretBox(FIELD_KEY))
    notices = NoNotices()

    service = ConsultService(
        consults=repository,
        statistics=SqlConsultStatistics(stores.engine),
        directory=stores.directory,
        second_factor=accounts,
        cipher=FieldCipher(FIELD_KEY),
        blobs=FileBlobStore(data_dir / "attachments"),
        clock=clock,
        notifier=notices,
    )
    world = World(
        stores=stores,
        accounts=accounts,
        directory=directory,
        service=service,
        repository=repository,
        notices=notices,
        clock=clock,
        data_dir=data_dir,
    )
    world.people["root"] = root
    for username, institution, roles, title in (
        ("li.doctor", "village-1", (Role.DOCTOR,), "乡村医生"),
        ("sun.doctor", "village-1", (Role.DOCTOR,), None),
        ("zhao.coord", "county-1", (Role.COORDINATOR,), None),
        ("wang.expert", "county-1", (Role.EXPERT,), "主任医师"),
        ("chen.expert", "county-1", (Role.EXPERT,), "副主任医师"),
        ("heart.doctor", "county-1", (Role.DOCTOR,), None),
        ("ma.doctor", "city-1", (Role.DOCTOR,), None),
        ("zhou.doctor", "town-2", (Role.DOCTOR,), None),
        ("qian.expert", "county-2", (Role.EXPERT,), None),
        ("wu.coord", "county-2", (Role.COORDINATOR,), None),
    ):
        world.people[username] = _person(
            directory, root, username, institution, *roles, title=title
        )
    for username in ("wang.expert", "chen.expert"):
        person = world.people[username]
        world.totp_secrets[username] = accounts.enrol_totp(Principal(person=person))
    # A code is accepted once: step past the enrolment's step before any signature.
    clock.advance(30)
    return world


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture
def world(database: Database) -> Iterator[World]:
    """The world on SQLite and on PostgreSQL."""
    made = make_world(database)
    try:
        yield made
    finally:
        made.stores.close()
