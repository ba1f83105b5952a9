"""Supervision statistics computed in SQL, on SQLite and PostgreSQL: counts by outcome,
acceptance and signing turnaround (nearest-rank median and p90) against the same
numbers computed in Python from the stored consults, grouping by clinic, level and
month, the scope of an auditor, and referrals sent, received and referred back."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from sqlalchemy import select

from consults.consult_repositories import StatsGroup
from consults.directory import Role
from consults.errors import Forbidden, InvalidInput
from consults.lifecycle import ConsultEvent, Priority
from consults.referrals import ReferralEvent
from store.consult_schema import consults
from tests.consults.test_service import TEXT
from tests.consults.test_service_world import World, world

__all__ = ["world"]

E = ConsultEvent


def nearest_rank(values: list[float], p: float) -> float | None:
    """The ⌈p·n⌉-th smallest value."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(p * len(ordered)) - 1]


def run_consult(
    world: World, username: str, accept_after_s: float | None, sign_after_s: float | None
) -> str:
    """A consult accepted and signed that many seconds after submission (or not)."""
    service = world.service
    made = service.create(world[username], world.request(priority=Priority.ROUTINE))
    consult_id = made.record.consult.id
    if accept_after_s is None:
        return consult_id
    centre_coordinator = "zhao.coord" if made.record.consult.centre == "county-1" else "wu.coord"
    expert = "wang.expert" if made.record.consult.centre == "county-1" else "qian.expert"
    start = world.clock.now
    service.step(world[centre_coordinator], consult_id, E.ASSIGN, experts=[expert])
    world.clock.now = start + timedelta(seconds=accept_after_s)
    service.step(world[expert], consult_id, E.ACCEPT)
    if sign_after_s is not None:
        service.step(
            world[expert], consult_id, E.SCHEDULE, start=world.clock.now + timedelta(minutes=5)
        )
        service.step(world[expert], consult_id, E.START)
        service.save_draft(world[expert], consult_id, TEXT)
        world.clock.now = start + timedelta(seconds=sign_after_s)
        service.sign(world[expert], consult_id, world.totp(expert))
    world.clock.now = start + timedelta(seconds=max(accept_after_s, sign_after_s or 0) + 31)
    return consult_id


def test_counts_and_turnaround_match_the_stored_consults(world: World) -> None:
    """Five accepted (three signed), one declined, one cancelled, one overdue: the SQL
    answers the counts and the nearest-rank median and p90 Python finds in the store."""
    since = world.clock.now - timedelta(days=1)
    for accept_s, sign_s in ((100, 1000), (300, 2000), (50, None), (700, 4000), (20, None)):
        run_consult(world, "li.doctor", accept_s, sign_s)
    service = world.service
    declined = run_consult(world, "sun.doctor", None, None)
    service.step(world["zhao.coord"], declined, E.ASSIGN, experts=["chen.expert"])
    service.step(world["chen.expert"], declined, E.DECLINE, reason="不在本专业")
    cancelled = run_consult(world, "li.doctor", None, None)
    service.step(world["li.doctor"], cancelled, E.CANCEL, reason="患者已转院")
    run_consult(world, "li.doctor", None, None)  # stays submitted
    world.clock.advance(25 * 3600)  # past every routine deadline
    until = world.clock.now
    auditor = world.add_person("gao.auditor", "city-1", Role.AUDITOR)
    rows, _ = service.statistics(auditor, since=since, until=until, by=StatsGroup.CLINIC)
    records = [r for r in (world.repository.get(i) for i in _ids(world)) if r is not None]
    assert [row.key for row in rows] == ["village-1"]
    [row] = rows
    assert row.total == len(records) == 8
    accepted = [
        (r.consult.accepted_at - r.consult.submitted_at).total_seconds()
        for r in records
        if r.consult.accepted_at and r.consult.submitted_at
    ]
    signed = [
        (r.consult.signed_at - r.consult.submitted_at).total_seconds()
        for r in records
        if r.consult.signed_at and r.consult.submitted_at
    ]
    assert row.accepted == len(accepted) == 5
    assert row.signed == len(signed) == 3
    assert row.declined == 1
    assert row.cancelled == 1
    assert row.expired == 0
    assert row.overdue == 2  # the declined one and the one still submitted
    assert row.accept_median_s == pytest.approx(nearest_rank(accepted, 0.5), abs=0.01)
    assert row.accept_p90_s == pytest.approx(nearest_rank(accepted, 0.9), abs=0.01)
    assert row.sign_median_s == pytest.approx(nearest_rank(signed, 0.5), abs=0.01)
    assert row.sign_p90_s == pytest.approx(nearest_rank(signed, 0.9), abs=0.01)
    by_month, _ = service.statistics(auditor, since=since, until=until, by=StatsGroup.MONTH)
    months = {r.consult.submitted_at.strftime("%Y-%m") for r in records if r.consult.submitted_at}
    assert {m.key for m in by_month} == months
    assert sum(m.total for m in by_month) == 8


def _ids(world: World) -> list[str]:
    with world.stores.engine.connect() as conn:
        return [row.id for row in conn.execute(select(consults.c.id))]


def test_scope_level_and_referrals(world: World) -> None:
    """A county coordinator sees their county's consults only; grouped by level the
    village and the township are apart for the deployment admin; referrals count on
    both sides and the referral back."""
    since = world.clock.now - timedelta(hours=1)
    run_consult(world, "li.doctor", 60, None)
    run_consult(world, "zhou.doctor", 120, None)
    service = world.service
    start = world.clock.now + timedelta(days=1)
    slot = service.publish_slot(world["heart.doctor"], "cardio", start, start + timedelta(hours=1))
    referral = service.refer(world["li.doctor"], slot.id, "急诊 PCI")
    receiver = world["heart.doctor"]
    for event, text in (
        (ReferralEvent.ACCEPT, None),
        (ReferralEvent.ARRIVE, None),
        (ReferralEvent.REFER_BACK, "好转出院"),
    ):
        service.referral_step(receiver, referral.id, event, text)
    until = world.clock.now + timedelta(seconds=1)
    mine, referrals = service.statistics(
        world["zhao.coord"], since=since, until=until, by=StatsGroup.CENTRE
    )
    assert [(r.key, r.total) for r in mine] == [("county-1", 1)]
    assert [(r.institution, r.sent, r.received, r.referred_back) for r in referrals] == [
        ("county-1", 0, 1, 1),
        ("village-1", 1, 0, 0),
    ]
    levels, _ = service.statistics(world["root"], since=since, until=until, by=StatsGroup.LEVEL)
    assert {(r.key, r.total) for r in levels} == {("village", 1), ("township", 1)}
    with pytest.raises(Forbidden):
        service.statistics(world["li.doctor"], since=since, until=until, by=StatsGroup.CLINIC)
    with pytest.raises(InvalidInput):
        service.statistics(world["root"], since=until, until=since, by=StatsGroup.CLINIC)
