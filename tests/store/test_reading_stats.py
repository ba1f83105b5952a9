"""The ECG centre's statistics in SQL, on SQLite and PostgreSQL, over readings and critical
values made through the reading service at known times: volume by state, received →
signed and detected → acknowledged (nearest-rank median and p90, computed here from the
same times), grouped by clinic, reader and month; who may see them."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from consults.directory import Role
from consults.errors import Forbidden, InvalidInput
from consults.reading_stats import ReadingStatsGroup, ReadingStatsRow, reading_statistics
from consults.readings import ReadingEvent
from store.reading_stats import SqlReadingStatistics
from tests.consults.test_reading_service_world import ReadingWorld, rw
from tests.pg import database

__all__ = ["database", "rw"]

E = ReadingEvent
SIGN_AFTER_S = {"s1": 600.0, "s2": 1800.0, "s3": 3600.0}
SIGNER = {"s1": "liu.reader", "s2": "ma.reader", "s3": "liu.reader"}
ACK_AFTER_S = 120.0


def nearest_rank(values: list[float], p: float) -> float | None:
    """The ⌈p·n⌉-th smallest value."""
    ordered = sorted(values)
    return ordered[math.ceil(p * len(ordered)) - 1] if ordered else None


def _day(rw: ReadingWorld) -> tuple[datetime, dict[str, str]]:
    """Five ECGs received at once (two with a critical value); s1's critical is
    acknowledged after ACK_AFTER_S, s1-s3 signed after SIGN_AFTER_S by SIGNER, s4
    returned, s5 left waiting; s2's critical escalates unacknowledged."""
    start = rw.world.clock.now
    ids = {
        name: rw.stream_task(name, critical=critical).task.id
        for name, critical in (
            ("s1", ("VF",)),
            ("s2", ("PAUSE",)),
            ("s3", ()),
            ("s4", ()),
            ("s5", ()),
        )
    }
    [vf] = rw.repository.criticals_of(ids["s1"])
    rw.world.clock.now = start + timedelta(seconds=ACK_AFTER_S)
    rw.service.acknowledge(rw.world["li.doctor"], vf.value.id, "室颤，已知悉")
    rw.world.clock.now = start + timedelta(seconds=700)
    rw.service.step(rw.world["ma.reader"], ids["s4"], E.RETURN, reason="导联脱落，请重新采集")
    for name, after_s in SIGN_AFTER_S.items():
        reader = rw.world[SIGNER[name]]
        rw.world.clock.now = start + timedelta(seconds=after_s - 60)
        rw.service.step(reader, ids[name], E.CLAIM)
        rw.service.save_report(reader, ids[name], ["SR"], "")
        rw.world.clock.now = start + timedelta(seconds=after_s)
        rw.service.sign(reader, ids[name], rw.world.totp(SIGNER[name]))
    assert [c.value.code for c in rw.service.escalate_due()] == ["PAUSE"]
    return start, ids


def _stats(rw: ReadingWorld, username: str, by: ReadingStatsGroup) -> list[ReadingStatsRow]:
    start = rw.world.clock.now - timedelta(days=1)
    return list(
        reading_statistics(
            SqlReadingStatistics(rw.world.stores.engine),
            rw.world.service.statistics_scope,
            rw.world[username],
            since=start,
            until=rw.world.clock.now + timedelta(seconds=1),
            by=by,
        )
    )


def test_volume_and_turnaround_by_clinic(rw: ReadingWorld) -> None:
    _day(rw)
    [row] = _stats(rw, "zhao.coord", ReadingStatsGroup.CLINIC)
    signs = list(SIGN_AFTER_S.values())
    assert row == ReadingStatsRow(
        key="village-1",
        received=5,
        signed=3,
        returned=1,
        pending=1,
        sign_median_s=nearest_rank(signs, 0.5),
        sign_p90_s=nearest_rank(signs, 0.9),
        criticals=2,
        acknowledged=1,
        escalated=1,
        ack_median_s=ACK_AFTER_S,
        ack_p90_s=ACK_AFTER_S,
    )


def test_by_reader_and_by_month(rw: ReadingWorld) -> None:
    start, _ = _day(rw)
    rows = {r.key: r for r in _stats(rw, "zhao.coord", ReadingStatsGroup.READER)}
    assert sorted(rows) == ["", "liu.reader", "ma.reader"]
    liu = [SIGN_AFTER_S[n] for n, who in SIGNER.items() if who == "liu.reader"]
    assert (rows["liu.reader"].signed, rows["liu.reader"].sign_median_s) == (
        2,
        nearest_rank(liu, 0.5),
    )
    assert rows["liu.reader"].sign_p90_s == nearest_rank(liu, 0.9)
    assert (rows["liu.reader"].criticals, rows["liu.reader"].acknowledged) == (1, 1)
    assert (rows["ma.reader"].criticals, rows["ma.reader"].escalated) == (1, 1)
    assert rows["ma.reader"].ack_median_s is None
    unsigned = rows[""]  # the returned and the waiting ECG have no signer
    assert (unsigned.received, unsigned.returned, unsigned.pending) == (2, 1, 1)
    [month] = _stats(rw, "zhao.coord", ReadingStatsGroup.MONTH)
    assert month.key == start.strftime("%Y-%m")
    assert (month.received, month.criticals) == (5, 2)


def test_who_sees_what(rw: ReadingWorld) -> None:
    _day(rw)
    rw.world.add_person("far.auditor", "county-2", Role.AUDITOR)
    assert _stats(rw, "far.auditor", ReadingStatsGroup.CLINIC) == []
    assert [r.key for r in _stats(rw, "root", ReadingStatsGroup.CENTRE)] == ["county-1"]
    with pytest.raises(Forbidden):
        _stats(rw, "li.doctor", ReadingStatsGroup.CLINIC)
    with pytest.raises(Forbidden):
        _stats(rw, "liu.reader", ReadingStatsGroup.CLINIC)


def test_a_period_is_bounded(rw: ReadingWorld) -> None:
    stats = SqlReadingStatistics(rw.world.stores.engine)
    now = rw.world.clock.now
    for since, until in ((now, now), (now - timedelta(days=367), now)):
        with pytest.raises(InvalidInput, match="until"):
            reading_statistics(
                stats,
                rw.world.service.statistics_scope,
                rw.world["root"],
                since=since,
                until=until,
                by=ReadingStatsGroup.CLINIC,
            )
