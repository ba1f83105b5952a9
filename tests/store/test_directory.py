"""The directory repository on SQLite and PostgreSQL: keys, references, pages, search."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from consults.directory import (
    AdminScope,
    Credentials,
    Department,
    Device,
    Institution,
    Level,
    Person,
    RelationOverride,
    Role,
    ServiceKind,
    ServiceRelation,
)
from consults.errors import Conflict, InvalidInput, NotFound
from consults.repositories import (
    DeviceFilter,
    DirectoryRepository,
    InstitutionFilter,
    PageRequest,
    PeopleFilter,
)
from store.directory import SqlDirectoryRepository

HASH = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


def creds(person_id: str) -> Credentials:
    return Credentials(person_id=person_id, password_hash=HASH)


def tree(repo: DirectoryRepository) -> None:
    repo.add_institution(Institution("city", "某市医院", Level.CITY))
    repo.add_institution(Institution("county", "某县医院", Level.COUNTY, parent="city"))
    repo.add_institution(Institution("town", "某镇卫生院", Level.TOWNSHIP, parent="county"))
    repo.add_department(Department("county", "cardio", "心内科"))


def person(i: int, **kw: object) -> Person:
    values: dict[str, object] = {
        "id": f"p{i:03d}",
        "username": f"user{i:03d}",
        "display_name": "Zhang San" if i % 2 else "李四",
        "institution": "town" if i % 3 else "county",
        "roles": frozenset({Role.DOCTOR} if i % 2 else {Role.EXPERT, Role.ECG_READER}),
    }
    values.update(kw)
    return Person(**values)  # type: ignore[arg-type]


def test_institutions_tree_conflicts_and_updates(engine: Engine) -> None:
    """Institutions are stored by code; duplicates conflict; a missing parent is NotFound."""
    repo: DirectoryRepository = SqlDirectoryRepository(engine)
    tree(repo)
    assert repo.get_institution("county") == Institution(
        "county", "某县医院", Level.COUNTY, parent="city"
    )
    assert repo.get_institution("nowhere") is None
    with pytest.raises(Conflict):
        repo.add_institution(Institution("county", "again", Level.COUNTY))
    with pytest.raises(NotFound):
        repo.add_institution(Institution("x", "x", Level.VILLAGE, parent="missing"))
    repo.update_institution(Institution("town", "新名字", Level.TOWNSHIP, parent="city"))
    assert repo.get_institution("town") == Institution("town", "新名字", Level.TOWNSHIP, "city")
    with pytest.raises(NotFound):
        repo.update_institution(Institution("ghost", "g", Level.CITY))
    assert [i.code for i in repo.all_institutions()] == ["city", "county", "town"]
    page = repo.list_institutions(InstitutionFilter(search="县"), PageRequest())
    assert ([i.code for i in page.items], page.total) == (["county"], 1)
    page = repo.list_institutions(
        InstitutionFilter(within=frozenset({"city", "town"})), PageRequest(limit=1)
    )
    assert ([i.code for i in page.items], page.total) == (["city"], 2)
    assert repo.list_departments("county") == [Department("county", "cardio", "心内科")]
    with pytest.raises(Conflict):
        repo.add_department(Department("county", "cardio", "again"))


def test_people_roles_references_and_pages(engine: Engine) -> None:
    """People round-trip with their roles; listing filters by institution, role, search."""
    repo = SqlDirectoryRepository(engine)
    tree(repo)
    expert = person(
        0,
        department="cardio",
        specialty="心内科",
        title="主任医师",
        roles=frozenset({Role.EXPERT, Role.ADMIN}),
        admin_scope=AdminScope.INSTITUTION,
    )
    repo.add_person(expert, creds(expert.id))
    for i in range(1, 30):
        repo.add_person(person(i), creds(f"p{i:03d}"))
    assert repo.get_person("p000") == expert
    assert repo.person_by_username("user001") == person(1)
    assert repo.person_by_username("USER001") is None
    with pytest.raises(Conflict):
        repo.add_person(person(31, username="user001"), creds("p031"))
    with pytest.raises(NotFound):
        repo.add_person(person(32, institution="nowhere"), creds("p032"))
    with pytest.raises(NotFound):
        repo.add_person(person(33, department="nope"), creds("p033"))
    assert repo.get_person("p031") is None

    doctors_in_town = repo.list_people(
        PeopleFilter(institutions=frozenset({"town"}), role=Role.DOCTOR), PageRequest(limit=5)
    )
    expected = [f"user{i:03d}" for i in range(1, 30) if i % 2 and i % 3]
    assert doctors_in_town.total == len(expected)
    assert [p.username for p in doctors_in_town.items] == expected[:5]
    second = repo.list_people(
        PeopleFilter(institutions=frozenset({"town"}), role=Role.DOCTOR),
        PageRequest(limit=5, offset=5),
    )
    assert [p.username for p in second.items] == expected[5:10]
    beyond = repo.list_people(
        PeopleFilter(institutions=frozenset({"town"}), role=Role.DOCTOR),
        PageRequest(limit=5, offset=1000),
    )
    assert (beyond.items, beyond.total) == ((), len(expected))
    last = repo.list_people(
        PeopleFilter(institutions=frozenset({"town"}), role=Role.DOCTOR),
        PageRequest(limit=5, offset=len(expected) - 2),
    )
    assert ([p.username for p in last.items], last.total) == (expected[-2:], len(expected))
    everyone = [expert] + [person(i) for i in range(1, 30)]
    chinese = sum("李" in p.display_name for p in everyone)
    assert repo.list_people(PeopleFilter(search="李"), PageRequest()).total == chinese
    assert repo.list_people(PeopleFilter(search="ZHANG"), PageRequest()).total == 30 - chinese
    # "_" is a literal, not LIKE's any-character ("user001" would match "r_0" otherwise).
    assert repo.list_people(PeopleFilter(search="r_0"), PageRequest()).total == 0
    with_r00 = sum("r00" in p.username for p in everyone)
    assert repo.list_people(PeopleFilter(search="r00"), PageRequest()).total == with_r00 > 0

    changed = person(1, display_name="Wang Wu", roles=frozenset({Role.COORDINATOR}))
    repo.update_person(changed)
    assert repo.get_person("p001") == changed
    with pytest.raises(InvalidInput):
        repo.update_person(person(1, username="renamed"))
    with pytest.raises(NotFound):
        repo.update_person(person(99))


def test_deployment_admin_without_institution(engine: Engine) -> None:
    """The first admin has no institution; deployment_admin_exists sees it."""
    repo = SqlDirectoryRepository(engine)
    assert not repo.deployment_admin_exists()
    root = Person(
        id="root",
        username="root",
        display_name="Root",
        institution=None,
        roles=frozenset({Role.ADMIN}),
        admin_scope=AdminScope.DEPLOYMENT,
    )
    repo.add_person(root, creds("root"))
    assert repo.deployment_admin_exists()
    assert repo.get_person("root") == root


def test_devices_register_revoke_and_list(engine: Engine) -> None:
    """Devices are found by id and credential hash, revoked once, listed by filter."""
    repo = SqlDirectoryRepository(engine)
    tree(repo)
    for i in range(4):
        repo.add_device(
            Device(f"cart-{i}", f"Cart {i}", "town" if i < 3 else "county", created_at_s=1.8e9),
            f"{i:064x}",
        )
    with pytest.raises(Conflict):
        repo.add_device(Device("cart-0", "again", "town"), "f" * 64)
    with pytest.raises(NotFound):
        repo.add_device(Device("cart-9", "x", "nowhere"), "e" * 64)
    assert repo.device_by_credential(f"{2:064x}") == Device(
        "cart-2", "Cart 2", "town", created_at_s=1.8e9
    )
    repo.revoke_device("cart-1", 1.9e9)
    repo.revoke_device("cart-1", 2.0e9)
    device = repo.get_device("cart-1")
    assert device is not None
    assert device.revoked
    with pytest.raises(NotFound):
        repo.revoke_device("ghost", 1.0)
    live = repo.list_devices(
        DeviceFilter(institutions=frozenset({"town"}), include_revoked=False), PageRequest()
    )
    assert [d.id for d in live.items] == ["cart-0", "cart-2"]
    assert repo.list_devices(DeviceFilter(search="CART 3"), PageRequest()).total == 1


def test_relations_are_one_override_per_key(engine: Engine) -> None:
    """set_relation replaces the override of its key; clear_relation removes it."""
    repo = SqlDirectoryRepository(engine)
    tree(repo)
    repo.set_relation(ServiceRelation("city", "town", ServiceKind.ECG))
    repo.set_relation(ServiceRelation("city", "town", ServiceKind.ECG, RelationOverride.REMOVED))
    repo.set_relation(ServiceRelation("county", "city", ServiceKind.CONSULT))
    assert list(repo.all_relations()) == [
        ServiceRelation("city", "town", ServiceKind.ECG, RelationOverride.REMOVED),
        ServiceRelation("county", "city", ServiceKind.CONSULT),
    ]
    repo.clear_relation("city", "town", ServiceKind.ECG)
    repo.clear_relation("city", "town", ServiceKind.ECG)
    assert [r.provider for r in repo.all_relations()] == ["county"]
    with pytest.raises(NotFound):
        repo.set_relation(ServiceRelation("city", "ghost", ServiceKind.ECG))
