"""The audit chain: canonical hashes, serialised appends, verification and queries."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, delete, update

from store.audit import (
    TIME_FORMAT,
    AuditQuery,
    AuditRecord,
    append,
    canonical_form,
    format_time,
    query,
    verify,
)
from store.engine import open_engine
from store.schema import GENESIS_HASH, audit

T0 = datetime(2026, 12, 2, 9, 0, 0, 123456, tzinfo=UTC)


def record(i: int, **fields: str) -> AuditRecord:
    return AuditRecord(
        time=T0 + timedelta(seconds=i),
        actor=fields.get("actor", f"doctor:{i % 3}"),
        action=fields.get("action", "join"),
        room=fields.get("room", "r1"),
        patient=fields.get("patient", ""),
        detail={"i": i, "名": "张三"},
    )


def test_canonical_form_is_the_documented_json() -> None:
    """The hashed bytes are sorted compact UTF-8 JSON of the documented keys."""
    form = canonical_form(
        seq=1,
        time=T0,
        actor="a",
        action="join",
        target="",
        institution="",
        patient="",
        consult="",
        room="r",
        detail='{"k":"张"}',
        prev_hash=GENESIS_HASH,
    )
    document = json.loads(form.decode("utf-8"))
    assert list(document) == sorted(document)
    assert document["time"] == "2026-12-02T09:00:00.123456Z"
    assert b" " not in form
    assert "张".encode() in form


def test_appended_rows_chain_and_verify(engine: Engine) -> None:
    """Rows appended in batches chain from the genesis hash and verify."""
    with engine.begin() as conn:
        assert append(conn, [record(i) for i in range(3)]) == [1, 2, 3]
    with engine.begin() as conn:
        assert append(conn, [record(3)]) == [4]
    with engine.connect() as conn:
        rows = query(conn, AuditQuery())
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    assert rows[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.hash
    for row in rows:
        document = {**row.hashed_fields(), "time": format_time(row.time)}
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(text.encode()).hexdigest() == row.hash
    assert rows[1].time == T0 + timedelta(seconds=1)
    assert rows[1].detail_object() == {"i": 1, "名": "张三"}
    report = verify(engine)
    assert report.ok, report.problem
    assert (report.rows, report.head_seq, report.head_hash) == (4, 4, rows[-1].hash)


def test_a_failed_transaction_appends_nothing(engine: Engine) -> None:
    """An append rolled back with its transaction leaves the chain as it was."""
    with engine.begin() as conn:
        append(conn, [record(0)])

    def failing_unit() -> None:
        with engine.begin() as conn:
            append(conn, [record(1)])
            raise RuntimeError("the change the row records failed")

    with pytest.raises(RuntimeError):
        failing_unit()
    with engine.begin() as conn:
        assert append(conn, [record(2)]) == [2]
    assert verify(engine).ok


def test_concurrent_appenders_cannot_fork_the_chain(engine: Engine) -> None:
    """Two nodes (engines) of two threads each appending at once leave one chain with no
    gap and no fork."""
    per_thread, threads = 15, 4
    nodes = [engine, open_engine(url=engine.url.render_as_string(hide_password=False))]
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with nodes[t % 2].begin() as conn:
                    append(conn, [record(i, actor=f"t{t}"), record(i, actor=f"t{t}")])
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    nodes[1].dispose()
    assert errors == []
    report = verify(engine)
    assert report.ok, report.problem
    assert report.rows == per_thread * threads * 2


@pytest.mark.parametrize("tamper", ["change", "delete", "swap", "truncate", "relink"])
def test_verify_names_the_first_tampered_row(engine: Engine, tamper: str) -> None:
    """Changing, deleting, reordering or truncating rows is found at the first such row."""
    with engine.begin() as conn:
        append(conn, [record(i) for i in range(8)])
    with engine.begin() as conn:
        if tamper == "change":
            conn.execute(update(audit).where(audit.c.seq == 3).values(actor="someone else"))
            expected = 3
        elif tamper == "delete":
            conn.execute(delete(audit).where(audit.c.seq == 5))
            expected = 5
        elif tamper == "swap":  # rows 2 and 6 trade places
            conn.execute(update(audit).where(audit.c.seq == 2).values(seq=-2))
            conn.execute(update(audit).where(audit.c.seq == 6).values(seq=2))
            conn.execute(update(audit).where(audit.c.seq == -2).values(seq=6))
            expected = 2
        elif tamper == "truncate":
            conn.execute(delete(audit).where(audit.c.seq >= 7))
            expected = 7
        else:  # row 4 changed and its own hash recomputed: row 5 no longer chains to it
            conn.execute(update(audit).where(audit.c.seq == 4).values(hash="f" * 64))
            expected = 4
    report = verify(engine)
    assert not report.ok
    assert report.first_bad_seq == expected, report.problem
    assert f"seq {expected}" in (report.problem or "")


def test_expected_head_must_be_in_the_chain(engine: Engine) -> None:
    """A head hash recorded earlier is found in an intact chain, and not in another."""
    with engine.begin() as conn:
        append(conn, [record(i) for i in range(3)])
    recorded = verify(engine).head_hash
    with engine.begin() as conn:
        append(conn, [record(3)])
    assert verify(engine, expect_head=recorded).ok
    assert not verify(engine, expect_head="e" * 64).ok


def test_query_filters_and_pages(engine: Engine) -> None:
    """Queries filter by actor, patient, action and time, and page by seq both ways."""
    with engine.begin() as conn:
        append(
            conn,
            [record(i, actor=f"a{i % 2}", patient="p1" if i < 4 else "p2") for i in range(10)],
        )
    with engine.connect() as conn:
        assert [r.seq for r in query(conn, AuditQuery(actor="a1"))] == [2, 4, 6, 8, 10]
        assert [r.seq for r in query(conn, AuditQuery(patient="p1"))] == [1, 2, 3, 4]
        window = AuditQuery(since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=5))
        assert [r.seq for r in query(conn, window)] == [3, 4, 5]
        first = query(conn, AuditQuery(), limit=4, newest_first=True)
        assert [r.seq for r in first] == [10, 9, 8, 7]
        second = query(conn, AuditQuery(), limit=4, newest_first=True, after_seq=first[-1].seq)
        assert [r.seq for r in second] == [6, 5, 4, 3]
        assert query(conn, AuditQuery(action="login")) == []
        # Metacharacters are values, not SQL.
        assert query(conn, AuditQuery(actor="a1' OR '1'='1")) == []


def test_records_refuse_naive_times_and_overlong_fields() -> None:
    """An audit record needs an aware time, an action and bounded fields."""
    with pytest.raises(ValueError, match="aware"):
        AuditRecord(time=datetime(2026, 1, 1), actor="a", action="x")
    with pytest.raises(ValueError, match="action"):
        AuditRecord(time=T0, actor="a", action="")
    with pytest.raises(ValueError, match="actor"):
        AuditRecord(time=T0, actor="a" * 201, action="x")


def test_format_time_is_rfc3339_utc_with_microseconds() -> None:
    """Times are written in UTC with six decimals and Z, whatever their zone."""
    east8 = timezone(timedelta(hours=8))
    for moment in (
        T0,
        datetime(2026, 1, 1, 7, 59, 59, 999999, tzinfo=east8),
        T0.replace(microsecond=0),
    ):
        assert format_time(moment) == moment.astimezone(UTC).strftime(TIME_FORMAT)
    assert format_time(datetime(2026, 1, 1, 8, 0, tzinfo=east8)) == "2026-01-01T00:00:00.000000Z"
