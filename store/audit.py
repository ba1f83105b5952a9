"""The audit trail: one append-only table, each row chained to the one before by SHA-256.

Canonical form
--------------
A row's hash is the SHA-256 (lowercase hex) of its canonical form: the UTF-8 bytes of
the JSON object

    {"action", "actor", "consult", "detail", "institution", "patient",
     "prev_hash", "room", "seq", "target", "time"}

with keys sorted, no whitespace (separators ``,`` and ``:``), non-ASCII characters as
themselves (``ensure_ascii=False``). ``seq`` is an integer (1 for the first row,
then +1 each row, no gap); ``time`` is UTC in RFC 3339 with microseconds and ``Z``
(``2026-12-02T09:40:00.123456Z``); ``detail`` is the stored detail *text* (itself
canonical JSON, or ``null``), so that any change to its bytes changes the hash;
``prev_hash`` is the previous row's hash (64 zeros before the first row). Every other
field is a string, ``""`` when empty. Anyone can recompute it from the table with
nothing but a JSON library and SHA-256 (``teleconsult audit verify`` does).

Appending
---------
:func:`append` runs inside the caller's transaction (so an audit row commits with the
change it records, or neither does). It first updates the single ``audit_head`` row
(seq, hash of the last row): on PostgreSQL that locks the row until commit, on SQLite
it takes the database's write lock, so a second appender waits and then extends the
head the first one left; two writers cannot fork the chain. A batch of records costs
one head update and one multi-row insert: the signaling server's group commit puts
every join and leave queued during a write into the next one.

What verification proves
------------------------
A row changed in place, removed, inserted or moved breaks the chain at that row
(:func:`verify` names it). Rows removed from the end are found by the head row; an
attacker who rewrites the head and every hash after a change can only be caught
against a head recorded elsewhere (``audit verify`` prints it: keep it, and pass it back
with ``--expect-head``).

Chat text is not audit material (it is part of the consult record); no token, address
or secret belongs in ``detail``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    and_,
    bindparam,
    func,
    insert,
    select,
    update,
)

from store.schema import GENESIS_HASH, IDENTITY, audit, audit_head

TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"  # what format_time writes, in strftime's terms
# Rows fetched per round trip while verifying (bounded memory on any size of trail).
VERIFY_BATCH_ROWS: Final = 10_000
_TEXT_LIMITS: Final = {
    "actor": IDENTITY,
    "action": 64,
    "target": IDENTITY,
    "institution": 64,
    "patient": IDENTITY,
    "consult": 64,
    "room": IDENTITY,
}


def format_time(moment: datetime) -> str:
    """``moment`` as the canonical form writes it: UTC, microseconds, ``Z``."""
    if moment.tzinfo is None:
        raise ValueError("audit times must be aware datetimes")
    # isoformat is several times faster than strftime and writes the same text.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 time (``Z`` or an offset) as an aware UTC datetime.

    Raises
    ------
    ValueError
        Not such a time, or one without a time zone.
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (say Z for UTC)")
    return moment.astimezone(UTC)


def canonical_detail(detail: Mapping[str, Any] | None) -> str | None:
    """The stored text of a detail: canonical JSON, or None.

    Raises
    ------
    TypeError
        A value JSON cannot represent.
    ValueError
        NaN or infinity (not JSON).
    """
    if detail is None:
        return None
    return json.dumps(
        detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditRecord:
    """One action to append.

    Parameters
    ----------
    time
        When it happened (aware; stored as UTC to the microsecond).
    actor
        Who acted: a person id, a room-token identity, ``device:ID`` or ``server``;
        ``""`` when nobody known (a login attempt for an unknown username).
    action
        What happened (``login``, ``login_failed``, ``join``, ``remove``, ...).
    target
        What or whom it was done to, ``""`` when nothing.
    institution, patient, consult, room
        What it concerns, for the queries an auditor makes; ``""`` when not known.
    detail
        Anything else, JSON-serialisable; never chat text, tokens or addresses.
    """

    time: datetime
    actor: str
    action: str
    target: str = ""
    institution: str = ""
    patient: str = ""
    consult: str = ""
    room: str = ""
    detail: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError("audit time must be an aware datetime")
        if not self.action:
            raise ValueError("an audit record needs an action")
        for name, value in self.texts().items():
            limit = _TEXT_LIMITS[name]
            if len(value) > limit:
                raise ValueError(f"audit {name} longer than {limit} characters")

    def texts(self) -> dict[str, str]:
        """The text fields by column name."""
        return {
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "institution": self.institution,
            "patient": self.patient,
            "consult": self.consult,
            "room": self.room,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditRow:
    """A stored row: the record's fields as stored, its place and its hashes."""

    seq: int
    time: datetime
    actor: str
    action: str
    target: str
    institution: str
    patient: str
    consult: str
    room: str
    detail: str | None
    prev_hash: str
    hash: str

    def detail_object(self) -> Any:
        """The detail parsed (None when there is none)."""
        return None if self.detail is None else json.loads(self.detail)

    def hashed_fields(self) -> dict[str, Any]:
        """The fields the row's hash covers (everything but the hash)."""
        return {
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "institution": self.institution,
            "patient": self.patient,
            "consult": self.consult,
            "room": self.room,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
        }

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object (time in the canonical format, detail parsed)."""
        document = self.hashed_fields()
        document.update(time=format_time(self.time), detail=self.detail_object(), hash=self.hash)
        return document


def canonical_form(
    *,
    seq: int,
    time: datetime,
    actor: str,
    action: str,
    target: str,
    institution: str,
    patient: str,
    consult: str,
    room: str,
    detail: str | None,
    prev_hash: str,
) -> bytes:
    """The bytes a row's hash is taken of (see the module docstring)."""
    document = {
        "action": action,
        "actor": actor,
        "consult": consult,
        "detail": detail,
        "institution": institution,
        "patient": patient,
        "prev_hash": prev_hash,
        "room": room,
        "seq": seq,
        "target": target,
        "time": format_time(time),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def row_hash(**fields: Any) -> str:
    """SHA-256 hex of :func:`canonical_form` of ``fields``."""
    return hashlib.sha256(canonical_form(**fields)).hexdigest()


def chain(
    records: Sequence[AuditRecord], *, after_seq: int, after_hash: str
) -> list[dict[str, Any]]:
    """The rows (column values) that extend a chain whose head is ``after_*`` by ``records``.

    Pure: used by :func:`append` and by bulk loaders (the benchmark).
    """
    rows: list[dict[str, Any]] = []
    prev, seq = after_hash, after_seq
    for record in records:
        seq += 1
        values: dict[str, Any] = {
            "seq": seq,
            "time": record.time.astimezone(UTC),
            **record.texts(),
            "detail": canonical_detail(record.detail),
            "prev_hash": prev,
        }
        values["hash"] = prev = row_hash(**values)
        rows.append(values)
    return rows


# The chain's statements, built once: building them per call (coercions, cache keys of
# new objects) cost about as much CPU as SQLite's commit, once per group commit.
_LOCK_HEAD: Final = (
    update(audit_head)
    .where(audit_head.c.id == 1)
    .values(seq=audit_head.c.seq)
    .returning(audit_head.c.seq, audit_head.c.hash)
)
_INSERT_ROWS: Final = insert(audit)
_MOVE_HEAD: Final = (
    update(audit_head)
    .where(audit_head.c.id == 1)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


def append(conn: Connection, records: Sequence[AuditRecord]) -> list[int]:
    """Append ``records`` to the chain in the caller's transaction; their seqs.

    Call it first in the transaction, or at least before the transaction reads
    anything: it takes the chain's lock (module docstring).
    """
    if not records:
        return []
    head = conn.execute(_LOCK_HEAD).one()
    rows = chain(records, after_seq=head.seq, after_hash=head.hash)
    conn.execute(_INSERT_ROWS, rows)
    conn.execute(_MOVE_HEAD, {"new_seq": rows[-1]["seq"], "new_hash": rows[-1]["hash"]})
    return [row["seq"] for row in rows]


def head(conn: Connection) -> tuple[int, str]:
    """``(seq, hash)`` of the last row (``(0, GENESIS_HASH)`` for an empty trail)."""
    row = conn.execute(select(audit_head.c.seq, audit_head.c.hash)).one()
    return int(row.seq), str(row.hash)


def _row(row: Row[Any]) -> AuditRow:
    return AuditRow(**row._mapping)


@dataclass(frozen=True, kw_only=True, slots=True)
class VerifyReport:
    """What :func:`verify` found.

    ``first_bad_seq`` is the seq of the first row that was changed, removed or moved
    (for a removal: the first missing seq), None when the chain holds.
    """

    rows: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the chain holds."""
        return self.problem is None


def _stream(engine: Engine, batch_rows: int, last_seq: int) -> Iterator[AuditRow]:
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=batch_rows).execute(
            select(audit).where(audit.c.seq <= last_seq).order_by(audit.c.seq)
        )
        for row in result:
            yield _row(row)


def _added_outside(engine: Engine, head_seq: int) -> bool:
    """Whether rows past ``head_seq`` exist that no append accounts for.

    Rows appended while verifying are past the head read at the start, and the head
    re-read now covers them; rows inserted behind the store's back are past any head.
    """
    with engine.connect() as conn:
        last = conn.execute(select(func.max(audit.c.seq))).scalar()
        now_seq, _ = head(conn)
    return last is not None and last > max(head_seq, now_seq)


def verify(
    engine: Engine, *, expect_head: str | None = None, batch_rows: int = VERIFY_BATCH_ROWS
) -> VerifyReport:
    """Walk the whole chain in seq order and report the first row that breaks it.

    The chain is checked up to the head read when it starts: rows appended meanwhile
    (a running server) are left for the next verification.

    Parameters
    ----------
    expect_head
        A head hash recorded earlier (by a previous ``verify``): the chain must still
        contain it as some row's hash, or it was rewritten.
    batch_rows
        Rows fetched per round trip.
    """
    with engine.connect() as conn:
        head_seq, head_hash = head(conn)
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    seen_expected = expect_head is None or expect_head == GENESIS_HASH

    def broken(seq: int, problem: str) -> VerifyReport:
        return VerifyReport(
            rows=count, head_seq=head_seq, head_hash=head_hash, first_bad_seq=seq, problem=problem
        )

    for row in _stream(engine, batch_rows, head_seq):
        if row.seq != expected_seq:
            return broken(
                expected_seq,
                f"row seq {expected_seq} was removed (the next row is seq {row.seq})",
            )
        recomputed = row_hash(**row.hashed_fields())
        if recomputed != row.hash:
            return broken(row.seq, f"row seq {row.seq} was changed or moved (hash mismatch)")
        if row.prev_hash != prev_hash:
            return broken(
                row.seq - 1,
                f"row seq {row.seq - 1} was changed or replaced: row seq {row.seq} "
                "does not chain to it",
            )
        seen_expected = seen_expected or row.hash == expect_head
        prev_hash, expected_seq, count = row.hash, expected_seq + 1, count + 1
    last_seq = expected_seq - 1
    if head_seq > last_seq:
        return broken(last_seq + 1, f"rows seq {last_seq + 1} to {head_seq} were removed")
    if _added_outside(engine, head_seq):
        return broken(head_seq + 1, f"rows after seq {head_seq} were added outside the store")
    if head_hash != prev_hash:
        return broken(last_seq, f"row seq {last_seq} does not match the chain head")
    if not seen_expected:
        return broken(0, "the expected head is not in the chain: the trail was rewritten")
    return VerifyReport(rows=count, head_seq=head_seq, head_hash=head_hash)


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditQuery:
    """What an auditor asks for; every given field must match (None: any).

    ``since`` is inclusive, ``until`` exclusive.
    """

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    institution: str | None = None
    patient: str | None = None
    consult: str | None = None
    room: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def condition(self) -> ColumnElement[bool]:
        """The query's WHERE clause."""
        fields = {
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "institution": self.institution,
            "patient": self.patient,
            "consult": self.consult,
            "room": self.room,
        }
        terms = [audit.c[name] == value for name, value in fields.items() if value is not None]
        if self.since is not None:
            terms.append(audit.c.time >= self.since)
        if self.until is not None:
            terms.append(audit.c.time < self.until)
        return and_(True, *terms)


def query(
    conn: Connection,
    what: AuditQuery,
    *,
    limit: int = 100,
    newest_first: bool = False,
    after_seq: int | None = None,
) -> list[AuditRow]:
    """One page of matching rows in seq order (or newest first).

    ``after_seq`` continues a previous page: rows past that seq in the page's order
    (keyset paging, so a page costs the same on the millionth row as on the first).
    """
    statement = select(audit).where(what.condition())
    if after_seq is not None:
        statement = statement.where(
            audit.c.seq < after_seq if newest_first else audit.c.seq > after_seq
        )
    order = audit.c.seq.desc() if newest_first else audit.c.seq.asc()
    statement = statement.order_by(order).limit(limit)
    return [_row(row) for row in conn.execute(statement)]
