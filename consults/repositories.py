"""What the accounts logic and the API need from storage, as Protocols the store implements.

Design notes
------------
- Synchronous on purpose: the store runs SQLAlchemy Core, and the API calls these from a
  worker thread (Litestar ``sync_to_thread``), never on the event loop.
- Each method is one unit of work (one transaction) and is atomic by itself. The two
  that race between nodes are compare-and-set by contract: ``record_failed_login``
  returns the count it wrote, ``accept_totp_step`` accepts a step only once.
- Lookups answer ``None`` for a missing record; writes raise
  :class:`~consults.errors.Conflict` for a duplicate key and
  :class:`~consults.errors.NotFound` for a missing one, and
  :class:`~consults.errors.RepositoryError` when storage fails. Nothing else escapes.
- Listing is paginated (``limit``/``offset``, ``total`` for the pager) and ordered by a
  stable key. ``search`` is literal text, matched case-insensitively as a substring: the
  store escapes ``%``, ``_`` and its escape character, and never builds SQL from it.
- ``all_institutions`` / ``all_relations`` answer the whole tree: it holds thousands of
  rows at most, and the rights are decided on it in memory (:mod:`consults.rights`).
- Secrets never reach storage: sessions, API tokens and device credentials are looked
  up by the SHA-256 hex of the value handed out once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from consults.directory import (
    ApiToken,
    Credentials,
    Department,
    Device,
    Institution,
    Level,
    LoginSession,
    Person,
    Role,
    ServiceKind,
    ServiceRelation,
    check_text,
)
from consults.errors import InvalidInput

__all__ = [
    "AuditEvent",
    "AuditSink",
    "CredentialRepository",
    "DeviceFilter",
    "DirectoryRepository",
    "InstitutionFilter",
    "Page",
    "PageRequest",
    "PeopleFilter",
    "SessionRepository",
]

T = TypeVar("T")

# Limits
MAX_PAGE_ITEMS = 500
MAX_SEARCH_CHARS = 100

_ACTION = re.compile(r"[a-z][a-z0-9_.]{0,63}")


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Which slice of a listing: ``limit`` items (1 to 500) after skipping ``offset``."""

    limit: int = 50
    offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE_ITEMS:
            raise InvalidInput("limit", f"1 to {MAX_PAGE_ITEMS}")
        if self.offset < 0:
            raise InvalidInput("offset", "not negative")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing and the number of items of the whole listing."""

    items: tuple[T, ...]
    total: int


def _check_search(search: str | None) -> None:
    if search is not None:
        check_text("search", search, MAX_SEARCH_CHARS)


@dataclass(frozen=True, slots=True)
class InstitutionFilter:
    """Which institutions to list (every given condition holds), ordered by ``code``.

    ``within`` ``None`` means every institution (a deployment admin); otherwise only
    those codes (the subtree an institution admin sees). ``search`` matches the code or
    the name.
    """

    within: frozenset[str] | None = None
    parent: str | None = None
    level: Level | None = None
    search: str | None = None

    def __post_init__(self) -> None:
        _check_search(self.search)


@dataclass(frozen=True, slots=True)
class PeopleFilter:
    """Which people to list, ordered by ``username``.

    ``institutions`` ``None`` means everyone's; ``search`` matches the username or the
    display name.
    """

    institutions: frozenset[str] | None = None
    role: Role | None = None
    search: str | None = None

    def __post_init__(self) -> None:
        _check_search(self.search)


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """Which devices to list, ordered by ``id``; ``search`` matches the id or the name."""

    institutions: frozenset[str] | None = None
    include_revoked: bool = True
    search: str | None = None

    def __post_init__(self) -> None:
        _check_search(self.search)


class DirectoryRepository(Protocol):
    """Institutions, departments, people, devices and service relations."""

    # Institutions
    def add_institution(self, institution: Institution) -> None:
        """Store a new institution; :class:`Conflict` if its code exists."""
        ...

    def update_institution(self, institution: Institution) -> None:
        """Replace the institution of the same code; :class:`NotFound` if none."""
        ...

    def get_institution(self, code: str) -> Institution | None:
        """The institution of this code."""
        ...

    def all_institutions(self) -> Sequence[Institution]:
        """Every institution (the whole tree)."""
        ...

    def list_institutions(self, where: InstitutionFilter, page: PageRequest) -> Page[Institution]:
        """A page of the institutions matching ``where``, ordered by code."""
        ...

    # Departments
    def add_department(self, department: Department) -> None:
        """Store a department; :class:`Conflict` if ``(institution, code)`` exists."""
        ...

    def list_departments(self, institution: str) -> Sequence[Department]:
        """The departments of one institution, ordered by code."""
        ...

    # People
    def add_person(self, person: Person, credentials: Credentials) -> None:
        """Store a person with their first credentials, in one transaction.

        :class:`Conflict` if the id or the username exists.
        """
        ...

    def update_person(self, person: Person) -> None:
        """Replace the person of the same id (the username may not change)."""
        ...

    def get_person(self, person_id: str) -> Person | None:
        """The person of this id."""
        ...

    def person_by_username(self, username: str) -> Person | None:
        """The person of this username (exact match)."""
        ...

    def list_people(self, where: PeopleFilter, page: PageRequest) -> Page[Person]:
        """A page of the people matching ``where``, ordered by username."""
        ...

    def deployment_admin_exists(self) -> bool:
        """Whether any person is an admin of the whole deployment."""
        ...

    # Devices
    def add_device(self, device: Device, credential_sha256: str) -> None:
        """Register a device with the SHA-256 of its credential; :class:`Conflict` if the
        id exists (also when the existing one is revoked: ids are never reused)."""
        ...

    def get_device(self, device_id: str) -> Device | None:
        """The device of this id, revoked or not."""
        ...

    def device_by_credential(self, credential_sha256: str) -> Device | None:
        """The device whose credential has this SHA-256, revoked or not."""
        ...

    def revoke_device(self, device_id: str, at_s: float) -> None:
        """Mark the device revoked; :class:`NotFound` if none. Revoking twice is no error."""
        ...

    def list_devices(self, where: DeviceFilter, page: PageRequest) -> Page[Device]:
        """A page of the devices matching ``where``, ordered by id."""
        ...

    # Service relations
    def set_relation(self, relation: ServiceRelation) -> None:
        """Store the override for ``(provider, client, kind)``, replacing any other."""
        ...

    def clear_relation(self, provider: str, client: str, kind: ServiceKind) -> None:
        """Remove the override for ``(provider, client, kind)`` (back to the tree's
        default); no error when there is none."""
        ...

    def all_relations(self) -> Sequence[ServiceRelation]:
        """Every override."""
        ...


class CredentialRepository(Protocol):
    """Passwords, lockout counters and the second factor of people."""

    def get_credentials(self, person_id: str) -> Credentials | None:
        """The credentials of a person."""
        ...

    def set_password_hash(self, person_id: str, password_hash: str) -> None:
        """Replace the password hash (a change, or a rehash with new parameters)."""
        ...

    def record_failed_login(self, person_id: str, at_s: float) -> int:
        """Add one to the consecutive failures, atomically; answer the new count."""
        ...

    def record_successful_login(self, person_id: str, at_s: float) -> None:
        """Set the consecutive failures back to 0."""
        ...

    def lock(self, person_id: str, at_s: float) -> None:
        """Lock the account (no login until :meth:`unlock`)."""
        ...

    def unlock(self, person_id: str) -> None:
        """Unlock the account and set the consecutive failures back to 0."""
        ...

    def set_totp_secret(self, person_id: str, secret: str | None) -> None:
        """Enrol (or with ``None`` remove) the second factor; forgets the last step."""
        ...

    def accept_totp_step(self, person_id: str, step: int) -> bool:
        """Record ``step`` as used if it is later than the last accepted one, atomically.

        Answers whether it was recorded: ``False`` means the code was used already.
        """
        ...

    def totp_required_roles(self) -> frozenset[Role]:
        """The roles whose holders must log in with a second factor."""
        ...

    def set_totp_required_roles(self, roles: frozenset[Role]) -> None:
        """Replace the roles that require a second factor."""
        ...


class SessionRepository(Protocol):
    """Login sessions and API bearer tokens."""

    def add_session(self, session: LoginSession) -> None:
        """Store a new session."""
        ...

    def session_by_sha256(self, sha256: str) -> LoginSession | None:
        """The session whose token has this SHA-256, revoked or expired or not."""
        ...

    def revoke_session(self, session_id: str, at_s: float) -> None:
        """Revoke one session; no error if it is revoked already or unknown."""
        ...

    def revoke_sessions_of(self, person_id: str, at_s: float) -> int:
        """Revoke every open session of a person; answer how many were open."""
        ...

    def add_api_token(self, token: ApiToken) -> None:
        """Store a new API token."""
        ...

    def api_token_by_sha256(self, sha256: str) -> ApiToken | None:
        """The API token with this SHA-256, revoked or expired or not."""
        ...

    def list_api_tokens(self, person_id: str) -> Sequence[ApiToken]:
        """The API tokens of a person, revoked ones too, newest first."""
        ...

    def revoke_api_token(self, token_id: str, at_s: float) -> None:
        """Revoke one API token; no error if it is revoked already."""
        ...


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One action for the audit trail.

    Parameters
    ----------
    at_s
        When, seconds since the epoch (UTC).
    action
        What, e.g. ``auth.login``, ``auth.login_failed``, ``directory.person_created``:
        lowercase ASCII, digits, ``_`` and ``.``.
    actor
        The person id who acted, or ``None`` (an unknown user at login, a device).
    target
        What was acted on (``person:<id>``, ``institution:<code>``, ``device:<id>``).
    outcome
        ``ok``, ``denied`` (refused by a rule) or ``failed``.
    details
        A few more facts; never a secret, a patient identifier or an address.
    institution, patient, consult
        What the action concerns, for the auditor's queries (indexed columns of the
        audit table); ``None`` when it concerns none.
    """

    at_s: float
    action: str
    actor: str | None = None
    target: str | None = None
    outcome: str = "ok"
    details: Mapping[str, str] = field(default_factory=dict)
    institution: str | None = None
    patient: str | None = None
    consult: str | None = None

    def __post_init__(self) -> None:
        if not _ACTION.fullmatch(self.action):
            raise InvalidInput("action", "lowercase ASCII letters, digits, '_' and '.'")
        if self.outcome not in ("ok", "denied", "failed"):
            raise InvalidInput("outcome", "ok, denied or failed")


class AuditSink(Protocol):
    """Where audit rows go: the store's append-only, hash-chained table."""

    def append(self, event: AuditEvent) -> None:
        """Append one row, durable before this returns; raise
        :class:`~consults.errors.RepositoryError` if it cannot be written."""
        ...
