"""Who may see which ECG stream: viewing rights that follow from people, not room names.

A viewer's request (:class:`~signaling.effects.EcgRequest`) is granted a stream
(:class:`~signaling.messages.EcgStreamInfo`) when

1. the viewer is **admitted to the room the stream is attached to** (the stream's
   ``room`` or ``consult`` is the viewer's room and the identity is in it, not in its
   waiting room): the participants of a consult see its patient's ECG; or
2. the viewer's token was **issued by an operator for that room** (``teleconsult
   token``, an integration holding the server's key: it names no institution): the
   stream's ``room`` or ``consult`` is the token's room. Such a token is a deliberate
   grant for one room; the server mints none for people (theirs carry an institution
   and need rule 1 or 3), so logging in and asking for a room's token grants no
   stream by the room's name alone; or
3. the viewer's token was minted for a **logged-in person** (it carries their
   institution and directory roles), the person holds a clinical role, and their
   institution is the stream's or serves it for ECG — by default an institution serves
   those below it in the tree, and admins add or remove relations
   (:func:`consults.rights.serves`).

Nothing else grants: the name of a room (``ecg-centre``) grants nothing by itself, and
nobody in a waiting room sees anything (:mod:`signaling.viewing` refuses before asking).

The institution tree and the service relations come from a :class:`DirectoryView`
that answers from memory (the wiring keeps a snapshot and refreshes it off the event
loop), so that a decision never waits on the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from consults.directory import ServiceKind, ServiceRelation
from consults.rights import CLINICAL_ROLES, Tree, serves
from signaling import messages as m
from signaling.effects import EcgRequest

__all__ = ["DirectoryView", "EcgAccess"]

_CLINICAL: frozenset[str] = frozenset(role.value for role in CLINICAL_ROLES)


class DirectoryView(Protocol):
    """The institution tree and service relations, as of the last refresh (no I/O)."""

    def tree(self) -> Tree: ...

    def relations(self) -> Sequence[ServiceRelation]: ...


class EcgAccess:
    """The viewing rule above, over a :class:`DirectoryView`."""

    def __init__(self, directory: DirectoryView) -> None:
        self._directory = directory

    def may_view(self, viewer: EcgRequest, stream: m.EcgStreamInfo) -> bool:
        """Whether ``viewer`` may list and subscribe to ``stream``."""
        attached = viewer.room in (stream.room, stream.consult)
        if attached and (viewer.in_room or viewer.institution is None):
            return True
        if viewer.institution is None or stream.institution is None:
            return False
        if not viewer.person_roles & _CLINICAL:
            return False
        return serves(
            self._directory.tree(),
            self._directory.relations(),
            viewer.institution,
            stream.institution,
            ServiceKind.ECG,
        )
