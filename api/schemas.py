"""The request and response types of the accounts and directory API, as msgspec Structs.

The OpenAPI document is generated from these definitions (Litestar reads them), so a
field's constraint here is both the validation and the documentation. Values are checked
twice on purpose: the Struct bounds the shape and size (so a huge or wrongly typed value
is refused before any work), the domain constructors (:mod:`consults.directory`) check
the meaning, with the same stable error codes.

Times are UTC on the wire (RFC 3339, ``Z``); enums travel as their values.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, Parameter
from msgspec import UNSET, Meta, UnsetType

from api.errors import error_responses
from consults.directory import (
    AdminScope,
    ApiToken,
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

__all__ = [
    "DepartmentAnswer",
    "DepartmentCreate",
    "DeviceAnswer",
    "DeviceCreate",
    "DevicePage",
    "DeviceRegistered",
    "InstitutionAnswer",
    "InstitutionCreate",
    "InstitutionPage",
    "InstitutionRename",
    "LoginAnswer",
    "LoginRequest",
    "MeAnswer",
    "PasswordChange",
    "PasswordReset",
    "PersonAnswer",
    "PersonCreate",
    "PersonPage",
    "PersonUpdate",
    "RelationAnswer",
    "RelationSet",
    "TokenAnswer",
    "TokenCreate",
    "TokenCreated",
    "TotpAnswer",
    "TotpEnrol",
    "TotpRoles",
    "body",
    "documented",
    "example",
    "utc",
]

Code = Annotated[str, Meta(min_length=1, max_length=64, examples=["county-1"])]
Username = Annotated[str, Meta(min_length=1, max_length=64, examples=["li.doctor"])]
Password = Annotated[str, Meta(min_length=1, max_length=256)]
Text = Annotated[str, Meta(min_length=1, max_length=200)]
ShortText = Annotated[str, Meta(min_length=1, max_length=100)]
TotpCode = Annotated[str, Meta(min_length=1, max_length=10, examples=["123456"])]


def utc(seconds: float) -> datetime:
    """Seconds since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=UTC)


def _utc_or_none(seconds: float | None) -> datetime | None:
    return None if seconds is None else utc(seconds)


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /auth/login``: ``totp`` is needed once the person has enrolled."""

    username: Username
    password: Password
    totp: TotpCode | None = None


class PersonUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """``PATCH /people/{id}``: only the fields given change (``null`` clears an optional
    one); the username never changes."""

    display_name: ShortText | UnsetType = UNSET
    roles: Annotated[list[Role], Meta(min_length=1, max_length=6)] | UnsetType = UNSET
    institution: Code | UnsetType | None = UNSET
    admin_scope: AdminScope | UnsetType | None = UNSET
    department: Code | UnsetType | None = UNSET
    specialty: ShortText | UnsetType | None = UNSET
    title: ShortText | UnsetType | None = UNSET


class PasswordReset(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /people/{id}/password``: an admin gives a new password; sessions end."""

    password: Password


class InstitutionRename(msgspec.Struct, forbid_unknown_fields=True):
    """``PATCH /institutions/{code}``: a new name (code, level and parent stay)."""

    name: Text


class PersonAnswer(msgspec.Struct):
    """A person of the directory."""

    id: str
    username: str
    display_name: str
    roles: list[Role]
    institution: str | None
    admin_scope: AdminScope | None
    department: str | None
    specialty: str | None
    title: str | None

    @classmethod
    def of(cls, person: Person) -> PersonAnswer:
        """The answer for ``person``."""
        return cls(
            id=person.id,
            username=person.username,
            display_name=person.display_name,
            roles=sorted(person.roles, key=lambda r: r.value),
            institution=person.institution,
            admin_scope=person.admin_scope,
            department=person.department,
            specialty=person.specialty,
            title=person.title,
        )


class MeAnswer(PersonAnswer):
    """Who is logged in.

    ``institution`` is the code of the person's institution (``null`` for the first
    deployment admin); ``must_enrol_totp``: a role of theirs requires a second factor
    and none is enrolled, so only ``/me``, ``/me/totp`` and logout are open to them.
    """

    must_enrol_totp: bool = False

    @classmethod
    def of_caller(cls, person: Person, *, must_enrol_totp: bool = False) -> MeAnswer:
        """The answer for the calling ``person``."""
        fields = msgspec.structs.asdict(PersonAnswer.of(person))
        return cls(**fields, must_enrol_totp=must_enrol_totp)


class LoginAnswer(msgspec.Struct):
    """A login: ``token`` works as ``Authorization: Bearer``; the same session is in
    the HttpOnly cookie, and ``csrf_token`` (also in the readable ``tc_csrf`` cookie)
    must come back in ``X-CSRF-Token`` on every state-changing request that uses the
    cookie."""

    token: str
    csrf_token: str
    expires_at: datetime
    me: MeAnswer


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /auth/password``: every session of the person ends; a new one is answered."""

    old_password: Password
    new_password: Password


class TotpEnrol(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /me/totp``: replacing an enrolled second factor needs its current code."""

    totp: TotpCode | None = None


class TotpAnswer(msgspec.Struct):
    """The new TOTP secret (RFC 6238, SHA-1, 30 s, 6 digits), shown once, and its
    ``otpauth://`` URI for an authenticator app's QR code."""

    secret: str
    uri: str


class TotpRoles(msgspec.Struct, forbid_unknown_fields=True):
    """The roles whose holders must log in with a second factor."""

    roles: list[Role]


class TokenCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /me/tokens``: a label, and a lifetime in seconds (none: until revoked)."""

    name: ShortText
    lifetime_s: Annotated[float, Meta(gt=0, le=10 * 365 * 86400)] | None = None


class TokenAnswer(msgspec.Struct):
    """An API token as listed (never its secret)."""

    id: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: ApiToken) -> TokenAnswer:
        """The answer for ``token``."""
        return cls(
            id=token.id,
            name=token.name,
            created_at=utc(token.created_at_s),
            expires_at=_utc_or_none(token.expires_at_s),
            revoked_at=_utc_or_none(token.revoked_at_s),
        )


class TokenCreated(msgspec.Struct):
    """A new API token: ``token`` is shown this once (send it as ``Authorization:
    Bearer``)."""

    token: str
    info: TokenAnswer


class InstitutionCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /institutions``: ``parent`` ``null`` makes a root (deployment admins)."""

    code: Code
    name: Text
    level: Level
    parent: Code | None = None


class InstitutionAnswer(msgspec.Struct):
    """An institution."""

    code: str
    name: str
    level: Level
    parent: str | None

    @classmethod
    def of(cls, institution: Institution) -> InstitutionAnswer:
        """The answer for ``institution``."""
        return cls(institution.code, institution.name, institution.level, institution.parent)


class InstitutionPage(msgspec.Struct):
    """A page of institutions; ``total`` counts the whole listing."""

    items: list[InstitutionAnswer]
    total: int
    limit: int
    offset: int


class DepartmentCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /institutions/{code}/departments``."""

    code: Code
    name: Text


class DepartmentAnswer(msgspec.Struct):
    """A department of an institution."""

    institution: str
    code: str
    name: str

    @classmethod
    def of(cls, department: Department) -> DepartmentAnswer:
        """The answer for ``department``."""
        return cls(department.institution, department.code, department.name)


class PersonCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /people``: an admin without ``admin_scope`` administers ``institution``."""

    username: Username
    display_name: ShortText
    password: Password
    roles: Annotated[list[Role], Meta(min_length=1, max_length=6)]
    institution: Code | None = None
    department: Code | None = None
    specialty: ShortText | None = None
    title: ShortText | None = None
    admin_scope: AdminScope | None = None


class PersonPage(msgspec.Struct):
    """A page of people; ``total`` counts the whole listing."""

    items: list[PersonAnswer]
    total: int
    limit: int
    offset: int


class DeviceCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /devices``: register a cart to an institution."""

    id: Code
    name: Text
    institution: Code


class DeviceAnswer(msgspec.Struct):
    """A registered cart."""

    id: str
    name: str
    institution: str
    revoked: bool

    @classmethod
    def of(cls, device: Device) -> DeviceAnswer:
        """The answer for ``device``."""
        return cls(device.id, device.name, device.institution, device.revoked)


class DeviceRegistered(msgspec.Struct):
    """A new cart: ``credential`` is shown this once; the cart presents it on
    ``/device`` as ``Authorization: Bearer``."""

    id: str
    name: str
    institution: str
    revoked: bool
    credential: str


class DevicePage(msgspec.Struct):
    """A page of carts."""

    items: list[DeviceAnswer]
    total: int
    limit: int
    offset: int


class RelationSet(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /relations``: ``added`` makes ``provider`` serve ``client``; ``removed``
    takes away a relation the tree gives."""

    provider: Code
    client: Code
    kind: ServiceKind
    override: RelationOverride = RelationOverride.ADDED


class RelationAnswer(msgspec.Struct):
    """An override of who serves whom."""

    provider: str
    client: str
    kind: ServiceKind
    override: RelationOverride

    @classmethod
    def of(cls, relation: ServiceRelation) -> RelationAnswer:
        """The answer for ``relation``."""
        return cls(relation.provider, relation.client, relation.kind, relation.override)


# The errors of every handler behind a session (401) and its CSRF check (403).
AUTH_ERRORS: Final = (
    (401, "session_invalid", "not logged in or the session has expired"),
    (403, "csrf_failed", "missing or wrong CSRF token: send the X-CSRF-Token header"),
)
# Answers that carry patient data are not kept by browsers or proxies.
NO_STORE: Final = {"cache-control": "no-store"}
# An id in a path: bounded before any lookup.
PathId = Annotated[str, Parameter(max_length=64)]


def example(struct: msgspec.Struct) -> Any:
    """A Struct as the JSON value of an OpenAPI example."""
    return msgspec.to_builtins(struct)


def documented(
    status: int,
    answer: type[msgspec.Struct] | None,
    sample: msgspec.Struct | Sequence[msgspec.Struct] | None,
    *errors: tuple[int, str, str],
) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses`` of a handler: its answer with an example, and its errors
    (each with the error schema and an example, :func:`api.errors.error_responses`).

    A list answer: ``answer`` is the item type and ``sample`` a list of items.
    """
    specs = error_responses(*errors)
    if answer is not None:
        many = isinstance(sample, Sequence)
        value = (
            [example(item) for item in sample]
            if isinstance(sample, Sequence)
            else (example(sample) if sample is not None else None)
        )
        specs[status] = ResponseSpec(
            data_container=list[answer] if many else answer,  # type: ignore[valid-type]
            description=" ".join((answer.__doc__ or "").split()),
            examples=[Example(summary="example", value=value)] if value is not None else None,
        )
    return specs


def body(sample: msgspec.Struct) -> Any:
    """A request body parameter's documentation with ``sample`` as its example."""
    return Body(examples=[Example(summary="example", value=example(sample))])
