"""What every lifecycle table of ``consults/`` shares: the look-up and its two errors.

A table maps ``state -> event -> rule``; a rule names the next state and the *parties*
(an actor's relations to the record) that may take it. :func:`look_up` is the one
place a table is read: a missing entry raises :class:`TransitionNotAllowed` (HTTP 409)
naming the kind of record, the actor's parties, the state and the event; a present
entry that the actor's parties do not allow raises :class:`NotPermitted` (403).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import ClassVar, Protocol, TypeVar

from consults.errors import ConsultsError, Forbidden


def party_names(parties: frozenset[enum.Enum]) -> str:
    """``a,b`` in a stable order, ``outsider`` for none."""
    return ",".join(sorted(str(p.value) for p in parties)) or "outsider"


class TransitionNotAllowed(ConsultsError):
    """The table has no entry for this event in this state."""

    code: ClassVar[str] = "transition_not_allowed"

    def __init__(self, kind: str, party: str, state: enum.Enum, event: enum.Enum) -> None:
        super().__init__(f"{party} cannot {event.value} a {kind} in state {state.value}")
        self.kind = kind
        self.party = party
        self.state = state
        self.event = event


class NotPermitted(Forbidden):
    """The event is in the table for this state, but not for the actor's parties."""

    def __init__(
        self, kind: str, parties: frozenset[enum.Enum], state: enum.Enum, event: enum.Enum
    ) -> None:
        super().__init__(
            f"{party_names(parties)} may not {event.value} a {kind} in state {state.value}"
        )
        self.kind = kind
        self.parties = parties
        self.state = state
        self.event = event


class Rule(Protocol):
    @property
    def parties(self) -> frozenset[enum.Enum]: ...


S = TypeVar("S", bound=enum.Enum)
E = TypeVar("E", bound=enum.Enum)
R = TypeVar("R", bound=Rule)


def look_up(
    table: Mapping[S, Mapping[E, R]],
    kind: str,
    state: S,
    event: E,
    parties: frozenset[enum.Enum],
) -> R:
    """The rule for ``event`` in ``state`` when ``parties`` may take it.

    Raises
    ------
    TransitionNotAllowed
        No entry.
    NotPermitted
        An entry none of ``parties`` may take.
    """
    rule = table[state].get(event)
    if rule is None:
        raise TransitionNotAllowed(kind, party_names(parties), state, event)
    if not rule.parties & parties:
        raise NotPermitted(kind, parties, state, event)
    return rule
