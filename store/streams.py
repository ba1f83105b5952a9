"""Stream metadata on the SQL store: which ECG streams exist, whose they are, how far
they got.

The samples themselves stay in the durable stream store of the ECG live service (CRC
frames, fsync before ack); this table is the catalogue the rights are decided on: the
stream's institution (its cart's), the room and consult it declared, the patient, when
it started and ended, how many samples per lead were stored. Queries by institution
(newest first, keyset pages) serve the ECG centre's worklist and the viewers' lists.

A stream left ``live`` by a server that died is ``interrupted`` after the restart
(:meth:`SqlStreamRepository.interrupt_live`): its samples up to the crash are there, and
the cart resumes it as a new connection.

Errors are the ``consults`` tree's (``Conflict``, ``NotFound``, ``RepositoryError``),
like the directory's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import ColumnElement, Engine, and_, insert, select, true, update

from consults.errors import Conflict, InvalidInput, NotFound
from store.directory import conflict_on_duplicate, require, unit_of_work
from store.schema import STREAM_STATES, devices, from_epoch_s, institutions, streams, to_epoch_s

__all__ = ["SqlStreamRepository", "StreamRecord"]

MAX_PAGE: Final = 500


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamRecord:
    """One stream's metadata.

    Parameters
    ----------
    id
        The stream's id (a UUID as text).
    device_id, institution
        The cart and the institution it is registered to (``None`` for a stream of a
        cart that predates registration).
    room, consult, patient
        What the cart declared, checked against its registration before it is stored.
    started_at_s, ended_at_s
        Epoch seconds; ``ended_at_s`` None while live.
    samples
        Samples per lead stored so far.
    state
        ``live``, ``ended`` or ``interrupted``.
    """

    id: str
    started_at_s: float
    device_id: str | None = None
    institution: str | None = None
    room: str | None = None
    consult: str | None = None
    patient: str | None = None
    ended_at_s: float | None = None
    samples: int = 0
    state: str = "live"

    def __post_init__(self) -> None:
        if self.state not in STREAM_STATES:
            raise InvalidInput("state", f"one of {', '.join(STREAM_STATES)}")
        if self.samples < 0:
            raise InvalidInput("samples", "not negative")


def _record(row: Any) -> StreamRecord:
    return StreamRecord(
        id=row.id,
        device_id=row.device_id,
        institution=row.institution,
        room=row.room,
        consult=row.consult,
        patient=row.patient,
        started_at_s=to_epoch_s(row.started_at),
        ended_at_s=None if row.ended_at is None else to_epoch_s(row.ended_at),
        samples=row.samples,
        state=row.state,
    )


class SqlStreamRepository:
    """The ``streams`` table: add, progress, end, look up, list."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add_stream(self, stream: StreamRecord) -> None:
        """Record a new stream; :class:`Conflict` if its id exists."""
        with unit_of_work(self.engine) as conn:
            if stream.device_id is not None:
                require(conn, devices.c.id == stream.device_id, "device", stream.device_id)
            if stream.institution is not None:
                require(
                    conn,
                    institutions.c.code == stream.institution,
                    "institution",
                    stream.institution,
                )
            conflict_on_duplicate(
                conn,
                insert(streams).values(
                    id=stream.id,
                    device_id=stream.device_id,
                    institution=stream.institution,
                    room=stream.room,
                    consult=stream.consult,
                    patient=stream.patient,
                    started_at=from_epoch_s(stream.started_at_s),
                    ended_at=None if stream.ended_at_s is None else from_epoch_s(stream.ended_at_s),
                    samples=stream.samples,
                    state=stream.state,
                ),
                Conflict("stream", stream.id),
            )

    def _change(self, stream_id: str, **values: Any) -> None:
        with unit_of_work(self.engine) as conn:
            done = conn.execute(update(streams).where(streams.c.id == stream_id).values(**values))
            if done.rowcount == 0:
                raise NotFound("stream", stream_id)

    def record_samples(self, stream_id: str, samples: int) -> None:
        """Samples per lead stored so far (called with each group commit, not each frame)."""
        self._change(stream_id, samples=samples)

    def end_stream(self, stream_id: str, at_s: float, samples: int, state: str = "ended") -> None:
        """The stream stopped (``ended`` by the cart, or ``interrupted``)."""
        if state not in ("ended", "interrupted"):
            raise InvalidInput("state", "ended or interrupted")
        self._change(stream_id, ended_at=from_epoch_s(at_s), samples=samples, state=state)

    def interrupt_live(self, at_s: float) -> int:
        """Mark every stream still ``live`` as ``interrupted`` (at start-up); how many."""
        with unit_of_work(self.engine) as conn:
            done = conn.execute(
                update(streams)
                .where(streams.c.state == "live")
                .values(state="interrupted", ended_at=from_epoch_s(at_s))
            )
            return int(done.rowcount)

    def get_stream(self, stream_id: str) -> StreamRecord | None:
        """One stream by id."""
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(select(streams).where(streams.c.id == stream_id)).first()
        return None if row is None else _record(row)

    def list_streams(
        self,
        *,
        institutions: frozenset[str] | None = None,
        live_only: bool = False,
        limit: int = 50,
        before: tuple[float, str] | None = None,
    ) -> Sequence[StreamRecord]:
        """Streams newest first, of the given institutions (None: all).

        ``before`` is ``(started_at_s, id)`` of the last stream of the previous page.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput("limit", f"1 to {MAX_PAGE}")
        terms: list[ColumnElement[bool]] = [true()]
        if institutions is not None:
            terms.append(streams.c.institution.in_(sorted(institutions)))
        if live_only:
            terms.append(streams.c.state == "live")
        if before is not None:
            at = from_epoch_s(before[0])
            terms.append(
                (streams.c.started_at < at)
                | ((streams.c.started_at == at) & (streams.c.id < before[1]))
            )
        statement = (
            select(streams)
            .where(and_(*terms))
            .order_by(streams.c.started_at.desc(), streams.c.id.desc())
            .limit(limit)
        )
        with unit_of_work(self.engine, read=True) as conn:
            return [_record(row) for row in conn.execute(statement)]
