"""The consult service over the real store (SQLite and PostgreSQL): every transition of
the table taken by a party it allows and refused otherwise, who sees a consult, the
worklists, expiry and escalation with the test's clock, and the audit row of each step
and of each refusal."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from consults.consult_repositories import Queue, StaleConsult
from consults.directory import Role
from consults.errors import Forbidden, InvalidInput, NotFound
from consults.lifecycle import (
    TRANSITIONS,
    ConsultEvent,
    ConsultState,
    Mode,
    Party,
    Priority,
    apply,
    parties,
)
from consults.opinions import OpinionText
from consults.repositories import AuditEvent, PageRequest
from consults.service import actor_of
from consults.transitions import NotPermitted, TransitionNotAllowed
from store.consult_schema import consults
from tests.consults.test_service_world import World, world
from tests.pg import database

__all__ = ["database", "world"]

S, E = ConsultState, ConsultEvent
# Who acts for each party (the requester is also a clinic doctor; sun.doctor is only one).
ACTOR_OF_PARTY = {
    Party.REQUESTER: "li.doctor",
    Party.CLINIC_DOCTOR: "sun.doctor",
    Party.COORDINATOR: "zhao.coord",
    Party.EXPERT: "chen.expert",
    Party.LEAD_EXPERT: "wang.expert",
}
INSIDERS = ("li.doctor", "sun.doctor", "zhao.coord", "wang.expert", "chen.expert")
TEXT = OpinionText(
    findings="窦性心律，V1-V4 ST 段抬高 0.3 mV。",
    diagnosis="急性前壁 ST 段抬高型心肌梗死",
    recommendations="立即转诊至县医院胸痛中心行急诊 PCI。",
)
# The path from a new request to each state (the mode it needs, the steps).
PATHS: dict[ConsultState, tuple[Mode, tuple[ConsultEvent, ...]]] = {
    S.SUBMITTED: (Mode.REALTIME, ()),
    S.ASSIGNED: (Mode.REALTIME, (E.ASSIGN,)),
    S.DECLINED: (Mode.REALTIME, (E.ASSIGN, E.DECLINE)),
    S.ACCEPTED: (Mode.REALTIME, (E.ASSIGN, E.ACCEPT)),
    S.SCHEDULED: (Mode.REALTIME, (E.ASSIGN, E.ACCEPT, E.SCHEDULE)),
    S.IN_CONSULT: (Mode.REALTIME, (E.ASSIGN, E.ACCEPT, E.SCHEDULE, E.START)),
    S.REPORTING: (Mode.REALTIME, (E.ASSIGN, E.ACCEPT, E.SCHEDULE, E.START, E.FINISH)),
    S.REPORTED: (Mode.ASYNC, (E.ASSIGN, E.ACCEPT, E.REVIEW, E.SIGN)),
    S.CLOSED: (Mode.ASYNC, (E.ASSIGN, E.ACCEPT, E.REVIEW, E.SIGN, E.CLOSE)),
    S.CANCELLED: (Mode.REALTIME, (E.CANCEL,)),
    S.EXPIRED: (Mode.REALTIME, (E.EXPIRE,)),
}


def take(world: World, consult_id: str, event: ConsultEvent, username: str) -> ConsultState:
    """Take ``event`` as ``username`` with what it needs; the state after."""
    person = world[username]
    service = world.service
    if event is E.SIGN:
        service.save_draft(person, consult_id, TEXT)
        world.clock.advance(30)  # a fresh TOTP step
        return service.sign(person, consult_id, world.totp(username)).record.consult.state
    if event is E.EXPIRE:
        world.clock.advance(service.policy.expire_after_s[Priority.URGENT] + 1)
        assert service.expire_due() == 1
        return service.get(person, consult_id).record.consult.state
    view = service.step(
        person,
        consult_id,
        event,
        reason="本院无相关专科" if event in (E.DECLINE, E.CANCEL) else None,
        experts=["wang.expert", "chen.expert"] if event is E.ASSIGN else None,
        start=world.clock.now + timedelta(hours=1) if event is E.SCHEDULE else None,
    )
    return view.record.consult.state


def attempt(world: World, consult_id: str, event: ConsultEvent, username: str) -> None:
    """Try ``event`` as ``username`` with a well-formed body (expected to be refused)."""
    person = world[username]
    if event is E.SIGN:
        world.service.sign(person, consult_id, "000000")
    else:
        world.service.step(
            person,
            consult_id,
            event,
            reason="x",
            experts=["wang.expert"],
            start=world.clock.now + timedelta(hours=2),
        )


def actor_for(world: World, consult_id: str, event: ConsultEvent, state: ConsultState) -> str:
    rule = TRANSITIONS[state][event]
    for party, username in ACTOR_OF_PARTY.items():
        if party in rule.parties:
            return username
    raise AssertionError(f"no actor for {event}")


def reach(world: World, state: ConsultState) -> str:
    """A new consult brought to ``state`` through the service; its id."""
    mode, steps = PATHS[state]
    view = world.service.create(world["li.doctor"], world.request(mode=mode))
    consult_id = view.record.consult.id
    at = S.SUBMITTED
    for event in steps:
        username = "li.doctor" if event is E.EXPIRE else actor_for(world, consult_id, event, at)
        at = take(world, consult_id, event, username)
    assert at is state
    return consult_id


def test_a_request_is_submitted_to_the_centre_above_the_clinic(world: World) -> None:
    """A village doctor's request goes to the county centre (it has coordinators),
    submitted, deadlines set from its priority, its proposed times kept, the national id
    sealed and shown masked."""
    proposed = (world.clock.now + timedelta(hours=3), world.clock.now + timedelta(days=1))
    view = world.service.create(world["li.doctor"], world.request(proposed_times=proposed))
    record = view.record
    assert record.consult.state is S.SUBMITTED
    stored = world.repository.get(record.consult.id)
    assert stored is not None
    assert stored.request.proposed_times == proposed
    assert record.consult.centre == "county-1"
    assert record.consult.clinic == "village-1"
    assert record.accept_due == record.consult.submitted_at + timedelta(hours=2)
    assert record.request.national_id_sealed is not None
    assert "11010519491231002X" not in record.request.national_id_sealed
    assert view.national_id_masked == "110105********002X"
    assert world.actions(record.consult.id) == [("consult.submit", "ok")]
    assert [n.kind for n in world.notices.sent] == ["consult.submit"]
    assert world.notices.sent[0].coordinators_of == "county-1"


def test_only_a_clinic_doctor_requests(world: World) -> None:
    """An expert or coordinator cannot make a request (403), and nothing is stored."""
    for username in ("wang.expert", "zhao.coord"):
        with pytest.raises(Forbidden):
            world.service.create(world[username], world.request())
    with world.stores.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(consults)).scalar_one() == 0


@pytest.mark.parametrize("state", list(PATHS))
def test_every_transition_allowed_and_refused(world: World, state: ConsultState) -> None:
    """From each state: every event the table has is taken by a party it allows (the
    state after is the table's) and refused with 403 to every insider it does not
    allow; every event it lacks is refused with 409 to everyone. Each refusal changes
    nothing and leaves a ``denied`` audit row."""
    consult_id = reach(world, state)
    mode = PATHS[state][0]
    rules = TRANSITIONS[state]
    for event in ConsultEvent:
        if event is E.EXPIRE:
            continue
        rule = rules.get(event)
        allowed = rule is not None and mode in rule.modes
        for username in INSIDERS:
            person = world[username]
            before = world.repository.get(consult_id)
            assert before is not None
            mine = parties(before.consult, actor_of(person))
            if allowed and rule is not None and rule.parties & mine:
                continue
            rows = len(world.audit(consult_id))
            expected = NotPermitted if allowed else TransitionNotAllowed
            with pytest.raises(expected) as refused:
                attempt(world, consult_id, event, username)
            if isinstance(refused.value, TransitionNotAllowed):
                assert refused.value.state is state
                assert refused.value.event is event
            after = world.repository.get(consult_id)
            assert after == before, f"{username} {event.value} changed the consult"
            new_rows = world.audit(consult_id)[rows:]
            assert [(r.action, r.detail_object()["outcome"]) for r in new_rows] == [
                (f"consult.{event.value}", "denied")
            ]
    # Every allowed event, taken by a party it names, on a fresh consult in this state.
    for event, rule in rules.items():
        if event is E.EXPIRE or mode not in rule.modes:
            continue
        fresh = reach(world, state)
        username = actor_for(world, fresh, event, state)
        assert take(world, fresh, event, username) is rule.to
        assert world.actions(fresh)[-1] == (f"consult.{event.value}", "ok")


def test_the_async_path_reviews_without_a_room(world: World) -> None:
    """An asynchronous consult goes accepted → reporting by ``review``; ``schedule``
    is refused (409) to it, as ``review`` is to a realtime one."""
    consult_id = reach(world, S.ACCEPTED)  # realtime
    with pytest.raises(TransitionNotAllowed):
        world.service.step(world["wang.expert"], consult_id, E.REVIEW)
    view = world.service.create(world["li.doctor"], world.request(mode=Mode.ASYNC))
    async_id = view.record.consult.id
    take(world, async_id, E.ASSIGN, "zhao.coord")
    take(world, async_id, E.ACCEPT, "chen.expert")
    with pytest.raises(TransitionNotAllowed):
        world.service.step(
            world["wang.expert"], async_id, E.SCHEDULE, start=world.clock.now + timedelta(hours=1)
        )
    assert take(world, async_id, E.REVIEW, "wang.expert") is S.REPORTING


def test_bad_bodies_change_nothing(world: World) -> None:
    """A decline without reason, an assignment of a non-expert or of nobody, a start in
    the past: 400, nothing changed."""
    consult_id = reach(world, S.ASSIGNED)
    before = world.repository.get(consult_id)
    service = world.service
    with pytest.raises(InvalidInput):
        service.step(world["wang.expert"], consult_id, E.DECLINE, reason="  ")
    with pytest.raises(InvalidInput):
        service.step(world["zhao.coord"], consult_id, E.ASSIGN, experts=["li.doctor"])
    with pytest.raises(InvalidInput):
        service.step(world["zhao.coord"], consult_id, E.ASSIGN, experts=[])
    with pytest.raises(InvalidInput):
        service.step(world["zhao.coord"], consult_id, E.ASSIGN, experts=["nobody.here"])
    assert world.repository.get(consult_id) == before
    take(world, consult_id, E.ACCEPT, "wang.expert")
    with pytest.raises(InvalidInput):
        service.step(
            world["wang.expert"],
            consult_id,
            E.SCHEDULE,
            start=world.clock.now - timedelta(minutes=1),
        )
    record = world.repository.get(consult_id)
    assert record is not None
    assert record.consult.state is S.ACCEPTED


def test_another_institution_does_not_see_the_consult(world: World) -> None:
    """People of another county get 404 for reading or any step, as for a consult that
    does not exist; nothing is changed."""
    consult_id = reach(world, S.ASSIGNED)
    before = world.repository.get(consult_id)
    for username in ("zhou.doctor", "qian.expert", "wu.coord"):
        person = world[username]
        with pytest.raises(NotFound):
            world.service.get(person, consult_id)
        with pytest.raises(NotFound):
            world.service.step(person, consult_id, E.ACCEPT)
        with pytest.raises(NotFound):
            world.service.sign(person, consult_id, "123456")
    with pytest.raises(NotFound):
        world.service.get(world["li.doctor"], "no-such-consult")
    assert world.repository.get(consult_id) == before


def test_a_stale_step_is_refused(world: World) -> None:
    """Two coordinators read the consult; the first assignment wins, the second (from the
    stale copy) is refused by the store's compare-and-set, nothing written."""
    consult_id = reach(world, S.SUBMITTED)
    before = world.repository.get(consult_id)
    assert before is not None
    take(world, consult_id, E.ASSIGN, "zhao.coord")
    moved = apply(
        before.consult,
        E.ASSIGN,
        actor_of(world["zhao.coord"]),
        world.clock.now,
        experts=("chen.expert",),
    )
    with pytest.raises(StaleConsult):
        world.repository.transition(
            before,
            replace(before, consult=moved),
            AuditEvent(at_s=world.clock.epoch(), action="consult.assign"),
        )
    record = world.repository.get(consult_id)
    assert record is not None
    assert record.consult.experts == ("wang.expert", "chen.expert")


def test_expiry_and_escalation_follow_the_clock(world: World) -> None:
    """An emergency request not accepted in 10 min is overdue (first in the coordinator's
    queue, escalated once, with a notice to the centre's coordinators); at 30 min the
    server expires it. A routine one beside it is neither."""
    service = world.service
    routine = service.create(world["li.doctor"], world.request(priority=Priority.ROUTINE))
    world.clock.advance(60)
    emergency = service.create(world["li.doctor"], world.request(priority=Priority.EMERGENCY))
    rid, eid = routine.record.consult.id, emergency.record.consult.id
    coordinator = world["zhao.coord"]
    page = PageRequest(limit=10)
    assert service.escalate_overdue() == []
    assert [r.consult.id for r in service.worklist(coordinator, Queue.UNTRIAGED, page).items] == [
        eid,
        rid,
    ]
    assert service.worklist(coordinator, Queue.OVERDUE, page).total == 0
    world.clock.advance(10 * 60 + 1)
    overdue = service.worklist(coordinator, Queue.OVERDUE, page)
    assert [r.consult.id for r in overdue.items] == [eid]
    escalated = service.escalate_overdue()
    assert [r.consult.id for r in escalated] == [eid]
    assert service.escalate_overdue() == []  # once
    notice = world.notices.sent[-1]
    assert (notice.kind, notice.consult, notice.coordinators_of) == (
        "consult.escalate",
        eid,
        "county-1",
    )
    assert service.expire_due() == 0
    world.clock.advance(20 * 60)
    assert service.expire_due() == 1
    assert service.get(coordinator, eid).record.consult.state is S.EXPIRED
    assert service.get(coordinator, rid).record.consult.state is S.SUBMITTED
    assert world.actions(eid) == [
        ("consult.submit", "ok"),
        ("consult.escalate", "ok"),
        ("consult.expire", "ok"),
        ("consult.viewed", "ok"),  # the coordinator's read just above
    ]
    assert [r.actor for r in world.audit(eid)][1:3] == ["system", "system"]


def test_worklists_by_role(world: World) -> None:
    """The doctor's own requests and the clinic's, the expert's assigned consults by
    deadline, with a state filter and literal search; a queue of another role is 403."""
    service = world.service
    first = reach(world, S.ASSIGNED)
    second = service.create(
        world["sun.doctor"], world.request(priority=Priority.EMERGENCY)
    ).record.consult.id
    page = PageRequest(limit=50)
    mine = service.worklist(world["li.doctor"], Queue.MINE, page)
    assert [r.consult.id for r in mine.items] == [first]
    clinic = service.worklist(world["li.doctor"], Queue.CLINIC, page)
    assert {r.consult.id for r in clinic.items} == {first, second}
    assigned = service.worklist(world["chen.expert"], Queue.ASSIGNED, page)
    assert [r.consult.id for r in assigned.items] == [first]
    submitted = service.worklist(
        world["zhao.coord"], Queue.UNTRIAGED, page, states=frozenset({S.SUBMITTED})
    )
    assert [r.consult.id for r in submitted.items] == [second]
    found = service.worklist(world["li.doctor"], Queue.CLINIC, page, search="mz-2026")
    assert found.total == 2
    assert service.worklist(world["li.doctor"], Queue.CLINIC, page, search="50%_").total == 0
    with pytest.raises(Forbidden):
        service.worklist(world["li.doctor"], Queue.UNTRIAGED, page)
    with pytest.raises(Forbidden):
        service.worklist(world["zhao.coord"], Queue.ASSIGNED, page)


def test_admins_see_no_consult_and_experts_come_from_serving_institutions(world: World) -> None:
    """The centre's admin does not see its consults (404: no patient data by that role
    alone); an expert of another county cannot be assigned (400), nothing changed."""
    consult_id = reach(world, S.SUBMITTED)
    admin = world.add_person("county.admin", "county-1", Role.ADMIN)
    with pytest.raises(NotFound):
        world.service.get(admin, consult_id)
    before = world.repository.get(consult_id)
    with pytest.raises(InvalidInput, match="serves"):
        world.service.step(world["zhao.coord"], consult_id, E.ASSIGN, experts=["qian.expert"])
    assert world.repository.get(consult_id) == before


def test_reminders_before_the_deadline_and_the_start(world: World) -> None:
    """An emergency request not accepted with a quarter of its 10 minutes left warns the
    coordinators and experts once (an assignment does not arm it again); a scheduled
    consult reminds both sides 15 minutes before its start, once, and again after it is
    moved."""
    service = world.service
    consult_id = service.create(
        world["li.doctor"], world.request(priority=Priority.EMERGENCY)
    ).record.consult.id
    world.clock.advance(7 * 60)
    assert service.remind() == []
    service.step(world["zhao.coord"], consult_id, E.ASSIGN, experts=["wang.expert"])
    world.clock.advance(31)
    [warning] = service.remind()
    assert (warning.kind, warning.coordinators_of, warning.usernames) == (
        "consult.due_soon",
        "county-1",
        frozenset({"wang.expert"}),
    )
    assert service.remind() == []
    service.step(world["wang.expert"], consult_id, E.ACCEPT)
    start = world.clock.now + timedelta(hours=1)
    service.step(world["wang.expert"], consult_id, E.SCHEDULE, start=start)
    world.clock.advance(44 * 60)
    assert service.remind() == []
    world.clock.advance(2 * 60)
    [reminder] = service.remind()
    assert reminder.kind == "consult.starting"
    assert reminder.usernames == {"li.doctor", "wang.expert"}
    assert service.remind() == []
    later = start + timedelta(hours=2)
    service.step(world["wang.expert"], consult_id, E.SCHEDULE, start=later)
    world.clock.now = later - timedelta(minutes=14)
    assert [n.kind for n in service.remind()] == ["consult.starting"]
    actions = [a for a, _ in world.actions(consult_id)]
    assert actions.count("consult.due_soon") == 1
    assert actions.count("consult.starting") == 2
