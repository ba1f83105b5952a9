"""``GET /api/v1/audit``: the auditor's search of the audit trail.

Thin: the rights and the search's own audit row are :class:`consults.audit_trail.
AuditTrail`'s. Newest first; ``before`` (the ``seq`` of the last row of a page) pages
on, and every answer says the ``next_before`` to ask for (null at the end). Times are
RFC 3339 UTC; ``since`` inclusive, ``until`` exclusive.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, Parameter

from api.schemas import documented, utc
from api.session import consults_error
from consults.accounts import Principal
from consults.audit_trail import AuditFilter, AuditItem, AuditTrail
from consults.errors import ConsultsError

__all__ = ["AuditAnswer", "AuditController", "AuditPage", "audit_api"]

Text = Annotated[str | None, Parameter(max_length=200)]


class AuditAnswer(msgspec.Struct):
    """One row of the trail: ``seq`` its place in the chain, ``detail`` its facts."""

    seq: int
    time: dt.datetime
    actor: str
    action: str
    target: str
    institution: str
    patient: str
    consult: str
    room: str
    detail: Any

    @classmethod
    def of(cls, item: AuditItem) -> AuditAnswer:
        detail = None if item.detail is None else json.loads(item.detail)
        return cls(
            item.seq, utc(item.time_s), item.actor, item.action, item.target,
            item.institution, item.patient, item.consult, item.room, detail,
        )  # fmt: skip


class AuditPage(msgspec.Struct):
    """A page of rows, newest first; ``next_before``: the ``before`` of the next page."""

    items: list[AuditAnswer]
    next_before: int | None


_EXAMPLE = AuditPage(
    [
        AuditAnswer(
            41,
            utc(1_800_000_000),
            "p_1a2b",
            "ecg.viewed",
            "stream:0b7d…",
            "town-1",
            "patient-8f3c",
            "",
            "ecg-worklist",
            {"state": "live"},
        )
    ],
    41,
)


class AuditController(Controller):
    """The trail, for auditors."""

    path = "/audit"
    tags = ["audit"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @get(
        "/",
        sync_to_thread=True,
        summary="Search the audit trail (auditors)",
        responses=documented(
            200,
            AuditPage,
            _EXAMPLE,
            (400, "invalid_input", "limit: 1 to 500"),
            (401, "session_invalid", "not logged in or the session has expired"),
            (403, "forbidden", "reading the audit trail needs the auditor role"),
        ),
    )
    def search(
        self,
        principal: NamedDependency[Principal],
        audit_trail: NamedDependency[AuditTrail],
        actor: Text = None,
        action: Text = None,
        patient: Text = None,
        consult: Text = None,
        room: Text = None,
        institution: Annotated[str | None, Parameter(max_length=64)] = None,
        since: FromQuery[dt.datetime | None] = None,
        until: FromQuery[dt.datetime | None] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
        before: Annotated[int | None, Parameter(ge=1)] = None,
    ) -> AuditPage:
        """Rows matching every filter given, within what the auditor reaches (their
        institution and those below it; everything for the root's auditors)."""
        where = AuditFilter(
            actor=actor,
            action=action,
            patient=patient,
            consult=consult,
            room=room,
            institutions=None if institution is None else frozenset({institution}),
            since_s=None if since is None else _epoch(since),
            until_s=None if until is None else _epoch(until),
        )
        items = audit_trail.search(
            principal.person, where, limit=limit, before_seq=before, now_s=time.time()
        )
        rows = [AuditAnswer.of(item) for item in items]
        return AuditPage(rows, rows[-1].seq if len(rows) == limit else None)


def _epoch(moment: dt.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


@dataclass(frozen=True, kw_only=True)
class AuditApi:
    """The controller and its dependency, for :func:`api.app.create_app`."""

    route_handlers: list[type[Controller]]
    dependencies: dict[str, Provide]


def audit_api(trail: AuditTrail) -> AuditApi:
    """The audit controller over ``trail``."""
    return AuditApi(
        route_handlers=[AuditController],
        dependencies={"audit_trail": Provide(lambda: trail, use_cache=True, sync_to_thread=False)},
    )
