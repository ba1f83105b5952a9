"""The consult's lifecycle: one transition table, who may take each step, deadlines.

Rule (after h11): every change of a consult's state goes through :func:`apply`, which
looks the event up in :data:`TRANSITIONS` (:func:`consults.transitions.look_up`); a
missing entry raises ``TransitionNotAllowed`` naming the actor's party, the state and
the event (the API answers it 409). An entry also names the *parties* that may take it — the actor's
relation to this consult, not a bare role — and what the event must carry::

    DRAFT ─submit─► SUBMITTED ─assign─► ASSIGNED ─accept─► ACCEPTED ─schedule─► SCHEDULED
                      ▲  │                 │  ▲              │  (realtime)          │ start
                      │  │           decline  │ assign       │ review (async)       ▼
                      │  │                 ▼  │              ▼                  IN_CONSULT
                      │  │              DECLINED             REPORTING ◄─finish────┘
                      │  │                                   │ sign                │ sign
                      │  expire (not accepted in time)       ▼                     │
                      │  ▼                                REPORTED ◄──────────────┘
                      │ EXPIRED          cancel from any    │ close (the clinic acknowledged)
                      │                  open state         ▼
                      │                  ──► CANCELLED     CLOSED

- ``declined`` goes back to triage: the centre's coordinator assigns again.
- A multidisciplinary consult has several experts; any of them may accept and join,
  the *lead* expert (the first one assigned unless named) schedules, writes and signs.
- Deadlines: a consult not accepted within its priority's acceptance deadline is
  *overdue* (shown first, escalated to the centre's coordinators); one still not
  accepted at its expiry time takes ``expire`` (taken by the server, party ``system``).
  Both durations are configuration (:class:`DeadlinePolicy`).

No I/O here: the service layer loads the consult, calls :func:`apply` with the actor's
parties (:func:`parties`) and the time, and stores the result and its audit row in one
transaction.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import ClassVar, Final

from consults.errors import InvalidInput
from consults.transitions import TransitionNotAllowed, look_up, party_names

logger = logging.getLogger(__name__)


class ConsultState(enum.Enum):
    """Where a consult is in its life."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    ASSIGNED = "assigned"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    SCHEDULED = "scheduled"
    IN_CONSULT = "in_consult"
    REPORTING = "reporting"
    REPORTED = "reported"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class ConsultEvent(enum.Enum):
    """A step of the lifecycle; the value is its name in ``POST /consults/{id}/{event}``."""

    SUBMIT = "submit"
    ASSIGN = "assign"
    ACCEPT = "accept"
    DECLINE = "decline"
    SCHEDULE = "schedule"
    START = "start"
    REVIEW = "review"
    FINISH = "finish"
    SIGN = "sign"
    CLOSE = "close"
    CANCEL = "cancel"
    EXPIRE = "expire"


class Priority(enum.Enum):
    """How soon the consult must be accepted."""

    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class Mode(enum.Enum):
    """Real-time (in a consult room) or asynchronous (the expert reviews the material)."""

    REALTIME = "realtime"
    ASYNC = "async"


class Party(enum.Enum):
    """An actor's relation to one consult (one actor may be several)."""

    REQUESTER = "requester"  # the doctor who made the request
    CLINIC_DOCTOR = "clinic_doctor"  # a doctor of the requesting institution
    COORDINATOR = "coordinator"  # a coordinator of the centre the request went to
    EXPERT = "expert"  # an assigned expert
    LEAD_EXPERT = "lead_expert"  # the assigned expert who signs
    SYSTEM = "system"  # the server itself (deadlines)


class Need(enum.Enum):
    """What an event must carry."""

    REASON = "reason"
    EXPERTS = "experts"
    START = "start"
    SIGNATURE = "signature"


_BOTH: Final = frozenset(Mode)


@dataclass(frozen=True)
class Rule:
    """One entry of the table: the next state, who may, in which modes, what it needs."""

    to: ConsultState
    parties: frozenset[Party]
    modes: frozenset[Mode] = _BOTH
    needs: frozenset[Need] = frozenset()


class MissingField(InvalidInput):
    """The event lacks what it needs (a reason, the experts, a start time)."""

    code: ClassVar[str] = "missing_field"

    def __init__(self, event: ConsultEvent, need: Need) -> None:
        super().__init__(need.value, f"{event.value} needs it")
        self.event = event
        self.need = need


class InvalidField(InvalidInput):
    """A field the event carries is out of range (a start time in the past)."""


_S, _E, _P = ConsultState, ConsultEvent, Party
_CLINIC: Final = frozenset({_P.REQUESTER, _P.CLINIC_DOCTOR})
_CANCEL: Final = Rule(_S.CANCELLED, _CLINIC | {_P.COORDINATOR}, needs=frozenset({Need.REASON}))
_EXPIRE: Final = Rule(_S.EXPIRED, frozenset({_P.SYSTEM}))
_ASSIGN: Final = Rule(_S.ASSIGNED, frozenset({_P.COORDINATOR}), needs=frozenset({Need.EXPERTS}))
_SCHEDULE: Final = Rule(
    _S.SCHEDULED,
    frozenset({_P.LEAD_EXPERT, _P.COORDINATOR}),
    frozenset({Mode.REALTIME}),
    frozenset({Need.START}),
)
_SIGN: Final = Rule(_S.REPORTED, frozenset({_P.LEAD_EXPERT}), needs=frozenset({Need.SIGNATURE}))

TRANSITIONS: Final[Mapping[ConsultState, Mapping[ConsultEvent, Rule]]] = {
    _S.DRAFT: {
        _E.SUBMIT: Rule(_S.SUBMITTED, _CLINIC),
        _E.CANCEL: Rule(_S.CANCELLED, _CLINIC, needs=frozenset({Need.REASON})),
    },
    _S.SUBMITTED: {_E.ASSIGN: _ASSIGN, _E.CANCEL: _CANCEL, _E.EXPIRE: _EXPIRE},
    _S.ASSIGNED: {
        _E.ACCEPT: Rule(_S.ACCEPTED, frozenset({_P.EXPERT, _P.LEAD_EXPERT})),
        _E.DECLINE: Rule(
            _S.DECLINED, frozenset({_P.EXPERT, _P.LEAD_EXPERT}), needs=frozenset({Need.REASON})
        ),
        _E.ASSIGN: _ASSIGN,
        _E.CANCEL: _CANCEL,
        _E.EXPIRE: _EXPIRE,
    },
    _S.DECLINED: {_E.ASSIGN: _ASSIGN, _E.CANCEL: _CANCEL, _E.EXPIRE: _EXPIRE},
    _S.ACCEPTED: {
        _E.SCHEDULE: _SCHEDULE,
        _E.REVIEW: Rule(_S.REPORTING, frozenset({_P.LEAD_EXPERT}), frozenset({Mode.ASYNC})),
        _E.CANCEL: _CANCEL,
    },
    _S.SCHEDULED: {
        _E.SCHEDULE: _SCHEDULE,
        _E.START: Rule(_S.IN_CONSULT, frozenset({_P.LEAD_EXPERT, _P.EXPERT, _P.COORDINATOR})),
        _E.CANCEL: _CANCEL,
    },
    _S.IN_CONSULT: {
        _E.FINISH: Rule(_S.REPORTING, frozenset({_P.LEAD_EXPERT})),
        _E.SIGN: _SIGN,
    },
    _S.REPORTING: {_E.SIGN: _SIGN},
    _S.REPORTED: {_E.CLOSE: Rule(_S.CLOSED, _CLINIC)},
    _S.CLOSED: {},
    _S.CANCELLED: {},
    _S.EXPIRED: {},
}

FINAL: Final = frozenset(s for s, rules in TRANSITIONS.items() if not rules)
# Waiting for an expert to accept: the acceptance deadline runs.
AWAITING_ACCEPTANCE: Final = frozenset({_S.SUBMITTED, _S.ASSIGNED, _S.DECLINED})


@dataclass(frozen=True, kw_only=True)
class DeadlinePolicy:
    """How long each priority may wait for acceptance, and when it expires.

    Attributes
    ----------
    accept_within_s : mapping of Priority to float
        Past this many seconds after submission, a consult not yet accepted is overdue.
    expire_after_s : mapping of Priority to float
        Past this many seconds after submission, a consult not yet accepted expires.
    """

    accept_within_s: Mapping[Priority, float] = field(
        default_factory=lambda: {
            Priority.ROUTINE: 24 * 3600.0,
            Priority.URGENT: 2 * 3600.0,
            Priority.EMERGENCY: 10 * 60.0,
        }
    )
    expire_after_s: Mapping[Priority, float] = field(
        default_factory=lambda: {
            Priority.ROUTINE: 72 * 3600.0,
            Priority.URGENT: 6 * 3600.0,
            Priority.EMERGENCY: 30 * 60.0,
        }
    )

    def __post_init__(self) -> None:
        for priority in Priority:
            accept = self.accept_within_s.get(priority)
            expire = self.expire_after_s.get(priority)
            if accept is None or expire is None:
                raise ValueError(f"no deadline for priority {priority.value}")
            if not 0 < accept <= expire:
                raise ValueError(
                    f"{priority.value}: 0 < accept_within_s <= expire_after_s must hold"
                )


@dataclass(frozen=True, kw_only=True)
class Consult:
    """The lifecycle's view of one consult (the request's content lives beside it).

    Times are timezone-aware UTC datetimes.
    """

    id: str
    state: ConsultState
    priority: Priority
    mode: Mode
    requester: str
    clinic: str  # the requesting institution's code
    centre: str  # the code of the consult centre the request went to
    experts: tuple[str, ...] = ()
    lead_expert: str | None = None
    created_at: datetime
    submitted_at: datetime | None = None
    accepted_at: datetime | None = None
    scheduled_start: datetime | None = None
    signed_at: datetime | None = None
    closed_at: datetime | None = None
    reason: str | None = None  # the last decline's or the cancellation's reason


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who acts: a person (username, roles, institution code) or the server."""

    username: str
    roles: frozenset[str]
    institution: str

    @classmethod
    def system(cls) -> Actor:
        return cls(username="system", roles=frozenset({"system"}), institution="")


def parties(consult: Consult, actor: Actor) -> frozenset[Party]:
    """The actor's relations to the consult."""
    found: set[Party] = set()
    if "system" in actor.roles and actor.username == "system":
        found.add(Party.SYSTEM)
    if actor.username == consult.requester:
        found.add(Party.REQUESTER)
    if "doctor" in actor.roles and actor.institution == consult.clinic:
        found.add(Party.CLINIC_DOCTOR)
    if "coordinator" in actor.roles and actor.institution == consult.centre:
        found.add(Party.COORDINATOR)
    if actor.username in consult.experts:
        found.add(Party.EXPERT)
    if actor.username == consult.lead_expert:
        found.add(Party.LEAD_EXPERT)
    return frozenset(found)


def allowed_events(consult: Consult, actor: Actor) -> list[ConsultEvent]:
    """The events this actor may take now (for the buttons a page shows)."""
    mine = parties(consult, actor)
    return [
        event
        for event, rule in TRANSITIONS[consult.state].items()
        if consult.mode in rule.modes and rule.parties & mine and event is not ConsultEvent.EXPIRE
    ]


def apply(
    consult: Consult,
    event: ConsultEvent,
    actor: Actor,
    now: datetime,
    *,
    reason: str | None = None,
    experts: tuple[str, ...] | None = None,
    start: datetime | None = None,
    signed: bool = False,
) -> Consult:
    """Take one step; return the consult after it.

    Parameters
    ----------
    reason : str or None
        For ``decline`` and ``cancel``.
    experts : tuple of usernames or None
        For ``assign``: the first is the lead expert.
    start : datetime or None
        For ``schedule``: the consult's start, not in the past.
    signed : bool
        For ``sign``: the caller has verified the second factor and made the signature.

    Raises
    ------
    TransitionNotAllowed
        The table has no entry for the event in this state and mode.
    NotPermitted
        The actor's relation to the consult does not allow the event.
    MissingField, InvalidField
        The event lacks what it needs, or carries something out of range.
    """
    mine = parties(consult, actor)
    entry = TRANSITIONS[consult.state].get(event)
    if entry is not None and consult.mode not in entry.modes:
        raise TransitionNotAllowed("consult", party_names(mine), consult.state, event)
    rule = look_up(TRANSITIONS, "consult", consult.state, event, mine)
    changes: dict[str, object] = {"state": rule.to}
    if Need.REASON in rule.needs:
        if reason is None or not reason.strip():
            raise MissingField(event, Need.REASON)
        changes["reason"] = reason.strip()
    if Need.EXPERTS in rule.needs:
        if not experts:
            raise MissingField(event, Need.EXPERTS)
        if len(set(experts)) != len(experts):
            raise InvalidField("experts", "an expert is named twice")
        changes["experts"] = tuple(experts)
        changes["lead_expert"] = experts[0]
    if Need.START in rule.needs:
        if start is None:
            raise MissingField(event, Need.START)
        if start < now:
            raise InvalidField("start", "is in the past")
        changes["scheduled_start"] = start
    if Need.SIGNATURE in rule.needs:
        if not signed:
            raise MissingField(event, Need.SIGNATURE)
        changes["signed_at"] = now
    if event is ConsultEvent.SUBMIT:
        changes["submitted_at"] = now
    elif event is ConsultEvent.ACCEPT:
        changes["accepted_at"] = now
    elif event is ConsultEvent.CLOSE:
        changes["closed_at"] = now
    after = replace(consult, **changes)  # type: ignore[arg-type]
    logger.debug(
        "consult %s: %s --%s--> %s", consult.id, consult.state.value, event.value, rule.to.value
    )
    return after


def acceptance_due(consult: Consult, policy: DeadlinePolicy) -> datetime | None:
    """When the consult must be accepted by, or None when no deadline runs."""
    if consult.state not in AWAITING_ACCEPTANCE or consult.submitted_at is None:
        return None
    return consult.submitted_at + timedelta(seconds=policy.accept_within_s[consult.priority])


def is_overdue(consult: Consult, policy: DeadlinePolicy, now: datetime) -> bool:
    """Past its acceptance deadline and still not accepted."""
    due = acceptance_due(consult, policy)
    return due is not None and now > due


def expires_at(consult: Consult, policy: DeadlinePolicy) -> datetime | None:
    """When the server will expire the consult, or None when it cannot expire."""
    if consult.state not in AWAITING_ACCEPTANCE or consult.submitted_at is None:
        return None
    return consult.submitted_at + timedelta(seconds=policy.expire_after_s[consult.priority])
