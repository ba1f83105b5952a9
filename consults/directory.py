"""The directory: institutions in a tree, departments, people and their roles, ECG carts,
service relations between institutions, and the records of authentication (credentials,
login sessions, API tokens).

Design notes
------------
- Every type is a frozen dataclass that validates in its constructor (like h11's events):
  a value that exists is a valid one, so the store and the API never re-check shapes.
  A rule that needs another record (a child's level below its parent's) lives in
  :mod:`consults.rights` / :mod:`consults.accounts`, which are given both.
- Institutions are keyed by ``code``, unique across the deployment; references between
  records are keys (``parent``, ``institution``), never objects, so a record can be
  stored and read alone.
- Times are seconds since the Unix epoch, UTC, as floats (``*_at_s``); the clock is
  injected wherever time is read.
- Secrets are never stored: a session, API token or device credential is kept as the
  SHA-256 hex of the random value handed out once (:func:`consults.accounts.token_sha256`).
- Text fields refuse control characters, surrounding blanks and the characters of SQL
  and markup injection (``' " ; \\ % < > = * ` --``); usernames, codes and ids
  are ASCII from a small alphabet, so they are safe in URLs and logs. Display names are
  letters of the Latin or CJK scripts, digits and a few joiners (space, ``·``, ``.``, ``-``):
  "张三", "Zhang San", "阿依古丽·买买提", "Jean-Luc Picard".
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

from consults.errors import InvalidInput

__all__ = [
    "AdminScope",
    "ApiToken",
    "Credentials",
    "Department",
    "Device",
    "Institution",
    "Level",
    "LoginSession",
    "Person",
    "RelationOverride",
    "Role",
    "ServiceKind",
    "ServiceRelation",
    "check_code",
    "check_display_name",
    "check_text",
    "check_username",
]

# Limits
MAX_CODE_CHARS = 64
MAX_NAME_CHARS = 200
MAX_DISPLAY_NAME_CHARS = 100
MAX_SHORT_TEXT_CHARS = 100

_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{1,63}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_NAME_JOINERS = frozenset(" ·.-")
_ASCII_DIGITS = frozenset("0123456789")
_FORBIDDEN_IN_TEXT = frozenset("'\";\\%<>=*`")


class Level(enum.Enum):
    """The level of an institution, from the top of the tree down."""

    PROVINCE = "province"
    CITY = "city"
    COUNTY = "county"
    TOWNSHIP = "township"
    VILLAGE = "village"

    @property
    def rank(self) -> int:
        """0 for a province, 4 for a village: a child's rank is greater than its parent's."""
        return _LEVEL_RANK[self]

    def may_parent(self, child: Level) -> bool:
        """Whether an institution of this level may be the parent of one of ``child``."""
        return self.rank < child.rank


_LEVEL_RANK = {level: rank for rank, level in enumerate(Level)}


class Role(enum.Enum):
    """What a person does; a person may hold several."""

    DOCTOR = "doctor"  # applies for consults at a clinic
    EXPERT = "expert"  # gives opinions (specialty and title)
    COORDINATOR = "coordinator"  # triages a service centre's requests
    ECG_READER = "ecg_reader"
    ADMIN = "admin"  # of an institution (and below) or of the whole deployment
    AUDITOR = "auditor"


class AdminScope(enum.Enum):
    """How far an admin's rights reach."""

    INSTITUTION = "institution"  # the admin's institution and those below it
    DEPLOYMENT = "deployment"  # everything


class ServiceKind(enum.Enum):
    """What one institution provides another."""

    ECG = "ecg"  # reads its ECGs (an ECG centre)
    CONSULT = "consult"  # gives consults (a consult centre)


class RelationOverride(enum.Enum):
    """An admin's change to the default "a parent serves the institutions below it"."""

    ADDED = "added"  # the provider serves the client although the tree does not say so
    REMOVED = "removed"  # the provider does not serve the client although the tree says so


def check_code(field_name: str, value: str) -> str:
    """Check a code or id: ASCII letters, digits, ``.``, ``_``, ``-``; 1 to 64 characters."""
    if not _CODE.fullmatch(value):
        raise InvalidInput(
            field_name,
            "1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return value


def check_username(value: str) -> str:
    """Check a username: 2 to 64 lowercase ASCII letters, digits, ``.``, ``_``, ``@``, ``-``."""
    if not _USERNAME.fullmatch(value):
        raise InvalidInput(
            "username",
            "2 to 64 lowercase ASCII letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit",
        )
    return value


def check_text(field_name: str, value: str, max_chars: int) -> str:
    """Check free text: 1 to ``max_chars`` characters, no control character, no blank ends."""
    if not value or len(value) > max_chars:
        raise InvalidInput(field_name, f"1 to {max_chars} characters")
    if value != value.strip():
        raise InvalidInput(field_name, "no blank at the start or the end")
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        raise InvalidInput(field_name, "no control or unassigned characters")
    if any(ch in _FORBIDDEN_IN_TEXT for ch in value) or "--" in value:
        # Never needed in a name, and the usual tools of SQL and markup injection: the
        # store binds every value as a parameter anyway; this keeps them out of records
        # that other systems (HIS exports, reports) may handle less carefully.
        raise InvalidInput(field_name, "none of ' \" ; \\ % < > = * ` nor --")
    return value


def check_display_name(value: str) -> str:
    """Check a display name: Latin or CJK letters, ASCII digits, space, ``·``, ``.``, ``-``."""
    check_text("display_name", value, MAX_DISPLAY_NAME_CHARS)
    for ch in value:
        if ch in _NAME_JOINERS:
            continue
        name = unicodedata.name(ch, "")
        if ch in _ASCII_DIGITS:
            continue  # "Doctor 2", "王医生2": told apart by a number
        if not (ch.isalpha() and (name.startswith("LATIN") or name.startswith("CJK"))):
            raise InvalidInput(
                "display_name",
                f"{ch!r} is not a Latin or Chinese letter, a digit, a space, '·', '.' or '-'",
            )
    return value


def _check_sha256(field_name: str, value: str) -> None:
    if not _SHA256_HEX.fullmatch(value):
        raise InvalidInput(field_name, "64 lowercase hexadecimal digits")


def _check_time(field_name: str, value: float | None) -> None:
    if value is not None and not (value >= 0.0 and value < float("inf")):
        raise InvalidInput(field_name, "seconds since the epoch, finite and not negative")


@dataclass(frozen=True, slots=True)
class Institution:
    """A hospital, centre or clinic: a node of the tree.

    Parameters
    ----------
    code
        Unique across the deployment (the key everything refers to).
    name
        As people read it, Chinese or Latin.
    level
        Its place in the administrative hierarchy.
    parent
        The code of the institution above it, ``None`` at a root. Its level must be above
        this one's (checked where both are known: :func:`consults.rights.check_parent`).
    """

    code: str
    name: str
    level: Level
    parent: str | None = None

    def __post_init__(self) -> None:
        check_code("code", self.code)
        check_text("name", self.name, MAX_NAME_CHARS)
        if self.parent is not None:
            check_code("parent", self.parent)
            if self.parent == self.code:
                raise InvalidInput("parent", "an institution cannot be its own parent")


@dataclass(frozen=True, slots=True)
class Department:
    """A department of an institution, keyed by ``(institution, code)``."""

    institution: str
    code: str
    name: str

    def __post_init__(self) -> None:
        check_code("institution", self.institution)
        check_code("code", self.code)
        check_text("name", self.name, MAX_NAME_CHARS)


@dataclass(frozen=True, slots=True)
class Person:
    """Someone who logs in.

    Parameters
    ----------
    id
        Opaque, assigned at creation, never reused; what the audit trail and sessions name.
    username
        What the person types at login; unique across the deployment.
    display_name
        Chinese or Latin letters.
    institution
        The code of the institution the person belongs to; ``None`` only for an admin of
        the whole deployment (the first admin, made by ``teleconsult setup`` before any
        institution exists).
    roles
        At least one.
    admin_scope
        Set if and only if ``Role.ADMIN`` is among ``roles``.
    department
        A department code of ``institution``, or ``None``.
    specialty, title
        An expert's specialty (e.g. 心内科) and professional title (职称, e.g. 主任医师).
    """

    id: str
    username: str
    display_name: str
    institution: str | None
    roles: frozenset[Role]
    admin_scope: AdminScope | None = None
    department: str | None = None
    specialty: str | None = None
    title: str | None = None

    def __post_init__(self) -> None:
        check_code("id", self.id)
        check_username(self.username)
        check_display_name(self.display_name)
        if self.institution is not None:
            check_code("institution", self.institution)
        elif self.admin_scope is not AdminScope.DEPLOYMENT:
            raise InvalidInput("institution", "required unless a deployment admin")
        if not self.roles:
            raise InvalidInput("roles", "at least one role")
        if (Role.ADMIN in self.roles) != (self.admin_scope is not None):
            raise InvalidInput("admin_scope", "given if and only if the person is an admin")
        if self.department is not None:
            check_code("department", self.department)
        if self.specialty is not None:
            check_text("specialty", self.specialty, MAX_SHORT_TEXT_CHARS)
        if self.title is not None:
            check_text("title", self.title, MAX_SHORT_TEXT_CHARS)

    @property
    def is_deployment_admin(self) -> bool:
        """An admin of the whole deployment."""
        return self.admin_scope is AdminScope.DEPLOYMENT

    @property
    def is_admin(self) -> bool:
        """An admin of an institution or of the deployment."""
        return self.admin_scope is not None


@dataclass(frozen=True, slots=True)
class Device:
    """An ECG cart (or monitor) registered to an institution.

    Its credential is stored as a SHA-256 by the repository, not here; a revoked device
    is kept (the audit trail and its stored streams name it) and never streams again.
    """

    id: str
    name: str
    institution: str
    revoked: bool = False
    created_at_s: float = 0.0

    def __post_init__(self) -> None:
        check_code("id", self.id)
        check_text("name", self.name, MAX_NAME_CHARS)
        check_code("institution", self.institution)
        _check_time("created_at_s", self.created_at_s)


@dataclass(frozen=True, slots=True)
class ServiceRelation:
    """An admin's override of who serves whom, for one kind of service.

    By default an institution serves every institution below it in the tree;
    ``ADDED`` makes ``provider`` serve ``client`` as well, ``REMOVED`` takes away a
    relation the tree gives. At most one override per ``(provider, client, kind)``.
    """

    provider: str
    client: str
    kind: ServiceKind
    override: RelationOverride = RelationOverride.ADDED

    def __post_init__(self) -> None:
        check_code("provider", self.provider)
        check_code("client", self.client)
        if self.provider == self.client:
            raise InvalidInput("client", "an institution always serves itself")


@dataclass(frozen=True, slots=True)
class Credentials:
    """What authenticates a person, and the state of the checks on it.

    Parameters
    ----------
    person_id
        Whose credentials.
    password_hash
        An argon2id PHC string (``$argon2id$v=19$m=...``).
    failed_logins
        Consecutive failures since the last success or unlock.
    locked_at_s
        When the account was locked, ``None`` while it is not.
    totp_secret
        Base32 RFC 6238 secret once enrolled, else ``None``.
    totp_last_step
        The last 30 s step accepted (a step is accepted once only), else ``None``.
    """

    person_id: str
    password_hash: str
    failed_logins: int = 0
    locked_at_s: float | None = None
    totp_secret: str | None = None
    totp_last_step: int | None = None

    def __post_init__(self) -> None:
        check_code("person_id", self.person_id)
        if not self.password_hash.startswith("$argon2"):
            raise InvalidInput("password_hash", "an argon2 PHC string")
        if self.failed_logins < 0:
            raise InvalidInput("failed_logins", "not negative")
        _check_time("locked_at_s", self.locked_at_s)

    @property
    def locked(self) -> bool:
        """Whether the account is locked."""
        return self.locked_at_s is not None


@dataclass(frozen=True, slots=True)
class LoginSession:
    """A browser session: the cookie's value is shown once, ``sha256`` is kept."""

    id: str
    person_id: str
    sha256: str
    created_at_s: float
    expires_at_s: float
    revoked_at_s: float | None = None

    def __post_init__(self) -> None:
        check_code("id", self.id)
        check_code("person_id", self.person_id)
        _check_sha256("sha256", self.sha256)
        _check_time("created_at_s", self.created_at_s)
        _check_time("expires_at_s", self.expires_at_s)
        _check_time("revoked_at_s", self.revoked_at_s)
        if self.expires_at_s < self.created_at_s:
            raise InvalidInput("expires_at_s", "not before created_at_s")

    def valid_at(self, now_s: float) -> bool:
        """Whether the session may be used at ``now_s``."""
        return self.revoked_at_s is None and now_s < self.expires_at_s


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A bearer token a person creates for an integration (HIS, scripts).

    ``name`` is the person's label for it; ``expires_at_s`` ``None`` means until revoked.
    """

    id: str
    person_id: str
    name: str
    sha256: str
    created_at_s: float
    expires_at_s: float | None = None
    revoked_at_s: float | None = None

    def __post_init__(self) -> None:
        check_code("id", self.id)
        check_code("person_id", self.person_id)
        check_text("name", self.name, MAX_SHORT_TEXT_CHARS)
        _check_sha256("sha256", self.sha256)
        _check_time("created_at_s", self.created_at_s)
        _check_time("expires_at_s", self.expires_at_s)
        _check_time("revoked_at_s", self.revoked_at_s)

    def valid_at(self, now_s: float) -> bool:
        """Whether the token may be used at ``now_s``."""
        return self.revoked_at_s is None and (
            self.expires_at_s is None or now_s < self.expires_at_s
        )
