"""ECG reading tasks and critical values: their two transition tables and the worklist order.

Every ECG that reaches the ECG centre (a finished device stream, an uploaded record, an
ECG attached to a consult) becomes a *reading task*; a critical finding on it (from the
engine while the ECG is still arriving, or marked by the reader) becomes a *critical
value* that the clinic's doctor must acknowledge, by read-back, in time.

Reading tasks (after h11: the table is the rule; a missing entry raises
:class:`~consults.transitions.TransitionNotAllowed` naming the party, state and event)::

    NEW ─claim─► CLAIMED ─edit─► DRAFT ─sign─► SIGNED ─amend─► AMENDED ─sign─► SIGNED
     ▲             │  ▲           │                              (a new signed version
     └──release────┘  └─release───┘                               pointing to the old)
    NEW, CLAIMED, DRAFT ─return─► RETURNED   (the clinic must re-record: poor quality,
                                               wrong patient; a reason is required)

- Only the claimant edits, signs or releases; another reader is refused with the
  claimant's name (two readers never read the same ECG unknowingly); a coordinator of
  the centre may release a task someone left claimed.
- Critical values::

      RAISED ─notify─► NOTIFIED ─acknowledge─► ACKNOWLEDGED
                          │ escalate (deadline passed)
                          ▼
                       ESCALATED ─acknowledge─► ACKNOWLEDGED
                          │ escalate (the next level)
                          ▼
                       ESCALATED ...

  Each escalation widens who is told: the clinic's other doctors, then the centre's
  coordinators, then the phone gateway (:data:`ESCALATION_LEVELS`). Only someone who was
  notified may acknowledge, with a read-back of the finding as understood.

:func:`worklist_key` orders the worklist: critical findings first, then STAT requests,
then by waiting time (oldest first).

Beat labels: the reader labels the engine's beats (:class:`BeatLabel`: N, S, V, paced,
artefact; a beat nobody labelled is N, the engine not classifying beats yet) by their
index among the beats of the measured window; :func:`relabel` checks and applies one,
:func:`beat_counts` counts them for the page and the signed report.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import ClassVar, Final

from consults.errors import ConsultsError, Forbidden, InvalidInput
from consults.transitions import NotPermitted, look_up


class ReadingState(enum.Enum):
    NEW = "new"
    CLAIMED = "claimed"
    DRAFT = "draft"
    SIGNED = "signed"
    AMENDED = "amended"
    RETURNED = "returned"


class ReadingEvent(enum.Enum):
    """A step; the value is its name in ``POST /readings/{id}/{event}``."""

    CLAIM = "claim"
    RELEASE = "release"
    EDIT = "edit"
    SIGN = "sign"
    AMEND = "amend"
    RETURN = "return"


class ReadingParty(enum.Enum):
    READER = "reader"  # an ECG reader of the centre serving the clinic
    CLAIMANT = "claimant"  # the reader who holds the claim
    SIGNER = "signer"  # the reader who signed the current version
    COORDINATOR = "coordinator"  # a coordinator of the centre


@dataclass(frozen=True)
class ReadingRule:
    to: ReadingState
    parties: frozenset[ReadingParty]
    needs_reason: bool = False


_R, _RE, _RP = ReadingState, ReadingEvent, ReadingParty
_OWN: Final = frozenset({_RP.CLAIMANT})
_RELEASE: Final = ReadingRule(_R.NEW, frozenset({_RP.CLAIMANT, _RP.COORDINATOR}))
_RETURN: Final = ReadingRule(_R.RETURNED, frozenset({_RP.CLAIMANT}), needs_reason=True)

READING_TRANSITIONS: Final[Mapping[ReadingState, Mapping[ReadingEvent, ReadingRule]]] = {
    _R.NEW: {
        _RE.CLAIM: ReadingRule(_R.CLAIMED, frozenset({_RP.READER})),
        _RE.RETURN: ReadingRule(_R.RETURNED, frozenset({_RP.READER}), needs_reason=True),
    },
    _R.CLAIMED: {
        _RE.EDIT: ReadingRule(_R.DRAFT, _OWN),
        _RE.SIGN: ReadingRule(_R.SIGNED, _OWN),
        _RE.RELEASE: _RELEASE,
        _RE.RETURN: _RETURN,
    },
    _R.DRAFT: {
        _RE.EDIT: ReadingRule(_R.DRAFT, _OWN),
        _RE.SIGN: ReadingRule(_R.SIGNED, _OWN),
        _RE.RELEASE: _RELEASE,
        _RE.RETURN: _RETURN,
    },
    _R.SIGNED: {_RE.AMEND: ReadingRule(_R.AMENDED, frozenset({_RP.SIGNER, _RP.READER}))},
    _R.AMENDED: {
        _RE.EDIT: ReadingRule(_R.AMENDED, _OWN),
        _RE.SIGN: ReadingRule(_R.SIGNED, _OWN),
    },
    _R.RETURNED: {},
}


class ClaimedByAnother(Forbidden):
    """The task is claimed by another reader (named, so nobody reads it unknowingly)."""

    code: ClassVar[str] = "claimed_by_another"

    def __init__(self, claimant: str) -> None:
        super().__init__(f"claimed by {claimant}")
        self.claimant = claimant


@dataclass(frozen=True, kw_only=True)
class ReadingTask:
    """The lifecycle's view of one reading task."""

    id: str
    state: ReadingState
    clinic: str  # the recording institution's code
    centre: str  # the ECG centre serving it
    received_at: datetime
    stat: bool = False  # requested as urgent by the clinic
    critical: tuple[str, ...] = ()  # codes of critical findings
    claimant: str | None = None
    signer: str | None = None
    version: int = 0  # signed versions so far
    signed_at: datetime | None = None
    reason: str | None = None  # why it was returned


@dataclass(frozen=True, kw_only=True)
class Reader:
    """Who acts on a reading: username, roles, institution code."""

    username: str
    roles: frozenset[str]
    institution: str


def reading_parties(task: ReadingTask, who: Reader) -> frozenset[ReadingParty]:
    found: set[ReadingParty] = set()
    if "ecg_reader" in who.roles and who.institution == task.centre:
        found.add(ReadingParty.READER)
        if who.username == task.claimant:
            found.add(ReadingParty.CLAIMANT)
        if who.username == task.signer:
            found.add(ReadingParty.SIGNER)
    if "coordinator" in who.roles and who.institution == task.centre:
        found.add(ReadingParty.COORDINATOR)
    return frozenset(found)


def apply_reading(
    task: ReadingTask,
    event: ReadingEvent,
    who: Reader,
    now: datetime,
    *,
    reason: str | None = None,
    signed: bool = False,
) -> ReadingTask:
    """Take one step of a reading task; return the task after it.

    ``signed`` says the caller verified the second factor and made the signature.

    Raises
    ------
    TransitionNotAllowed, NotPermitted, ClaimedByAnother, InvalidInput
    """
    mine = reading_parties(task, who)
    try:
        rule = look_up(READING_TRANSITIONS, "reading", task.state, event, mine)
    except NotPermitted:
        if task.claimant is not None and ReadingParty.READER in mine:
            raise ClaimedByAnother(task.claimant) from None
        raise
    changes: dict[str, object] = {"state": rule.to}
    if rule.needs_reason:
        if reason is None or not reason.strip():
            raise InvalidInput("reason", f"{event.value} needs a reason")
        changes["reason"] = reason.strip()
    if event is ReadingEvent.CLAIM:
        changes["claimant"] = who.username
    elif event is ReadingEvent.RELEASE:
        changes["claimant"] = None
    elif event is ReadingEvent.AMEND:
        changes["claimant"] = who.username
    elif event is ReadingEvent.SIGN:
        if not signed:
            raise InvalidInput("totp", "signing needs the second factor")
        changes.update(signer=who.username, signed_at=now, version=task.version + 1)
    return replace(task, **changes)  # type: ignore[arg-type]


def worklist_key(task: ReadingTask) -> tuple[int, int, datetime]:
    """Sort key: critical first, then STAT, then the longest waiting."""
    return (0 if task.critical else 1, 0 if task.stat else 1, task.received_at)


# ---------------------------------------------------------------- critical values


class CriticalState(enum.Enum):
    RAISED = "raised"
    NOTIFIED = "notified"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"


class CriticalEvent(enum.Enum):
    NOTIFY = "notify"
    ESCALATE = "escalate"
    ACKNOWLEDGE = "acknowledge"


CRITICAL_TRANSITIONS: Final[Mapping[CriticalState, Mapping[CriticalEvent, CriticalState]]] = {
    CriticalState.RAISED: {CriticalEvent.NOTIFY: CriticalState.NOTIFIED},
    CriticalState.NOTIFIED: {
        CriticalEvent.ESCALATE: CriticalState.ESCALATED,
        CriticalEvent.ACKNOWLEDGE: CriticalState.ACKNOWLEDGED,
    },
    CriticalState.ESCALATED: {
        CriticalEvent.ESCALATE: CriticalState.ESCALATED,
        CriticalEvent.ACKNOWLEDGE: CriticalState.ACKNOWLEDGED,
    },
    CriticalState.ACKNOWLEDGED: {},
}

# Who is told at each escalation level (level 0: the recording doctor and the reader on
# duty); past the last level the escalation stays there.
ESCALATION_LEVELS: Final = ("clinic_doctors", "centre_coordinators", "phone_gateway")


class CriticalTransitionError(ConsultsError):
    code: ClassVar[str] = "transition_not_allowed"

    def __init__(self, state: CriticalState, event: CriticalEvent) -> None:
        super().__init__(f"a critical value in state {state.value} cannot take {event.value}")
        self.state = state
        self.event = event


class NotNotified(Forbidden):
    """Only someone who was told of the critical value may acknowledge it."""

    code: ClassVar[str] = "not_notified"

    def __init__(self) -> None:
        super().__init__("you were not notified of this critical value")


@dataclass(frozen=True, kw_only=True)
class CriticalValue:
    """One critical finding on one ECG, and who was told and who acknowledged when."""

    id: str
    code: str  # the finding, e.g. ``PAUSE``, ``VF``, ``STEMI``
    reading: str  # the reading task's id
    state: CriticalState
    detected_at: datetime
    notified: tuple[str, ...] = ()  # usernames told, in order
    level: int = -1  # escalation level reached (-1: not yet escalated)
    notified_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    read_back: str | None = None


def apply_critical(
    value: CriticalValue,
    event: CriticalEvent,
    now: datetime,
    *,
    told: tuple[str, ...] = (),
    by: str | None = None,
    read_back: str | None = None,
) -> CriticalValue:
    """Take one step of a critical value.

    ``told``: who this notification or escalation reaches. ``by`` and ``read_back``: for
    ``acknowledge``, the person and the finding as they understood it.
    """
    after = CRITICAL_TRANSITIONS[value.state].get(event)
    if after is None:
        raise CriticalTransitionError(value.state, event)
    changes: dict[str, object] = {"state": after}
    if event is CriticalEvent.NOTIFY:
        changes.update(notified=told, notified_at=now)
    elif event is CriticalEvent.ESCALATE:
        changes.update(
            notified=value.notified + tuple(t for t in told if t not in value.notified),
            level=min(value.level + 1, len(ESCALATION_LEVELS) - 1),
        )
    else:
        if by is None or by not in value.notified:
            raise NotNotified()
        if read_back is None or not read_back.strip():
            raise InvalidInput("read_back", "say the finding back as you understood it")
        changes.update(acknowledged_by=by, acknowledged_at=now, read_back=read_back.strip())
    return replace(value, **changes)  # type: ignore[arg-type]


def escalation_due(value: CriticalValue, acknowledge_within: timedelta) -> datetime | None:
    """When the next escalation is due, or None once acknowledged or not yet notified.

    Each level has the same time to answer as the first notification.
    """
    if value.state not in (CriticalState.NOTIFIED, CriticalState.ESCALATED):
        return None
    assert value.notified_at is not None
    return value.notified_at + acknowledge_within * (value.level + 2)


# ---------------------------------------------------------------- beat labels


class BeatLabel(enum.Enum):
    """A beat's class, by its MIT-BIH symbol (the value, as the API carries it)."""

    NORMAL = "N"
    SUPRAVENTRICULAR = "S"  # supraventricular premature or ectopic
    VENTRICULAR = "V"  # premature ventricular contraction
    PACED = "P"
    ARTEFACT = "Q"  # not a beat: noise or artefact the detector took for one


class UnknownBeatLabel(InvalidInput):
    """A label that is not one of :class:`BeatLabel`'s."""

    code: ClassVar[str] = "unknown_beat_label"

    def __init__(self, label: str) -> None:
        known = ", ".join(b.value for b in BeatLabel)
        super().__init__("label", f"{label[:16]!r} is not a beat label ({known})")


class BeatOutOfRange(InvalidInput):
    """A beat index outside the beats of the measured window."""

    code: ClassVar[str] = "beat_out_of_range"

    def __init__(self, beat: int, n_beats: int) -> None:
        super().__init__("beat", f"beat {beat} is not one of the {n_beats} beats (0-{n_beats - 1})")


def relabel(
    labels: Mapping[int, BeatLabel], beat: int, label: str, n_beats: int
) -> dict[int, BeatLabel]:
    """The reader's labels with beat ``beat`` (an index among ``n_beats``) labelled
    ``label`` (a :class:`BeatLabel` value); labels of beats no longer there are dropped.

    Raises
    ------
    UnknownBeatLabel, BeatOutOfRange
    """
    try:
        chosen = BeatLabel(label)
    except ValueError:
        raise UnknownBeatLabel(label) from None
    if not 0 <= beat < n_beats:
        raise BeatOutOfRange(beat, n_beats)
    kept = {i: v for i, v in labels.items() if 0 <= i < n_beats}
    kept[beat] = chosen
    return dict(sorted(kept.items()))


def beat_labels(n_beats: int, labels: Mapping[int, BeatLabel]) -> tuple[BeatLabel, ...]:
    """Every beat's label: the reader's, else N."""
    return tuple(labels.get(i, BeatLabel.NORMAL) for i in range(n_beats))


def beat_counts(labels: Sequence[BeatLabel]) -> dict[str, int]:
    """How many beats bear each label, in :class:`BeatLabel`'s order, those with none
    left out: ``{"N": 10, "V": 3}``."""
    return {b.value: n for b in BeatLabel if (n := sum(1 for x in labels if x is b))}
