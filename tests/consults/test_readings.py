"""Reading tasks and critical values: both tables entry by entry, the worklist order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consults.errors import Forbidden, InvalidInput
from consults.readings import (
    CRITICAL_TRANSITIONS,
    ESCALATION_LEVELS,
    READING_TRANSITIONS,
    BeatLabel,
    BeatOutOfRange,
    ClaimedByAnother,
    CriticalEvent,
    CriticalState,
    CriticalTransitionError,
    CriticalValue,
    NotNotified,
    Reader,
    ReadingEvent,
    ReadingParty,
    ReadingState,
    ReadingTask,
    UnknownBeatLabel,
    apply_critical,
    apply_reading,
    beat_counts,
    beat_labels,
    escalation_due,
    relabel,
    worklist_key,
)
from consults.transitions import TransitionNotAllowed

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
LIU = Reader(username="rd-liu", roles=frozenset({"ecg_reader"}), institution="ECG1")
MA = Reader(username="rd-ma", roles=frozenset({"ecg_reader"}), institution="ECG1")
COORD = Reader(username="co-he", roles=frozenset({"coordinator"}), institution="ECG1")
FAR = Reader(username="rd-far", roles=frozenset({"ecg_reader"}), institution="ECG9")


def task(state: ReadingState, **kw: object) -> ReadingTask:
    fields: dict[str, object] = {
        "id": "r1",
        "state": state,
        "clinic": "TS01",
        "centre": "ECG1",
        "received_at": T0,
        "claimant": LIU.username if state in (ReadingState.CLAIMED, ReadingState.DRAFT) else None,
        "signer": LIU.username if state is ReadingState.SIGNED else None,
    }
    if state is ReadingState.AMENDED:
        fields["claimant"] = LIU.username
    fields.update(kw)
    return ReadingTask(**fields)  # type: ignore[arg-type]


def who_for(parties: frozenset[ReadingParty]) -> Reader:
    if parties & {ReadingParty.CLAIMANT, ReadingParty.SIGNER, ReadingParty.READER}:
        return LIU
    return COORD


@pytest.mark.parametrize(
    ("state", "event"),
    [(s, e) for s, rules in READING_TRANSITIONS.items() for e in rules],
)
def test_every_reading_entry(state: ReadingState, event: ReadingEvent) -> None:
    """Each entry, taken by a party it allows, reaches its next state."""
    rule = READING_TRANSITIONS[state][event]
    after = apply_reading(
        task(state), event, who_for(rule.parties), T0, reason="noisy", signed=True
    )
    assert after.state is rule.to


@pytest.mark.parametrize(
    ("state", "event"),
    [(s, e) for s in ReadingState for e in ReadingEvent if e not in READING_TRANSITIONS[s]],
)
def test_every_missing_reading_entry_is_refused(state: ReadingState, event: ReadingEvent) -> None:
    """A step the table lacks is a TransitionNotAllowed naming state and event."""
    with pytest.raises(TransitionNotAllowed) as caught:
        apply_reading(task(state), event, LIU, T0, reason="x", signed=True)
    assert state.value in str(caught.value)
    assert event.value in str(caught.value)


def test_a_second_reader_is_blocked_by_the_claim_and_told_who() -> None:
    """Another reader cannot edit, sign or release a claimed task; the claimant is named."""
    claimed = apply_reading(task(ReadingState.NEW), ReadingEvent.CLAIM, LIU, T0)
    for event in (ReadingEvent.EDIT, ReadingEvent.SIGN, ReadingEvent.RELEASE):
        with pytest.raises(ClaimedByAnother, match="rd-liu"):
            apply_reading(claimed, event, MA, T0, signed=True)
    with pytest.raises(TransitionNotAllowed):
        apply_reading(claimed, ReadingEvent.CLAIM, MA, T0)


def test_coordinator_releases_an_abandoned_claim() -> None:
    """A coordinator of the centre may release; the task is new and unclaimed again."""
    released = apply_reading(task(ReadingState.CLAIMED), ReadingEvent.RELEASE, COORD, T0)
    assert released.state is ReadingState.NEW
    assert released.claimant is None


def test_readers_of_another_centre_see_nothing_to_do() -> None:
    """A reader of another centre may not claim."""
    with pytest.raises(Forbidden):
        apply_reading(task(ReadingState.NEW), ReadingEvent.CLAIM, FAR, T0)


def test_sign_needs_the_second_factor_and_amend_makes_a_new_version() -> None:
    """Unsigned sign is refused; amend and sign again gives version 2 by the amender."""
    draft = task(ReadingState.DRAFT)
    with pytest.raises(InvalidInput, match="totp"):
        apply_reading(draft, ReadingEvent.SIGN, LIU, T0)
    signed = apply_reading(draft, ReadingEvent.SIGN, LIU, T0, signed=True)
    assert (signed.version, signed.signer) == (1, LIU.username)
    amended = apply_reading(signed, ReadingEvent.AMEND, MA, T0)
    again = apply_reading(amended, ReadingEvent.SIGN, MA, T0 + timedelta(hours=1), signed=True)
    assert (again.version, again.signer, again.state) == (2, MA.username, ReadingState.SIGNED)


def test_return_needs_a_reason() -> None:
    """Returning to the clinic says why."""
    with pytest.raises(InvalidInput, match="reason"):
        apply_reading(task(ReadingState.CLAIMED), ReadingEvent.RETURN, LIU, T0, reason=" ")


def test_worklist_order() -> None:
    """Critical first, then STAT, then the longest waiting."""
    old = task(ReadingState.NEW, id="old", received_at=T0 - timedelta(hours=2))
    new = task(ReadingState.NEW, id="new", received_at=T0)
    stat = task(ReadingState.NEW, id="stat", stat=True, received_at=T0)
    crit = task(ReadingState.NEW, id="crit", critical=("PAUSE",), received_at=T0)
    ordered = sorted([new, old, stat, crit], key=worklist_key)
    assert [t.id for t in ordered] == ["crit", "stat", "old", "new"]


def critical(state: CriticalState = CriticalState.RAISED, **kw: object) -> CriticalValue:
    fields: dict[str, object] = {
        "id": "cv1",
        "code": "PAUSE",
        "reading": "r1",
        "state": state,
        "detected_at": T0,
    }
    fields.update(kw)
    return CriticalValue(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "event"),
    [(s, e) for s in CriticalState for e in CriticalEvent if e not in CRITICAL_TRANSITIONS[s]],
)
def test_missing_critical_entries_are_refused(state: CriticalState, event: CriticalEvent) -> None:
    """A step the table lacks raises CriticalTransitionError."""
    with pytest.raises(CriticalTransitionError):
        apply_critical(
            critical(state, notified=("dr-wang",)), event, T0, by="dr-wang", read_back="x"
        )


def test_notify_escalate_acknowledge() -> None:
    """Told, escalated twice past its deadline, acknowledged by someone told, with read-back."""
    within = timedelta(minutes=10)
    value = apply_critical(critical(), CriticalEvent.NOTIFY, T0, told=("dr-wang", "rd-liu"))
    assert escalation_due(value, within) == T0 + within
    value = apply_critical(value, CriticalEvent.ESCALATE, T0 + within, told=("dr-zhao",))
    assert ESCALATION_LEVELS[value.level] == "clinic_doctors"
    assert escalation_due(value, within) == T0 + 2 * within
    value = apply_critical(value, CriticalEvent.ESCALATE, T0 + 2 * within, told=("co-he",))
    assert value.notified == ("dr-wang", "rd-liu", "dr-zhao", "co-he")
    with pytest.raises(NotNotified):
        apply_critical(value, CriticalEvent.ACKNOWLEDGE, T0, by="dr-other", read_back="pause")
    with pytest.raises(InvalidInput, match="read_back"):
        apply_critical(value, CriticalEvent.ACKNOWLEDGE, T0, by="dr-zhao", read_back="")
    done = apply_critical(
        value,
        CriticalEvent.ACKNOWLEDGE,
        T0 + 25 * timedelta(minutes=1),
        by="dr-zhao",
        read_back="3.5 s pause, patient being seen",
    )
    assert done.state is CriticalState.ACKNOWLEDGED
    assert done.acknowledged_by == "dr-zhao"
    assert escalation_due(done, within) is None


def test_escalation_stops_at_the_last_level() -> None:
    """Escalating past the phone gateway stays at the last level."""
    value = critical(CriticalState.NOTIFIED, notified=("a",), notified_at=T0)
    for _ in range(len(ESCALATION_LEVELS) + 2):
        value = apply_critical(value, CriticalEvent.ESCALATE, T0)
    assert value.level == len(ESCALATION_LEVELS) - 1


def test_beat_labels_relabel_and_count() -> None:
    """A label of the five replaces the beat's (N where none), labels past the beats
    are dropped; an unknown label or a beat outside the beats is refused with its code;
    the counts follow BeatLabel's order and leave out labels no beat bears."""
    labels = relabel({}, 1, "V", 4)
    labels = relabel({**labels, 9: BeatLabel.PACED}, 3, "Q", 4)
    assert labels == {1: BeatLabel.VENTRICULAR, 3: BeatLabel.ARTEFACT}
    every = beat_labels(4, labels)
    assert [b.value for b in every] == ["N", "V", "N", "Q"]
    assert beat_counts(every) == {"N": 2, "V": 1, "Q": 1}
    assert list(
        beat_counts(beat_labels(2, {0: BeatLabel.PACED, 1: BeatLabel.SUPRAVENTRICULAR}))
    ) == [
        "S",
        "P",
    ]
    with pytest.raises(UnknownBeatLabel) as unknown:
        relabel(labels, 0, "X", 4)
    assert unknown.value.code == "unknown_beat_label"
    for beat in (-1, 4):
        with pytest.raises(BeatOutOfRange) as outside:
            relabel(labels, beat, "S", 4)
        assert outside.value.code == "beat_out_of_range"
    assert beat_counts(()) == {}
