"""``/api/v1`` directory: institutions and departments, people, devices (ECG carts),
service relations and the roles that require a second factor.

Design notes
------------
- Thin handlers: each turns its Struct into a call of
  :class:`consults.accounts.DirectoryAdmin`, which applies the rights and audits, and
  the record back into a Struct. Synchronous, run in a worker thread.
- A record outside what the caller may see answers 404 ``not_found``, as if it did not
  exist; a record they see but may not change answers 403 ``forbidden``.
- Listings take ``limit`` (1 to 500, default 50), ``offset`` and ``search`` (literal
  text matched in codes and names, at most 100 characters).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import msgspec
from litestar import Controller, Response, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, Parameter
from litestar.types import ControllerRouterHandler
from msgspec import UNSET

from api.schemas import (
    DepartmentAnswer,
    DepartmentCreate,
    DeviceAnswer,
    DeviceCreate,
    DevicePage,
    DeviceRegistered,
    InstitutionAnswer,
    InstitutionCreate,
    InstitutionPage,
    InstitutionRename,
    PasswordReset,
    PersonAnswer,
    PersonCreate,
    PersonPage,
    PersonUpdate,
    RelationAnswer,
    RelationSet,
    TotpRoles,
    body,
    documented,
)
from api.session import consults_error
from consults.accounts import DirectoryAdmin, NewPerson, Principal
from consults.directory import (
    AdminScope,
    Level,
    RelationOverride,
    Role,
    ServiceKind,
    ServiceRelation,
)
from consults.errors import ConsultsError
from consults.repositories import PageRequest

__all__ = [
    "DeviceController",
    "InstitutionController",
    "PeopleController",
    "RelationController",
    "SettingsController",
    "directory_handlers",
]

Limit = Annotated[int, Parameter(ge=1, le=500, description="items per page")]
# Bounded: an offset past the store's 64-bit integers was a 500 (OverflowError), and no
# listing comes near 2**31 items.
Offset = Annotated[int, Parameter(ge=0, le=2**31 - 1, description="items skipped")]
Search = Annotated[
    str | None, Parameter(max_length=100, description="literal text in codes and names")
]
PathCode = Annotated[str, Parameter(max_length=64)]

_AUTH = (
    (401, "session_invalid", "not logged in or the session has expired"),
    (403, "csrf_failed", "missing or wrong CSRF token: send the X-CSRF-Token header"),
)
_ADMIN = (*_AUTH, (403, "forbidden", "this needs an admin"))
_INVALID = (400, "invalid_input", "code: 1 to 64 ASCII letters, digits, '.', '_' or '-'")
_NO_INSTITUTION = (404, "not_found", "no institution 'county-9'")

_COUNTY = InstitutionAnswer("county-1", "某县人民医院", Level.COUNTY, "city-1")
_TOWN = InstitutionAnswer("town-1", "某镇卫生院", Level.TOWNSHIP, "county-1")
_EXPERT = PersonAnswer(
    id="7d4a4f0e9a1b2c3d4e5f6a7b3f2b9c1e",
    username="wang.expert",
    display_name="王主任",
    roles=[Role.EXPERT],
    institution="county-1",
    admin_scope=None,
    department="cardio",
    specialty="心内科",
    title="主任医师",
)
_CART = DeviceAnswer("cart-017", "心电图机 17", "town-1", False)
_RELATION = RelationAnswer("city-ecg", "town-9", ServiceKind.ECG, RelationOverride.ADDED)


class InstitutionController(Controller):
    """Institutions in a tree, and their departments."""

    path = "/institutions"
    tags = ["directory"]  # noqa: RUF012 - Litestar's own class attribute
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @post(
        "/",
        status_code=201,
        sync_to_thread=True,
        summary="Create an institution",
        responses=documented(
            201,
            InstitutionAnswer,
            _TOWN,
            *_ADMIN,
            _INVALID,
            (400, "invalid_input", "level: a county cannot be below a township"),
            _NO_INSTITUTION,
            (409, "conflict", "institution 'town-1' exists already"),
        ),
    )
    def create(
        self,
        data: Annotated[
            InstitutionCreate,
            body(InstitutionCreate("town-1", "某镇卫生院", Level.TOWNSHIP, "county-1")),
        ],
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> InstitutionAnswer:
        """Create an institution below ``parent`` (one the admin reaches; a root needs a
        deployment admin). Its level must be below the parent's."""
        made = directory.create_institution(
            principal.person, code=data.code, name=data.name, level=data.level, parent=data.parent
        )
        return InstitutionAnswer.of(made)

    @get(
        "/",
        sync_to_thread=True,
        summary="List institutions",
        responses=documented(
            200, InstitutionPage, InstitutionPage([_COUNTY, _TOWN], 2, 50, 0), *_AUTH
        ),
    )
    def listing(
        self,
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
        limit: Limit = 50,
        offset: Offset = 0,
        search: Search = None,
        parent: Annotated[str | None, Parameter(max_length=64)] = None,
        level: FromQuery[Level | None] = None,
    ) -> InstitutionPage:
        """The institutions the caller sees, by code."""
        page = directory.list_institutions(
            principal.person,
            PageRequest(limit=limit, offset=offset),
            parent=parent,
            level=level,
            search=search,
        )
        return InstitutionPage(
            [InstitutionAnswer.of(i) for i in page.items], page.total, limit, offset
        )

    @get(
        "/{code:str}",
        sync_to_thread=True,
        summary="One institution",
        responses=documented(200, InstitutionAnswer, _TOWN, *_AUTH, _NO_INSTITUTION),
    )
    def get_one(
        self,
        code: PathCode,
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> InstitutionAnswer:
        """The institution, if the caller sees it (else 404)."""
        return InstitutionAnswer.of(directory.get_institution(principal.person, code))

    @patch(
        "/{code:str}",
        sync_to_thread=True,
        summary="Rename an institution",
        responses=documented(200, InstitutionAnswer, _TOWN, *_ADMIN, _INVALID, _NO_INSTITUTION),
    )
    def rename(
        self,
        code: PathCode,
        data: Annotated[InstitutionRename, body(InstitutionRename("某镇中心卫生院"))],
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> InstitutionAnswer:
        """Change the name of an institution the admin reaches."""
        return InstitutionAnswer.of(directory.rename_institution(principal.person, code, data.name))

    @post(
        "/{code:str}/departments",
        status_code=201,
        sync_to_thread=True,
        summary="Add a department",
        responses=documented(
            201,
            DepartmentAnswer,
            DepartmentAnswer("county-1", "cardio", "心内科"),
            *_ADMIN,
            _INVALID,
            _NO_INSTITUTION,
            (409, "conflict", "department 'cardio' exists already"),
        ),
    )
    def add_department(
        self,
        code: PathCode,
        data: Annotated[DepartmentCreate, body(DepartmentCreate("cardio", "心内科"))],
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> DepartmentAnswer:
        """Add a department to an institution the admin reaches."""
        made = directory.add_department(
            principal.person, institution=code, code=data.code, name=data.name
        )
        return DepartmentAnswer.of(made)

    @get(
        "/{code:str}/departments",
        sync_to_thread=True,
        summary="The departments of an institution",
        responses=documented(
            200,
            DepartmentAnswer,
            [DepartmentAnswer("county-1", "cardio", "心内科")],
            *_AUTH,
            _NO_INSTITUTION,
        ),
    )
    def departments(
        self,
        code: PathCode,
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> list[DepartmentAnswer]:
        """The departments, by code."""
        return [DepartmentAnswer.of(d) for d in directory.list_departments(principal.person, code)]


class PeopleController(Controller):
    """People: doctors, experts, coordinators, ECG readers, admins, auditors."""

    path = "/people"
    tags = ["directory"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @post(
        "/",
        status_code=201,
        sync_to_thread=True,
        summary="Create a person",
        responses=documented(
            201,
            PersonAnswer,
            _EXPERT,
            *_ADMIN,
            (400, "invalid_input", "display_name: '<' is not a Latin or Chinese letter"),
            (400, "password_rejected", "password: at least 8 characters"),
            _NO_INSTITUTION,
            (409, "conflict", "person 'wang.expert' exists already"),
        ),
    )
    def create(
        self,
        data: Annotated[
            PersonCreate,
            body(
                PersonCreate(
                    username="wang.expert",
                    display_name="王主任",
                    password="a long passphrase",
                    roles=[Role.EXPERT],
                    institution="county-1",
                    department="cardio",
                    specialty="心内科",
                    title="主任医师",
                )
            ),
        ],
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> PersonAnswer:
        """Create a person in an institution the admin reaches, with a first password.
        An admin without ``admin_scope`` administers their institution; only a
        deployment admin makes another."""
        roles = frozenset(data.roles)
        scope = data.admin_scope
        if Role.ADMIN in roles and scope is None:
            scope = AdminScope.INSTITUTION
        if Role.ADMIN not in roles:
            scope = None
        made = directory.create_person(
            principal.person,
            NewPerson(
                username=data.username,
                display_name=data.display_name,
                password=data.password,
                roles=roles,
                institution=data.institution,
                admin_scope=scope,
                department=data.department,
                specialty=data.specialty,
                title=data.title,
            ),
        )
        return PersonAnswer.of(made)

    @get(
        "/",
        sync_to_thread=True,
        summary="List people",
        responses=documented(
            200, PersonPage, PersonPage([_EXPERT], 1, 50, 0), *_AUTH, _NO_INSTITUTION
        ),
    )
    def listing(
        self,
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
        limit: Limit = 50,
        offset: Offset = 0,
        search: Search = None,
        institution: Annotated[str | None, Parameter(max_length=64)] = None,
        role: FromQuery[Role | None] = None,
    ) -> PersonPage:
        """The people of the institutions the caller sees, by username."""
        page = directory.list_people(
            principal.person,
            PageRequest(limit=limit, offset=offset),
            institution=institution,
            role=role,
            search=search,
        )
        return PersonPage([PersonAnswer.of(p) for p in page.items], page.total, limit, offset)

    @get(
        "/{person_id:str}",
        sync_to_thread=True,
        summary="One person",
        responses=documented(
            200, PersonAnswer, _EXPERT, *_AUTH, (404, "not_found", "no person 'x'")
        ),
    )
    def get_one(
        self,
        person_id: PathCode,
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> PersonAnswer:
        """The person, if the caller sees them (else 404)."""
        return PersonAnswer.of(directory.get_person(principal.person, person_id))

    @patch(
        "/{person_id:str}",
        sync_to_thread=True,
        summary="Change a person",
        responses=documented(
            200,
            PersonAnswer,
            _EXPERT,
            *_ADMIN,
            (400, "invalid_input", "username: a username does not change"),
            (404, "not_found", "no person 'x'"),
        ),
    )
    def update(
        self,
        person_id: PathCode,
        data: Annotated[PersonUpdate, body(PersonUpdate(title="主任医师"))],
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> PersonAnswer:
        """Change the given fields of a person the admin reaches (roles, institution,
        department, specialty, title, display name)."""
        before = directory.get_person(principal.person, person_id)
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not UNSET}
        if "roles" in changes:
            changes["roles"] = frozenset(changes["roles"])
        roles = changes.get("roles", before.roles)
        if Role.ADMIN not in roles:
            changes["admin_scope"] = None
        elif changes.get("admin_scope", before.admin_scope) is None:
            changes["admin_scope"] = AdminScope.INSTITUTION
        updated = dataclasses.replace(before, **changes)
        return PersonAnswer.of(directory.update_person(principal.person, updated))

    @post(
        "/{person_id:str}/password",
        status_code=204,
        sync_to_thread=True,
        summary="Give a person a new password",
        responses=documented(
            204,
            None,
            None,
            *_ADMIN,
            (400, "password_rejected", "password: at least 8 characters"),
            (404, "not_found", "no person 'x'"),
        ),
    )
    def reset_password(
        self,
        person_id: PathCode,
        data: Annotated[PasswordReset, body(PasswordReset("a new long passphrase"))],
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> None:
        """Set a new password for a person the admin reaches; their sessions end."""
        directory.reset_password(principal.person, person_id, data.password)

    @post(
        "/{person_id:str}/unlock",
        status_code=204,
        sync_to_thread=True,
        summary="Unlock an account",
        responses=documented(204, None, None, *_ADMIN, (404, "not_found", "no person 'x'")),
    )
    def unlock(
        self,
        person_id: PathCode,
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> None:
        """Unlock an account locked after repeated failed logins."""
        directory.unlock(principal.person, person_id)


class DeviceController(Controller):
    """ECG carts registered to institutions."""

    path = "/devices"
    tags = ["devices"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @post(
        "/",
        status_code=201,
        sync_to_thread=True,
        summary="Register a cart",
        responses=documented(
            201,
            DeviceRegistered,
            DeviceRegistered(
                "cart-017",
                "心电图机 17",
                "town-1",
                False,
                "tcd_b2F1dGhfY3JlZGVudGlhbF9zaG93bl9vbmNlX29ubHk",
            ),
            *_ADMIN,
            _INVALID,
            _NO_INSTITUTION,
            (409, "conflict", "device 'cart-017' exists already"),
        ),
    )
    def register(
        self,
        data: Annotated[DeviceCreate, body(DeviceCreate("cart-017", "心电图机 17", "town-1"))],
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> Response[DeviceRegistered]:
        """Register a cart to an institution the admin reaches. Its ``credential`` is
        shown this once: the cart presents it on ``/device`` as ``Authorization:
        Bearer``."""
        device, credential = directory.register_device(
            principal.person, device_id=data.id, name=data.name, institution=data.institution
        )
        return Response(
            DeviceRegistered(
                device.id, device.name, device.institution, device.revoked, credential
            ),
            status_code=201,
            headers={"cache-control": "no-store"},
        )

    @get(
        "/",
        sync_to_thread=True,
        summary="List carts",
        responses=documented(200, DevicePage, DevicePage([_CART], 1, 50, 0), *_ADMIN),
    )
    def listing(
        self,
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
        limit: Limit = 50,
        offset: Offset = 0,
        search: Search = None,
    ) -> DevicePage:
        """The carts of the institutions the admin reaches, by id."""
        page = directory.list_devices(
            principal.person, PageRequest(limit=limit, offset=offset), search=search
        )
        return DevicePage([DeviceAnswer.of(d) for d in page.items], page.total, limit, offset)

    @get(
        "/{device_id:str}",
        sync_to_thread=True,
        summary="One cart",
        responses=documented(200, DeviceAnswer, _CART, *_AUTH, (404, "not_found", "no device 'x'")),
    )
    def get_one(
        self,
        device_id: PathCode,
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> DeviceAnswer:
        """The cart, if the caller administers its institution (else 404)."""
        return DeviceAnswer.of(directory.get_device(principal.person, device_id))

    @post(
        "/{device_id:str}/revoke",
        status_code=200,
        sync_to_thread=True,
        summary="Revoke a cart",
        responses=documented(
            200,
            DeviceAnswer,
            DeviceAnswer("cart-017", "心电图机 17", "town-1", True),
            *_ADMIN,
            (404, "not_found", "no device 'x'"),
        ),
    )
    def revoke(
        self,
        device_id: PathCode,
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> DeviceAnswer:
        """Revoke the cart's credential at once (its open stream is closed by the edge)."""
        return DeviceAnswer.of(directory.revoke_device(principal.person, device_id))


class RelationController(Controller):
    """Who serves whom: overrides of the tree's default."""

    path = "/relations"
    tags = ["directory"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @post(
        "/",
        status_code=200,
        sync_to_thread=True,
        summary="Add or remove a service relation",
        responses=documented(200, RelationAnswer, _RELATION, *_ADMIN, _NO_INSTITUTION),
    )
    def set_relation(
        self,
        data: Annotated[RelationSet, body(RelationSet("city-ecg", "town-9", ServiceKind.ECG))],
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> RelationAnswer:
        """``added``: the provider serves the client although the tree does not say so
        (a city ECG centre for another county's clinic); ``removed``: it does not,
        although the tree says so. Set by an admin who reaches the client."""
        relation = ServiceRelation(data.provider, data.client, data.kind, data.override)
        directory.set_relation(principal.person, relation)
        return RelationAnswer.of(relation)

    @get(
        "/",
        sync_to_thread=True,
        summary="List service relations",
        responses=documented(200, RelationAnswer, [_RELATION], *_AUTH),
    )
    def listing(
        self, principal: NamedDependency[Principal], directory: NamedDependency[DirectoryAdmin]
    ) -> list[RelationAnswer]:
        """The overrides touching institutions the caller sees."""
        return [RelationAnswer.of(r) for r in directory.list_relations(principal.person)]

    @delete(
        "/{provider:str}/{client:str}/{kind:str}",
        status_code=204,
        sync_to_thread=True,
        summary="Clear a service relation",
        responses=documented(204, None, None, *_ADMIN, _NO_INSTITUTION),
    )
    def clear(
        self,
        provider: PathCode,
        client: PathCode,
        kind: FromPath[ServiceKind],
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> None:
        """Back to the tree's default for this pair and kind."""
        directory.clear_relation(principal.person, provider=provider, client=client, kind=kind)


class SettingsController(Controller):
    """Deployment settings of accounts."""

    path = "/settings"
    tags = ["directory"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @put(
        "/totp-roles",
        sync_to_thread=True,
        summary="Which roles require a second factor",
        responses=documented(
            200,
            TotpRoles,
            TotpRoles([Role.EXPERT, Role.ADMIN]),
            *_AUTH,
            (403, "forbidden", "only a deployment admin sets which roles need a second factor"),
        ),
    )
    def set_totp_roles(
        self,
        data: Annotated[TotpRoles, body(TotpRoles([Role.EXPERT, Role.ADMIN]))],
        principal: NamedDependency[Principal],
        directory: NamedDependency[DirectoryAdmin],
    ) -> TotpRoles:
        """Holders of these roles must enrol a second factor before anything else."""
        directory.set_totp_required_roles(principal.person, frozenset(data.roles))
        return TotpRoles(sorted(set(data.roles), key=lambda r: r.value))


def directory_handlers() -> list[ControllerRouterHandler]:
    """The directory's controllers."""
    return [
        InstitutionController,
        PeopleController,
        DeviceController,
        RelationController,
        SettingsController,
    ]
