"""Two-way referral (双向转诊): up to a hospital department and back down to the clinic.

One transition table, as for consults::

    REQUESTED ─accept─► ACCEPTED ─arrive─► ARRIVED ─refer_back─► REFERRED_BACK
        │  ╲                │                 (回转: a discharge summary to the clinic)
        │   decline         cancel
        │    ▼              ▼
        │  DECLINED       CANCELLED
        cancel ──► CANCELLED

- A referral is made from a signed opinion or directly, to an institution and department,
  with a reason and an appointment slot from the receiving department's published
  slots. The slot is *held* by the request: two requests racing for one slot are decided
  by the store (a unique constraint on the slot of every live referral), so exactly one
  wins; the loser gets :class:`SlotTaken`.
- The receiving side (a doctor or coordinator of the receiving institution) accepts or
  declines (with a reason; the slot is freed); arrival is recorded there; the back
  referral goes to the original clinic with a discharge summary.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import ClassVar, Final

from consults.errors import Conflict, InvalidInput
from consults.transitions import look_up


class ReferralState(enum.Enum):
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    ARRIVED = "arrived"
    REFERRED_BACK = "referred_back"
    CANCELLED = "cancelled"


class ReferralEvent(enum.Enum):
    ACCEPT = "accept"
    DECLINE = "decline"
    ARRIVE = "arrive"
    REFER_BACK = "refer_back"
    CANCEL = "cancel"


class ReferralParty(enum.Enum):
    SENDER = "sender"  # a doctor (or the expert) of the referring side
    RECEIVER = "receiver"  # a doctor or coordinator of the receiving institution


@dataclass(frozen=True)
class ReferralRule:
    to: ReferralState
    parties: frozenset[ReferralParty]
    needs: str | None = None  # "reason" or "summary"


_F, _V, _Y = ReferralState, ReferralEvent, ReferralParty
_SEND: Final = frozenset({_Y.SENDER})
_RECV: Final = frozenset({_Y.RECEIVER})

REFERRAL_TRANSITIONS: Final[Mapping[ReferralState, Mapping[ReferralEvent, ReferralRule]]] = {
    _F.REQUESTED: {
        _V.ACCEPT: ReferralRule(_F.ACCEPTED, _RECV),
        _V.DECLINE: ReferralRule(_F.DECLINED, _RECV, "reason"),
        _V.CANCEL: ReferralRule(_F.CANCELLED, _SEND, "reason"),
    },
    _F.ACCEPTED: {
        _V.ARRIVE: ReferralRule(_F.ARRIVED, _RECV),
        _V.CANCEL: ReferralRule(_F.CANCELLED, _SEND | _RECV, "reason"),
    },
    _F.ARRIVED: {_V.REFER_BACK: ReferralRule(_F.REFERRED_BACK, _RECV, "summary")},
    _F.DECLINED: {},
    _F.REFERRED_BACK: {},
    _F.CANCELLED: {},
}

# A referral in these states holds its slot.
HOLDS_SLOT: Final = frozenset({_F.REQUESTED, _F.ACCEPTED, _F.ARRIVED})


class SlotTaken(Conflict):
    """The appointment slot is held by another referral."""

    code: ClassVar[str] = "slot_taken"

    def __init__(self, slot: str) -> None:
        super().__init__("slot", slot)


@dataclass(frozen=True, kw_only=True)
class Slot:
    """An appointment slot a receiving department publishes."""

    id: str
    institution: str
    department: str
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end <= self.start:
            raise InvalidInput("slot", "needs a time zone and an end after its start")


@dataclass(frozen=True, kw_only=True)
class Referral:
    id: str
    state: ReferralState
    from_institution: str
    to_institution: str
    to_department: str
    slot: str | None
    reason: str
    created_at: datetime
    consult: str | None = None  # the opinion it follows, if any
    decline_reason: str | None = None
    arrived_at: datetime | None = None
    discharge_summary: str | None = None


def referral_parties(
    referral: Referral, institution: str, roles: frozenset[str]
) -> frozenset[ReferralParty]:
    found: set[ReferralParty] = set()
    clinical = bool(roles & {"doctor", "expert"})
    if clinical and institution == referral.from_institution:
        found.add(ReferralParty.SENDER)
    if (clinical or "coordinator" in roles) and institution == referral.to_institution:
        found.add(ReferralParty.RECEIVER)
    return frozenset(found)


def new_referral(
    *,
    id: str,
    from_institution: str,
    slot: Slot,
    reason: str,
    now: datetime,
    consult: str | None = None,
) -> Referral:
    """A referral request for a published slot, which must still be in the future."""
    if not reason.strip():
        raise InvalidInput("reason", "is required")
    if slot.start <= now:
        raise InvalidInput("slot", "has already begun")
    if slot.institution == from_institution:
        raise InvalidInput("slot", "is at the referring institution itself")
    return Referral(
        id=id,
        state=ReferralState.REQUESTED,
        from_institution=from_institution,
        to_institution=slot.institution,
        to_department=slot.department,
        slot=slot.id,
        reason=reason.strip(),
        created_at=now,
        consult=consult,
    )


def apply_referral(
    referral: Referral,
    event: ReferralEvent,
    institution: str,
    roles: frozenset[str],
    now: datetime,
    *,
    text: str | None = None,
) -> Referral:
    """Take one step; ``text`` is the reason (decline, cancel) or the discharge summary."""
    mine = referral_parties(referral, institution, roles)
    rule = look_up(REFERRAL_TRANSITIONS, "referral", referral.state, event, mine)
    changes: dict[str, object] = {"state": rule.to}
    if rule.needs is not None:
        if text is None or not text.strip():
            raise InvalidInput(rule.needs, f"{event.value} needs it")
        key = {"reason": "decline_reason", "summary": "discharge_summary"}[rule.needs]
        changes[key] = text.strip()
    if event is ReferralEvent.ARRIVE:
        changes["arrived_at"] = now
    return replace(referral, **changes)  # type: ignore[arg-type]
