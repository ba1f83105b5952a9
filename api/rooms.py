"""``POST /api/v1/rooms/{room}/token``: a room token for the logged-in person.

Joining a consult from the web app needs no command line: the page asks this endpoint
for a token (over the session cookie, with the CSRF header) and opens ``/ws`` with it.
The token is a room JWT (:func:`sessions.tokens.mint_token`, signed by the server's key
ring) whose identity is the person's username and which carries their institution
(``inst``) and directory roles (``proles``), so that what the holder may see follows
from the person (:mod:`consults.rights`), not from the room's name.

The part a person takes in the room follows from their directory roles, the highest
first: an ``expert`` joins as expert and moderates (admits from the waiting room,
mutes, removes), a ``coordinator`` as coordinator and moderates, a ``doctor`` as
applicant (waits to be admitted), an ``ecg_reader`` as observer (receives only).
Admins and auditors by those roles alone take no part in a consult (403).

The token names the credential it came from in its ``jti`` (``session:<id>`` for a
login session, ``apitoken:<id>`` for an integration's token) and lasts no longer than
that credential: logging out, revoking the API token, or locking the person closes the
room and viewer connections opened with it (the wiring's revocation listener calls
``Core.revoke``).

A room may have a policy of its own (``RoomTokens.room_part``): the server's says who
takes which part in a consult's room (``consult-<id>``): the consult's experts join as
experts and moderate, the centre's coordinators as coordinators and moderate, the
clinic's doctors as applicants; anyone else is answered 404, as if there were no such
consult.

Every token minted is an audit row (``room.token_minted``: who, which room, which part).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final

import msgspec
from litestar import Controller, Response, post
from litestar.di import NamedDependency
from litestar.params import Parameter

from api.errors import ApiError
from api.schemas import documented, utc
from api.session import consults_error
from consults.accounts import Principal
from consults.directory import Role
from consults.errors import ConsultsError
from consults.repositories import AuditEvent, AuditSink
from sessions.tokens import KeyRing, mint_token

__all__ = ["RoomTokenAnswer", "RoomTokenController", "RoomTokens", "api_token_jti", "session_jti"]

ROOM_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")

# Directory role -> (room role, moderates), the first the person holds wins.
_PARTS: Final = (
    (Role.EXPERT, "expert", True),
    (Role.COORDINATOR, "coordinator", True),
    (Role.DOCTOR, "applicant", False),
    (Role.ECG_READER, "observer", False),
)


class NoClinicalRole(ApiError):
    status = 403

    def __init__(self) -> None:
        super().__init__("no_clinical_role", "only doctors, experts, coordinators and readers join")


class BadRoom(ApiError):
    status = 400

    def __init__(self) -> None:
        super().__init__(
            "bad_room", "a room id is 1-128 letters, digits and _ . : - starting alphanumeric"
        )


class RoomTokenAnswer(msgspec.Struct):
    """A room token for the caller, and the page that joins with it."""

    token: Annotated[str, msgspec.Meta(examples=["eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0..."])]
    room: Annotated[str, msgspec.Meta(examples=["consult-42"])]
    role: Annotated[str, msgspec.Meta(examples=["expert"])]
    moderator: bool
    expires_at: datetime
    join_path: Annotated[str, msgspec.Meta(examples=["/join"])]


def session_jti(session_id: str) -> str:
    """The ``jti`` of room tokens minted over the login session ``session_id``."""
    return f"session:{session_id}"


def api_token_jti(token_id: str) -> str:
    """The ``jti`` of room tokens minted with the API token ``token_id``."""
    return f"apitoken:{token_id}"


# ``room_part(principal, room)``: the (part, moderates) a room's own policy gives the
# caller, None where the room has no policy of its own; raises NotFound to refuse.
RoomPart = Callable[[Principal, str], tuple[str, bool] | None]


@dataclass(frozen=True, kw_only=True)
class RoomTokens:
    """Mints room tokens for people (the server's key ring, a lifetime, an audit sink,
    and the rooms' own policies)."""

    ring: KeyRing | str
    audit: AuditSink
    ttl_s: float = 2 * 3600.0
    clock: Callable[[], float] = time.time
    room_part: RoomPart | None = None

    def mint(self, principal: Principal, room: str) -> RoomTokenAnswer:
        if not ROOM_ID.fullmatch(room):
            raise BadRoom()
        person = principal.person
        held = [(part, moderates) for role, part, moderates in _PARTS if role in person.roles]
        if not held:
            raise NoClinicalRole()
        part, moderates = held[0]
        decided = None if self.room_part is None else self.room_part(principal, room)
        if decided is not None:
            part, moderates = decided
        now_s = self.clock()
        ttl_s, jti = self.ttl_s, None
        if principal.session is not None:
            jti = session_jti(principal.session.id)
            ttl_s = min(ttl_s, principal.session.expires_at_s - now_s)
        elif principal.api_token is not None:
            jti = api_token_jti(principal.api_token.id)
            if principal.api_token.expires_at_s is not None:
                ttl_s = min(ttl_s, principal.api_token.expires_at_s - now_s)
        permissions = {"publish", "subscribe"} if part != "observer" else {"subscribe"}
        if moderates:
            permissions.add("moderate")
        token = mint_token(
            self.ring,
            identity=person.username,
            name=person.display_name,
            role=part,
            room=room,
            permissions=frozenset(permissions),
            ttl_s=ttl_s,
            now_s=now_s,
            jti=jti,
            institution=person.institution,
            person_roles=frozenset(r.value for r in person.roles),
        )
        self.audit.append(
            AuditEvent(
                now_s,
                "room.token_minted",
                actor=person.id,
                target=f"room:{room}",
                institution=person.institution,
                details={"part": part, "moderator": str(moderates).lower()},
            )
        )
        return RoomTokenAnswer(
            token=token,
            room=room,
            role=part,
            moderator=moderates,
            expires_at=utc(now_s + ttl_s),
            join_path="/join",
        )


_EXAMPLE = RoomTokenAnswer(
    token="eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJsaS5leHBlcnQifQ.c2lnbmF0dXJl",
    room="consult-42",
    role="expert",
    moderator=True,
    expires_at=utc(1_800_000_000),
    join_path="/join",
)


class RoomTokenController(Controller):
    """Room tokens for the logged-in person."""

    path = "/rooms"
    tags = ["rooms"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @post(
        "/{room:str}/token",
        status_code=200,
        sync_to_thread=True,
        summary="A room token for the caller",
        responses=documented(
            200,
            RoomTokenAnswer,
            _EXAMPLE,
            (400, "bad_room", "a room id is 1-128 letters, digits and _ . : -"),
            (401, "session_invalid", "not logged in or the session has expired"),
            (403, "csrf_failed", "missing or wrong CSRF token: send the X-CSRF-Token header"),
            (403, "no_clinical_role", "only doctors, experts, coordinators and readers join"),
        ),
    )
    def token(
        self,
        principal: NamedDependency[Principal],
        room_tokens: NamedDependency[RoomTokens],
        room: Annotated[str, Parameter(description="the room (consult) id", max_length=128)],
    ) -> Response[RoomTokenAnswer]:
        """Mint a room token for the caller: identity, name, institution and the part their
        directory roles give them (expert and coordinator moderate; a doctor waits to be
        admitted; an ECG reader observes)."""
        return Response(room_tokens.mint(principal, room), headers={"cache-control": "no-store"})
