"""Critical values over the real store (SQLite and PostgreSQL): raised from the engine's
codes or by a reader and told at once to the clinic's doctors and the centre's readers;
acknowledged by read-back only by someone told; escalated by the sweep level by level
with the test's clock, and never after acknowledgement or past the last level."""

from __future__ import annotations

import pytest

from consults.errors import Conflict, Forbidden, InvalidInput, NotFound
from consults.readings import CriticalState, NotNotified
from consults.repositories import PageRequest
from consults.transitions import TransitionNotAllowed
from tests.consults.test_reading_service_world import ReadingWorld, rw
from tests.pg import database

__all__ = ["database", "rw"]

C = CriticalState
TOLD = {"li.doctor", "sun.doctor", "liu.reader", "ma.reader"}


def test_the_engines_finding_is_told_at_once(rw: ReadingWorld) -> None:
    """A stream ending with PAUSE: one critical value, notified to the clinic's doctors
    and the centre's readers (a notice with the clinic and centre for the webhooks), due
    to escalate after the acknowledgement time; the task leads the worklist."""
    rw.stream_task("older", ago_s=3600)
    made = rw.stream_task("s1", critical=("PAUSE",))
    [found] = rw.repository.criticals_of(made.task.id)
    assert found.value.state is C.NOTIFIED
    assert found.value.code == "PAUSE"
    assert set(found.value.notified) == TOLD
    assert found.escalate_at == found.value.detected_at + rw.service.acknowledge_within
    [notice] = rw.notices.sent
    assert notice.kind == "critical.raised"
    assert notice.critical == found.value.id
    assert notice.usernames == TOLD
    assert notice.institutions == {"village-1", "county-1"}
    top = rw.service.worklist(rw.world["liu.reader"], PageRequest(limit=1)).items[0]
    assert top.task.id == made.task.id
    register = rw.service.criticals(rw.world["li.doctor"], PageRequest())
    assert [c.value.id for c in register.items] == [found.value.id]
    assert rw.service.criticals(rw.world["far.reader"], PageRequest()).total == 0


def test_only_someone_told_acknowledges_with_a_read_back(rw: ReadingWorld) -> None:
    """Another county's doctor: not found; a county doctor who sees the task but was not
    told: NotNotified; no read-back: refused; then the clinic's doctor acknowledges
    (who, when, what they understood kept); twice is 409. Each refusal is audited."""
    made = rw.stream_task("s1", critical=("VF",))
    [found] = rw.repository.criticals_of(made.task.id)
    cid = found.value.id
    with pytest.raises(NotFound):
        rw.service.acknowledge(rw.world["zhou.doctor"], cid, "室颤")
    with pytest.raises(NotNotified):
        rw.service.acknowledge(rw.world["heart.doctor"], cid, "室颤")
    with pytest.raises(InvalidInput, match="read_back"):
        rw.service.acknowledge(rw.world["li.doctor"], cid, "  ")
    rw.world.clock.advance(90)
    done = rw.service.acknowledge(rw.world["li.doctor"], cid, "室颤，李医生已知悉")
    assert done.value.state is C.ACKNOWLEDGED
    assert done.value.acknowledged_by == "li.doctor"
    assert done.value.acknowledged_at == rw.world.clock.now
    assert done.value.read_back == "室颤，李医生已知悉"
    assert done.escalate_at is None
    stored = rw.repository.critical(cid)
    assert stored is not None
    assert stored.value == done.value
    with pytest.raises(TransitionNotAllowed, match="acknowledged"):
        rw.service.acknowledge(rw.world["sun.doctor"], cid, "室颤")
    assert rw.actions(f"critical:{cid}") == [
        ("critical.raised", "ok"),
        ("critical.acknowledge", "denied"),
        ("critical.acknowledge", "denied"),
        ("critical.acknowledge", "ok"),
        ("critical.acknowledge", "denied"),
    ]
    assert rw.notices.sent[-1].kind == "critical.acknowledge"
    # Acknowledged: the sweep leaves it alone however late it is.
    rw.world.clock.advance(3600)
    assert rw.service.escalate_due() == []


def test_an_unacknowledged_value_escalates_level_by_level(rw: ReadingWorld) -> None:
    """Nothing before the deadline; then the clinic's doctors again, then the centre's
    coordinator (who may then acknowledge), then the phone gateway, then nothing more;
    each escalation audited and noticed with its level."""
    made = rw.stream_task("s1", critical=("STEMI",))
    [found] = rw.repository.criticals_of(made.task.id)
    cid = found.value.id
    within = rw.service.acknowledge_within.total_seconds()
    rw.world.clock.advance(within - 1)
    assert rw.service.escalate_due() == []
    levels: list[str | None] = []
    for _ in range(3):
        rw.world.clock.advance(within)
        [done] = rw.service.escalate_due()
        assert done.value.state is C.ESCALATED
        assert rw.service.escalate_due() == []  # once per level
        levels.append(rw.notices.sent[-1].level)
        if len(levels) == 2:
            assert "zhao.coord" in done.value.notified
            assert rw.notices.sent[-1].usernames == {"zhao.coord"}
    assert levels == ["clinic_doctors", "centre_coordinators", "phone_gateway"]
    assert done.escalate_at is None
    rw.world.clock.advance(10 * within)
    assert rw.service.escalate_due() == []
    assert [a for a, _ in rw.actions(f"critical:{cid}")] == ["critical.raised"] + [
        "critical.escalate"
    ] * 3
    ack = rw.service.acknowledge(rw.world["zhao.coord"], cid, "急性心梗，已电话通知")
    assert ack.value.state is C.ACKNOWLEDGED


def test_a_reader_marks_a_critical_finding(rw: ReadingWorld) -> None:
    """A reader raises VT on a plain task: told at once, the task becomes critical and
    leads the worklist; the same finding twice is a conflict; a clinic doctor may not
    raise one; an unknown code is refused."""
    old = rw.stream_task("old", ago_s=3600)
    made = rw.stream_task("s1")
    reader = rw.world["liu.reader"]
    found = rw.service.raise_critical(reader, made.task.id, "VT")
    assert found.raised_by == "liu.reader"
    assert found.value.state is C.NOTIFIED
    assert set(found.value.notified) == TOLD
    task = rw.repository.get(made.task.id)
    assert task is not None
    assert task.task.critical == ("VT",)
    order = rw.service.worklist(reader, PageRequest())
    assert [r.task.id for r in order.items] == [made.task.id, old.task.id]
    with pytest.raises(Conflict):
        rw.service.raise_critical(rw.world["ma.reader"], made.task.id, "VT")
    with pytest.raises(Forbidden):
        rw.service.raise_critical(rw.world["li.doctor"], made.task.id, "VF")
    with pytest.raises(InvalidInput):
        rw.service.raise_critical(reader, made.task.id, "HEADACHE")
    assert rw.service.critical(rw.world["li.doctor"], found.value.id) == found
    with pytest.raises(NotFound):
        rw.service.critical(rw.world["far.reader"], found.value.id)


def test_the_engine_finds_a_critical_value_after_the_task_is_made(rw: ReadingWorld) -> None:
    """The record's re-annotation finds STEMI on a stream whose task exists: raised by
    the engine and told; the same finding again, or a stream without a task, is None."""
    made = rw.stream_task("s1")
    found = rw.service.engine_critical("s1", "STEMI")
    assert found is not None
    assert found.raised_by is None
    assert found.value.state is C.NOTIFIED
    assert rw.notices.sent[-1].kind == "critical.raised"
    assert rw.service.engine_critical("s1", "STEMI") is None
    assert rw.service.engine_critical("nothing", "VF") is None
    task = rw.repository.get(made.task.id)
    assert task is not None
    assert task.task.critical == ("STEMI",)
