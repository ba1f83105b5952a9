"""The directory on the SQL store: :class:`consults.repositories.DirectoryRepository`.

Design notes
------------
- One method, one transaction (``with engine.begin()``). A reference that does not
  exist (a person's institution, a device's) is looked up in the same transaction and
  answered :class:`~consults.errors.NotFound`; a duplicate key is caught as the
  database's integrity error and answered :class:`~consults.errors.Conflict`, so two
  nodes racing to create the same username get one success and one conflict.
- Any other database failure is :class:`~consults.errors.RepositoryError` with no
  detail for the client (the cause is chained for the server's log).
- A person is one ``people`` row and one ``person_roles`` row per role (the admin's
  scope on the ``admin`` row). A page of people costs three queries whatever its size:
  the count, the page, and the roles of the page.
- ``search`` is matched with ``LIKE`` on lowercased values and autoescaped ``%``/``_``:
  literal text, never SQL.
- Times the domain does not carry (when an institution or person was created) come from
  the injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

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
from consults.errors import Conflict, ConsultsError, InvalidInput, NotFound, RepositoryError
from consults.repositories import (
    DeviceFilter,
    InstitutionFilter,
    Page,
    PageRequest,
    PeopleFilter,
)
from store import schema
from store.engine import reader
from store.schema import (
    departments,
    devices,
    directory_version,
    from_epoch_s,
    institutions,
    people,
    person_roles,
    service_relations,
    to_epoch_s,
)
from store.secrets import SecretBox

__all__ = [
    "SqlDirectoryRepository",
    "conflict_on_duplicate",
    "credential_row",
    "require",
    "unit_of_work",
]

T = TypeVar("T")
Clock = Callable[[], float]


@contextmanager
def unit_of_work(engine: Engine, *, read: bool = False) -> Iterator[Connection]:
    """One transaction (``read``: a connection for lookups, :func:`store.engine.reader`);
    database failures become :class:`RepositoryError`."""
    try:
        if read:
            with reader(engine).connect() as conn:
                yield conn
        else:
            with engine.begin() as conn:
                yield conn
    except ConsultsError:
        raise
    except SQLAlchemyError as exc:
        raise RepositoryError("storage is unavailable; try again") from exc


def conflict_on_duplicate(conn: Connection, statement: Any, error: ConsultsError) -> None:
    """Execute ``statement``; a duplicate key raises ``error`` instead."""
    try:
        conn.execute(statement)
    except IntegrityError as exc:
        raise error from exc


def _exists(conn: Connection, condition: ColumnElement[bool]) -> bool:
    return bool(conn.execute(select(exists().where(condition))).scalar())


def require(conn: Connection, condition: ColumnElement[bool], kind: str, key: str) -> None:
    """:class:`NotFound` ``(kind, key)`` unless a row meets ``condition``."""
    if not _exists(conn, condition):
        raise NotFound(kind, key)


def _total(conn: Connection, statement: Select[Any], page: PageRequest, got: int) -> int:
    """The size of the whole listing, given that its page held ``got`` items."""
    if 0 < got < page.limit or (got == 0 and page.offset == 0):
        # A short page is the last one: the total follows without counting.
        return page.offset + got
    return int(conn.execute(select(func.count()).select_from(statement.subquery())).scalar_one())


def _page(conn: Connection, statement: Select[Any], page: PageRequest) -> tuple[list[Any], int]:
    rows = list(conn.execute(statement.limit(page.limit).offset(page.offset)))
    return rows, _total(conn, statement, page, len(rows))


def _search(search: str | None, *columns: Any) -> ColumnElement[bool]:
    if search is None:
        return true()
    needle = search.lower()
    return or_(*(func.lower(c).contains(needle, autoescape=True) for c in columns))


def credential_row(person_id: str, creds: Credentials, box: SecretBox) -> dict[str, Any]:
    """The ``credentials`` row of a person's credentials (TOTP secret sealed)."""
    return {
        "person_id": person_id,
        "password_hash": creds.password_hash,
        "failed_logins": creds.failed_logins,
        "locked_at": None if creds.locked_at_s is None else from_epoch_s(creds.locked_at_s),
        "totp_secret": box.seal(creds.totp_secret, person_id),
        "totp_last_step": creds.totp_last_step,
    }


def _institution(row: Any) -> Institution:
    return Institution(code=row.code, name=row.name, level=Level(row.level), parent=row.parent)


def _device(row: Any) -> Device:
    return Device(
        id=row.id,
        name=row.name,
        institution=row.institution,
        revoked=row.revoked_at is not None,
        created_at_s=to_epoch_s(row.created_at),
    )


def _relation(row: Any) -> ServiceRelation:
    return ServiceRelation(
        provider=row.provider,
        client=row.client,
        kind=ServiceKind(row.kind),
        override=RelationOverride(row.override),
    )


def _role_rows(person: Person) -> list[dict[str, Any]]:
    return [
        {
            "person_id": person.id,
            "role": role.value,
            "scope": (
                person.admin_scope.value
                if role is Role.ADMIN and person.admin_scope is not None
                else None
            ),
        }
        for role in sorted(person.roles, key=lambda r: r.value)
    ]


def _person_values(person: Person) -> dict[str, Any]:
    return {
        "username": person.username,
        "display_name": person.display_name,
        "institution": person.institution,
        "department": person.department,
        "specialty": person.specialty,
        "title": person.title,
    }


class SqlDirectoryRepository:
    """:class:`consults.repositories.DirectoryRepository` on SQLite or PostgreSQL.

    Parameters
    ----------
    engine
        The process's engine, schema at head.
    secrets
        Seals TOTP secrets at rest (the first credentials of a new person).
    clock
        Seconds since the epoch, for the ``created_at`` of institutions and people.
    """

    def __init__(
        self, engine: Engine, *, secrets: SecretBox | None = None, clock: Clock = time.time
    ) -> None:
        self.engine = engine
        self._box = secrets or SecretBox(None)
        self._clock = clock
        # (directory version, what was read at it): the tree and the relations are read
        # for every rights decision; reread only when a change moved the version.
        self._institutions: tuple[int, tuple[Institution, ...]] | None = None
        self._relations: tuple[int, tuple[ServiceRelation, ...]] | None = None

    @staticmethod
    def _bump(conn: Connection) -> None:
        """Move the directory's version (in the caller's transaction, with the change)."""
        conn.execute(
            update(directory_version)
            .where(directory_version.c.id == 1)
            .values(version=directory_version.c.version + 1)
        )

    @staticmethod
    def _version(conn: Connection) -> int:
        return int(conn.execute(select(directory_version.c.version)).scalar_one())

    # Institutions

    def _check_parent(self, conn: Connection, institution: Institution) -> None:
        if institution.parent is not None:
            require(
                conn, institutions.c.code == institution.parent, "institution", institution.parent
            )

    def add_institution(self, institution: Institution) -> None:
        with unit_of_work(self.engine) as conn:
            self._check_parent(conn, institution)
            conflict_on_duplicate(
                conn,
                insert(institutions).values(
                    code=institution.code,
                    name=institution.name,
                    level=institution.level.value,
                    parent=institution.parent,
                    created_at=from_epoch_s(self._clock()),
                ),
                Conflict("institution", institution.code),
            )
            self._bump(conn)

    def update_institution(self, institution: Institution) -> None:
        with unit_of_work(self.engine) as conn:
            self._check_parent(conn, institution)
            done = conn.execute(
                update(institutions)
                .where(institutions.c.code == institution.code)
                .values(
                    name=institution.name,
                    level=institution.level.value,
                    parent=institution.parent,
                )
            )
            if done.rowcount == 0:
                raise NotFound("institution", institution.code)
            self._bump(conn)

    def get_institution(self, code: str) -> Institution | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(select(institutions).where(institutions.c.code == code)).first()
        return None if row is None else _institution(row)

    def all_institutions(self) -> Sequence[Institution]:
        with unit_of_work(self.engine, read=True) as conn:
            version = self._version(conn)
            cached = self._institutions
            if cached is not None and cached[0] == version:
                return cached[1]
            rows = conn.execute(select(institutions).order_by(institutions.c.code))
            found = tuple(_institution(row) for row in rows)
        self._institutions = (version, found)
        return found

    def list_institutions(self, where: InstitutionFilter, page: PageRequest) -> Page[Institution]:
        terms = [_search(where.search, institutions.c.code, institutions.c.name)]
        if where.within is not None:
            terms.append(institutions.c.code.in_(sorted(where.within)))
        if where.parent is not None:
            terms.append(institutions.c.parent == where.parent)
        if where.level is not None:
            terms.append(institutions.c.level == where.level.value)
        statement = select(institutions).where(and_(*terms)).order_by(institutions.c.code)
        with unit_of_work(self.engine, read=True) as conn:
            rows, total = _page(conn, statement, page)
        return Page(tuple(_institution(row) for row in rows), total)

    # Departments

    def add_department(self, department: Department) -> None:
        with unit_of_work(self.engine) as conn:
            require(
                conn,
                institutions.c.code == department.institution,
                "institution",
                department.institution,
            )
            conflict_on_duplicate(
                conn,
                insert(departments).values(
                    institution=department.institution,
                    code=department.code,
                    name=department.name,
                ),
                Conflict("department", department.code),
            )

    def list_departments(self, institution: str) -> Sequence[Department]:
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(departments)
                .where(departments.c.institution == institution)
                .order_by(departments.c.code)
            )
            return [
                Department(institution=row.institution, code=row.code, name=row.name)
                for row in rows
            ]

    # People

    def _check_person_references(self, conn: Connection, person: Person) -> None:
        if person.institution is None:
            return
        require(conn, institutions.c.code == person.institution, "institution", person.institution)
        if person.department is not None:
            require(
                conn,
                (departments.c.institution == person.institution)
                & (departments.c.code == person.department),
                "department",
                person.department,
            )

    def add_person(self, person: Person, credentials: Credentials) -> None:
        if credentials.person_id != person.id:
            raise InvalidInput("person_id", "the credentials are another person's")
        with unit_of_work(self.engine) as conn:
            self._check_person_references(conn, person)
            conflict_on_duplicate(
                conn,
                insert(people).values(
                    id=person.id,
                    created_at=from_epoch_s(self._clock()),
                    **_person_values(person),
                ),
                Conflict("person", person.username),
            )
            conn.execute(insert(person_roles), _role_rows(person))
            conn.execute(
                insert(schema.credentials).values(credential_row(person.id, credentials, self._box))
            )

    def update_person(self, person: Person) -> None:
        with unit_of_work(self.engine) as conn:
            stored = conn.execute(
                select(people.c.username).where(people.c.id == person.id)
            ).scalar_one_or_none()
            if stored is None:
                raise NotFound("person", person.id)
            if stored != person.username:
                raise InvalidInput("username", "a username cannot be changed")
            self._check_person_references(conn, person)
            conn.execute(
                update(people).where(people.c.id == person.id).values(**_person_values(person))
            )
            conn.execute(delete(person_roles).where(person_roles.c.person_id == person.id))
            conn.execute(insert(person_roles), _role_rows(person))

    def _with_roles(self, conn: Connection, statement: Select[Any]) -> list[Person]:
        """The people ``statement`` selects (ordered by username), with their roles, in
        one query: the page joined to its role rows."""
        page = statement.subquery("page")
        joined = (
            select(page, person_roles.c.role, person_roles.c.scope)
            .select_from(page.outerjoin(person_roles, person_roles.c.person_id == page.c.id))
            .order_by(page.c.username, person_roles.c.role)
        )
        groups: dict[str, tuple[Any, list[tuple[str, str | None]]]] = {}
        for row in conn.execute(joined):
            _, held = groups.setdefault(row.id, (row, []))
            if row.role is not None:
                held.append((row.role, row.scope))
        found = []
        for row, held in groups.values():
            scopes = [scope for _, scope in held if scope is not None]
            found.append(
                Person(
                    id=row.id,
                    username=row.username,
                    display_name=row.display_name,
                    institution=row.institution,
                    roles=frozenset(Role(role) for role, _ in held),
                    admin_scope=AdminScope(scopes[0]) if scopes else None,
                    department=row.department,
                    specialty=row.specialty,
                    title=row.title,
                )
            )
        return found

    def _one_person(self, condition: ColumnElement[bool]) -> Person | None:
        with unit_of_work(self.engine, read=True) as conn:
            found = self._with_roles(conn, select(people).where(condition))
        return found[0] if found else None

    def get_person(self, person_id: str) -> Person | None:
        return self._one_person(people.c.id == person_id)

    def person_by_username(self, username: str) -> Person | None:
        return self._one_person(people.c.username == username)

    def list_people(self, where: PeopleFilter, page: PageRequest) -> Page[Person]:
        terms = [_search(where.search, people.c.username, people.c.display_name)]
        if where.institutions is not None:
            terms.append(people.c.institution.in_(sorted(where.institutions)))
        if where.role is not None:
            terms.append(
                exists().where(
                    (person_roles.c.person_id == people.c.id)
                    & (person_roles.c.role == where.role.value)
                )
            )
        statement = select(people).where(and_(*terms)).order_by(people.c.username)
        paged = statement.limit(page.limit).offset(page.offset)
        with unit_of_work(self.engine, read=True) as conn:
            found = self._with_roles(conn, paged)
            return Page(tuple(found), _total(conn, statement, page, len(found)))

    def deployment_admin_exists(self) -> bool:
        with unit_of_work(self.engine, read=True) as conn:
            return _exists(
                conn,
                (person_roles.c.role == Role.ADMIN.value)
                & (person_roles.c.scope == AdminScope.DEPLOYMENT.value),
            )

    # Devices

    def add_device(self, device: Device, credential_sha256: str) -> None:
        with unit_of_work(self.engine) as conn:
            require(
                conn, institutions.c.code == device.institution, "institution", device.institution
            )
            conflict_on_duplicate(
                conn,
                insert(devices).values(
                    id=device.id,
                    name=device.name,
                    institution=device.institution,
                    credential_sha256=credential_sha256,
                    created_at=from_epoch_s(device.created_at_s),
                    revoked_at=from_epoch_s(device.created_at_s) if device.revoked else None,
                ),
                Conflict("device", device.id),
            )

    def get_device(self, device_id: str) -> Device | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(select(devices).where(devices.c.id == device_id)).first()
        return None if row is None else _device(row)

    def device_by_credential(self, credential_sha256: str) -> Device | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(
                select(devices).where(devices.c.credential_sha256 == credential_sha256)
            ).first()
        return None if row is None else _device(row)

    def revoke_device(self, device_id: str, at_s: float) -> None:
        with unit_of_work(self.engine) as conn:
            require(conn, devices.c.id == device_id, "device", device_id)
            conn.execute(
                update(devices)
                .where((devices.c.id == device_id) & devices.c.revoked_at.is_(None))
                .values(revoked_at=from_epoch_s(at_s))
            )

    def list_devices(self, where: DeviceFilter, page: PageRequest) -> Page[Device]:
        terms = [_search(where.search, devices.c.id, devices.c.name)]
        if where.institutions is not None:
            terms.append(devices.c.institution.in_(sorted(where.institutions)))
        if not where.include_revoked:
            terms.append(devices.c.revoked_at.is_(None))
        statement = select(devices).where(and_(*terms)).order_by(devices.c.id)
        with unit_of_work(self.engine, read=True) as conn:
            rows, total = _page(conn, statement, page)
        return Page(tuple(_device(row) for row in rows), total)

    # Service relations

    def set_relation(self, relation: ServiceRelation) -> None:
        key = (
            (service_relations.c.provider == relation.provider)
            & (service_relations.c.client == relation.client)
            & (service_relations.c.kind == relation.kind.value)
        )
        with unit_of_work(self.engine) as conn:
            for code in (relation.provider, relation.client):
                require(conn, institutions.c.code == code, "institution", code)
            conn.execute(delete(service_relations).where(key))
            conn.execute(
                insert(service_relations).values(
                    provider=relation.provider,
                    client=relation.client,
                    kind=relation.kind.value,
                    override=relation.override.value,
                )
            )
            self._bump(conn)

    def clear_relation(self, provider: str, client: str, kind: ServiceKind) -> None:
        with unit_of_work(self.engine) as conn:
            conn.execute(
                delete(service_relations).where(
                    (service_relations.c.provider == provider)
                    & (service_relations.c.client == client)
                    & (service_relations.c.kind == kind.value)
                )
            )
            self._bump(conn)

    def all_relations(self) -> Sequence[ServiceRelation]:
        with unit_of_work(self.engine, read=True) as conn:
            version = self._version(conn)
            cached = self._relations
            if cached is not None and cached[0] == version:
                return cached[1]
            rows = conn.execute(
                select(service_relations).order_by(
                    service_relations.c.provider,
                    service_relations.c.client,
                    service_relations.c.kind,
                )
            )
            found = tuple(_relation(row) for row in rows)
        self._relations = (version, found)
        return found
