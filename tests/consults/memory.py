"""An in-memory implementation of the repository Protocols, for the unit tests of
``consults/`` only (the API's tests run on the real store)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TypeVar

from consults.directory import (
    ApiToken,
    Credentials,
    Department,
    Device,
    Institution,
    LoginSession,
    Person,
    Role,
    ServiceKind,
    ServiceRelation,
)
from consults.errors import Conflict, NotFound
from consults.repositories import (
    AuditEvent,
    DeviceFilter,
    InstitutionFilter,
    Page,
    PageRequest,
    PeopleFilter,
)

T = TypeVar("T")


def _page(items: list[T], page: PageRequest) -> Page[T]:
    return Page(tuple(items[page.offset : page.offset + page.limit]), len(items))


def _matches(search: str | None, *values: str) -> bool:
    return search is None or any(search.lower() in v.lower() for v in values)


class MemoryStore:
    """Directory, credentials, sessions and audit in dicts; one object for all four."""

    def __init__(self) -> None:
        self.institutions: dict[str, Institution] = {}
        self.departments: dict[tuple[str, str], Department] = {}
        self.people: dict[str, Person] = {}
        self.creds: dict[str, Credentials] = {}
        self.devices: dict[str, tuple[Device, str]] = {}
        self.relations: dict[tuple[str, str, ServiceKind], ServiceRelation] = {}
        self.sessions: dict[str, LoginSession] = {}
        self.tokens: dict[str, ApiToken] = {}
        self.required: frozenset[Role] = frozenset()
        self.events: list[AuditEvent] = []

    # DirectoryRepository
    def add_institution(self, institution: Institution) -> None:
        if institution.code in self.institutions:
            raise Conflict("institution", institution.code)
        self.institutions[institution.code] = institution

    def update_institution(self, institution: Institution) -> None:
        if institution.code not in self.institutions:
            raise NotFound("institution", institution.code)
        self.institutions[institution.code] = institution

    def get_institution(self, code: str) -> Institution | None:
        return self.institutions.get(code)

    def all_institutions(self) -> Sequence[Institution]:
        return list(self.institutions.values())

    def list_institutions(self, where: InstitutionFilter, page: PageRequest) -> Page[Institution]:
        items = [
            i
            for _, i in sorted(self.institutions.items())
            if (where.within is None or i.code in where.within)
            and (where.parent is None or i.parent == where.parent)
            and (where.level is None or i.level is where.level)
            and _matches(where.search, i.code, i.name)
        ]
        return _page(items, page)

    def add_department(self, department: Department) -> None:
        key = (department.institution, department.code)
        if key in self.departments:
            raise Conflict("department", department.code)
        self.departments[key] = department

    def list_departments(self, institution: str) -> Sequence[Department]:
        return [d for (i, _), d in sorted(self.departments.items()) if i == institution]

    def add_person(self, person: Person, credentials: Credentials) -> None:
        if person.id in self.people or self.person_by_username(person.username):
            raise Conflict("person", person.username)
        self.people[person.id] = person
        self.creds[person.id] = credentials

    def update_person(self, person: Person) -> None:
        if person.id not in self.people:
            raise NotFound("person", person.id)
        self.people[person.id] = person

    def get_person(self, person_id: str) -> Person | None:
        return self.people.get(person_id)

    def person_by_username(self, username: str) -> Person | None:
        return next((p for p in self.people.values() if p.username == username), None)

    def list_people(self, where: PeopleFilter, page: PageRequest) -> Page[Person]:
        items = [
            p
            for p in sorted(self.people.values(), key=lambda p: p.username)
            if (where.institutions is None or p.institution in where.institutions)
            and (where.role is None or where.role in p.roles)
            and _matches(where.search, p.username, p.display_name)
        ]
        return _page(items, page)

    def deployment_admin_exists(self) -> bool:
        return any(p.is_deployment_admin for p in self.people.values())

    def add_device(self, device: Device, credential_sha256: str) -> None:
        if device.id in self.devices:
            raise Conflict("device", device.id)
        self.devices[device.id] = (device, credential_sha256)

    def get_device(self, device_id: str) -> Device | None:
        found = self.devices.get(device_id)
        return found[0] if found else None

    def device_by_credential(self, credential_sha256: str) -> Device | None:
        return next((d for d, h in self.devices.values() if h == credential_sha256), None)

    def revoke_device(self, device_id: str, at_s: float) -> None:
        if device_id not in self.devices:
            raise NotFound("device", device_id)
        device, digest = self.devices[device_id]
        self.devices[device_id] = (dataclasses.replace(device, revoked=True), digest)

    def list_devices(self, where: DeviceFilter, page: PageRequest) -> Page[Device]:
        items = [
            d
            for _, (d, _h) in sorted(self.devices.items())
            if (where.institutions is None or d.institution in where.institutions)
            and (where.include_revoked or not d.revoked)
            and _matches(where.search, d.id, d.name)
        ]
        return _page(items, page)

    def set_relation(self, relation: ServiceRelation) -> None:
        self.relations[(relation.provider, relation.client, relation.kind)] = relation

    def clear_relation(self, provider: str, client: str, kind: ServiceKind) -> None:
        self.relations.pop((provider, client, kind), None)

    def all_relations(self) -> Sequence[ServiceRelation]:
        return list(self.relations.values())

    # CredentialRepository
    def get_credentials(self, person_id: str) -> Credentials | None:
        return self.creds.get(person_id)

    def _change(self, person_id: str, **changes: object) -> Credentials:
        new = dataclasses.replace(self.creds[person_id], **changes)  # type: ignore[arg-type]
        self.creds[person_id] = new
        return new

    def set_password_hash(self, person_id: str, password_hash: str) -> None:
        self._change(person_id, password_hash=password_hash)

    def record_failed_login(self, person_id: str, at_s: float) -> int:
        return self._change(
            person_id, failed_logins=self.creds[person_id].failed_logins + 1
        ).failed_logins

    def record_successful_login(self, person_id: str, at_s: float) -> None:
        self._change(person_id, failed_logins=0)

    def lock(self, person_id: str, at_s: float) -> None:
        self._change(person_id, locked_at_s=at_s)

    def unlock(self, person_id: str) -> None:
        self._change(person_id, locked_at_s=None, failed_logins=0)

    def set_totp_secret(self, person_id: str, secret: str | None) -> None:
        self._change(person_id, totp_secret=secret, totp_last_step=None)

    def accept_totp_step(self, person_id: str, step: int) -> bool:
        last = self.creds[person_id].totp_last_step
        if last is not None and step <= last:
            return False
        self._change(person_id, totp_last_step=step)
        return True

    def totp_required_roles(self) -> frozenset[Role]:
        return self.required

    def set_totp_required_roles(self, roles: frozenset[Role]) -> None:
        self.required = roles

    # SessionRepository
    def add_session(self, session: LoginSession) -> None:
        self.sessions[session.id] = session

    def session_by_sha256(self, sha256: str) -> LoginSession | None:
        return next((s for s in self.sessions.values() if s.sha256 == sha256), None)

    def revoke_session(self, session_id: str, at_s: float) -> None:
        if session_id in self.sessions and self.sessions[session_id].revoked_at_s is None:
            self.sessions[session_id] = dataclasses.replace(
                self.sessions[session_id], revoked_at_s=at_s
            )

    def revoke_sessions_of(self, person_id: str, at_s: float) -> int:
        open_ = [
            s.id for s in self.sessions.values() if s.person_id == person_id and s.valid_at(at_s)
        ]
        for session_id in open_:
            self.revoke_session(session_id, at_s)
        return len(open_)

    def add_api_token(self, token: ApiToken) -> None:
        self.tokens[token.id] = token

    def api_token_by_sha256(self, sha256: str) -> ApiToken | None:
        return next((t for t in self.tokens.values() if t.sha256 == sha256), None)

    def list_api_tokens(self, person_id: str) -> Sequence[ApiToken]:
        return sorted(
            (t for t in self.tokens.values() if t.person_id == person_id),
            key=lambda t: -t.created_at_s,
        )

    def revoke_api_token(self, token_id: str, at_s: float) -> None:
        token = self.tokens[token_id]
        if token.revoked_at_s is None:
            self.tokens[token_id] = dataclasses.replace(token, revoked_at_s=at_s)

    # AuditSink
    def append(self, event: AuditEvent) -> None:
        self.events.append(event)

    def actions(self) -> list[str]:
        """The audited actions so far, in order."""
        return [e.action for e in self.events]
