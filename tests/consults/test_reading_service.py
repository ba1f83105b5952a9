"""The reading service over the real store (SQLite and PostgreSQL): a task for each
finished stream, the worklist's order, filters and pages, claim and release (two readers
racing: one wins), the draft, signing with the second factor and Ed25519, amending,
returning, who sees a task, and the audit row of each step and each refusal."""

from __future__ import annotations

import threading

import pytest

from consults.errors import ConsultsError, InvalidInput, NotFound, TotpRequired
from consults.reading_repositories import StaleReading
from consults.reading_service import DOCUMENT_KIND
from consults.readings import ClaimedByAnother, ReadingEvent, ReadingState
from consults.repositories import PageRequest
from consults.signatures import digest, verify
from consults.transitions import NotPermitted, TransitionNotAllowed
from tests.consults.test_reading_service_world import ReadingWorld, rw
from tests.pg import database

__all__ = ["database", "rw"]

E, S = ReadingEvent, ReadingState


def test_a_finished_stream_becomes_one_task_of_the_centre(rw: ReadingWorld) -> None:
    """The task goes to the county centre, new; the hook run twice makes one task; the
    creation is audited with the clinic and the patient."""
    made = rw.stream_task("s1")
    again = rw.stream_task("s1")
    assert again.task.id == made.task.id
    assert made.task.centre == "county-1"
    assert made.task.state is S.NEW
    assert made.top_statements == ("SR", "STE_ANT")
    assert rw.actions(f"reading:{made.task.id}") == [("reading.created", "ok")]
    reader = rw.world["liu.reader"]
    view = rw.service.get(reader, made.task.id)
    assert view.allowed == (E.CLAIM, E.RETURN)


def test_the_worklist_is_critical_first_then_stat_then_oldest(rw: ReadingWorld) -> None:
    """Order by worklist_key whatever the arrival order; filters by state, clinic and
    reader; pages; another county's reader sees nothing of it."""
    plain_old = rw.stream_task("old", ago_s=600)
    plain_new = rw.stream_task("new", ago_s=10)
    stat = rw.stream_task("stat", stat=True, ago_s=5)
    critical = rw.stream_task("crit", critical=("PAUSE",), ago_s=1)
    reader = rw.world["liu.reader"]
    page = rw.service.worklist(reader, PageRequest(limit=10))
    expected = [critical, stat, plain_old, plain_new]
    assert [r.task.id for r in page.items] == [r.task.id for r in expected]
    assert page.total == 4
    second = rw.service.worklist(reader, PageRequest(limit=2, offset=2))
    assert [r.task.id for r in second.items] == [plain_old.task.id, plain_new.task.id]
    rw.service.step(reader, stat.task.id, E.CLAIM)
    claimed = rw.service.worklist(reader, PageRequest(), states=frozenset({S.CLAIMED}))
    assert [r.task.id for r in claimed.items] == [stat.task.id]
    mine = rw.service.worklist(reader, PageRequest(), reader="liu.reader")
    assert [r.task.id for r in mine.items] == [stat.task.id]
    new = rw.service.worklist(reader, PageRequest(), states=frozenset({S.NEW}))
    assert stat.task.id not in [r.task.id for r in new.items]
    assert rw.service.worklist(reader, PageRequest(), clinic="village-1").total == 4
    assert rw.service.worklist(reader, PageRequest(), clinic="town-2").total == 0
    assert rw.service.worklist(rw.world["far.reader"], PageRequest()).total == 0
    # The clinic's doctor sees the clinic's ECGs too (the clinic serves itself).
    assert rw.service.worklist(rw.world["li.doctor"], PageRequest()).total == 4


def test_who_sees_a_task(rw: ReadingWorld) -> None:
    """Another county's reader and doctor get NotFound; the clinic's doctor sees it but
    may not claim it (NotPermitted, audited)."""
    made = rw.stream_task("s1")
    for outsider in ("far.reader", "zhou.doctor", "root"):
        with pytest.raises(NotFound):
            rw.service.get(rw.world[outsider], made.task.id)
        with pytest.raises(NotFound):
            rw.service.step(rw.world[outsider], made.task.id, E.CLAIM)
    doctor = rw.world["li.doctor"]
    assert rw.service.get(doctor, made.task.id).allowed == ()
    with pytest.raises(NotPermitted):
        rw.service.step(doctor, made.task.id, E.CLAIM)
    assert ("reading.claim", "denied") in rw.actions(f"reading:{made.task.id}")


def test_two_readers_claiming_at_once_exactly_one_wins(rw: ReadingWorld) -> None:
    """Two threads claim the same new task: one succeeds, the other is refused (changed
    meanwhile, or claimed by the winner); the task names the winner."""
    made = rw.stream_task("race")
    barrier = threading.Barrier(2)
    won: list[str] = []
    lost: list[ConsultsError] = []

    def claim(username: str) -> None:
        barrier.wait()
        try:
            rw.service.step(rw.world[username], made.task.id, E.CLAIM)
            won.append(username)
        except (StaleReading, ClaimedByAnother, TransitionNotAllowed) as exc:
            lost.append(exc)

    threads = [threading.Thread(target=claim, args=(u,)) for u in ("liu.reader", "ma.reader")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert len(lost) == 1
    found = rw.repository.get(made.task.id)
    assert found is not None
    assert found.task.state is S.CLAIMED
    assert found.task.claimant == won[0]
    assert found.revision == 1


def test_a_second_reader_is_blocked_by_the_claim(rw: ReadingWorld) -> None:
    """ma.reader cannot claim, edit, sign or release liu.reader's task: refused naming
    the claimant, audited, nothing changed; the coordinator may release it."""
    made = rw.stream_task("s1")
    liu, ma = rw.world["liu.reader"], rw.world["ma.reader"]
    rw.service.step(liu, made.task.id, E.CLAIM)
    with pytest.raises(ClaimedByAnother, match=r"liu\.reader"):
        rw.service.step(ma, made.task.id, E.CLAIM)
    with pytest.raises(ClaimedByAnother):
        rw.service.save_report(ma, made.task.id, ["SR"], "")
    with pytest.raises(ClaimedByAnother):
        rw.service.step(ma, made.task.id, E.RELEASE)
    with pytest.raises(ClaimedByAnother):
        rw.service.sign(ma, made.task.id, rw.world.totp("ma.reader"))
    found = rw.repository.get(made.task.id)
    assert found is not None
    assert found.task.claimant == "liu.reader"
    assert found.revision == 1
    assert rw.repository.report(made.task.id) is None
    denied = [a for a, outcome in rw.actions(f"reading:{made.task.id}") if outcome == "denied"]
    assert denied == ["reading.claim", "reading.edit", "reading.release", "reading.sign"]
    released = rw.service.step(rw.world["zhao.coord"], made.task.id, E.RELEASE)
    assert released.record.task.state is S.NEW
    assert released.record.task.claimant is None
    assert rw.service.step(ma, made.task.id, E.CLAIM).record.task.claimant == "ma.reader"


def test_draft_sign_amend_sign(rw: ReadingWorld) -> None:
    """The claimant saves a report (unknown codes refused), signing without the second
    factor is refused and audited, with it the version verifies with the signer's key on
    record; a signed report cannot be edited; an amendment is version 2 naming the
    digest of version 1; the clinic's doctors hear of each signature."""
    made = rw.stream_task("s1", critical=("STEMI",))
    reader = rw.world["liu.reader"]
    task_id = made.task.id
    with pytest.raises(TransitionNotAllowed, match="sign a reading in state new"):
        rw.service.sign(reader, task_id, rw.world.totp("liu.reader"))
    rw.service.step(reader, task_id, E.CLAIM)
    with pytest.raises(InvalidInput, match="report"):
        rw.service.sign(reader, task_id, rw.world.totp("liu.reader"))
    with pytest.raises(InvalidInput, match="NOPE"):
        rw.service.save_report(reader, task_id, ["SR", "NOPE"], "")
    report = rw.service.save_report(reader, task_id, ["SR", "STE_ANT"], "急性前壁心肌梗死")
    assert report.statements == ("SR", "STE_ANT")
    assert rw.service.get(reader, task_id).record.task.state is S.DRAFT
    with pytest.raises(TotpRequired):
        rw.service.sign(reader, task_id, "000000")
    assert rw.repository.get(task_id).task.state is S.DRAFT  # type: ignore[union-attr]
    rw.world.clock.advance(30)
    signed = rw.service.sign(reader, task_id, rw.world.totp("liu.reader"))
    assert signed.record.task.state is S.SIGNED
    assert signed.record.task.signer == "liu.reader"
    assert signed.record.task.version == 1
    [v1] = rw.service.versions(rw.world["li.doctor"], task_id)
    doc = v1.document
    assert doc["kind"] == DOCUMENT_KIND
    assert doc["version"] == 1
    assert doc["corrects"] is None
    assert doc["report"] == {"statements": ["SR", "STE_ANT"], "text": "急性前壁心肌梗死"}
    assert doc["critical"] == ["STEMI"]
    assert doc["stream"] == "s1"
    keys = rw.world.repository.signer_key(reader.id)
    assert keys is not None
    assert v1.public_key == keys.public_key
    verify(v1.document, v1.signature, v1.public_key)
    told = [n for n in rw.notices.sent if n.kind == "reading.sign"]
    assert told
    assert told[0].usernames == {"li.doctor", "sun.doctor"}
    with pytest.raises(TransitionNotAllowed, match="edit a reading in state signed"):
        rw.service.save_report(reader, task_id, ["SR"], "改")
    rw.service.step(rw.world["ma.reader"], task_id, E.AMEND)
    amender = rw.world["ma.reader"]
    rw.service.save_report(amender, task_id, ["SR", "STE_ANT", "PVC"], "急性前壁心肌梗死，室性早搏")
    rw.world.clock.advance(30)
    again = rw.service.sign(amender, task_id, rw.world.totp("ma.reader"))
    assert again.record.task.state is S.SIGNED
    assert again.record.task.version == 2
    first, second = rw.service.versions(reader, task_id)
    assert first.document == v1.document
    assert second.document["corrects"] == digest(v1.document)
    assert second.document["signer"] == "ma.reader"
    verify(second.document, second.signature, second.public_key)
    actions = rw.actions(f"reading:{task_id}")
    for step in ("reading.claim", "reading.edit", "reading.sign", "reading.amend"):
        assert (step, "ok") in actions
    # Refused: signing unclaimed, without a report and without the second factor; the
    # unknown code; editing the signed report.
    denied = [a for a, outcome in actions if outcome == "denied"]
    assert denied == [
        "reading.sign",
        "reading.sign",
        "reading.edit",
        "reading.sign",
        "reading.edit",
    ]


def test_return_needs_a_reason_and_tells_the_clinic(rw: ReadingWorld) -> None:
    """Returning without a reason is refused (audited, nothing changed); with one the
    task is returned, the reason kept, the clinic told; nothing more can be done."""
    made = rw.stream_task("s1")
    reader = rw.world["liu.reader"]
    with pytest.raises(InvalidInput, match="reason"):
        rw.service.step(reader, made.task.id, E.RETURN)
    assert rw.repository.get(made.task.id).task.state is S.NEW  # type: ignore[union-attr]
    back = rw.service.step(reader, made.task.id, E.RETURN, reason="导联脱落，请重新采集")
    assert back.record.task.state is S.RETURNED
    assert back.record.task.reason == "导联脱落，请重新采集"
    assert [n.kind for n in rw.notices.sent] == ["reading.return"]
    with pytest.raises(TransitionNotAllowed, match="claim a reading in state returned"):
        rw.service.step(reader, made.task.id, E.CLAIM)
    assert rw.actions(f"reading:{made.task.id}") == [
        ("reading.created", "ok"),
        ("reading.return", "denied"),
        ("reading.return", "ok"),
        ("reading.claim", "denied"),
    ]


def test_edit_and_sign_are_not_steps(rw: ReadingWorld) -> None:
    """``step`` refuses edit and sign (they have their own calls), and a stale read loses
    to the step taken first."""
    made = rw.stream_task("s1")
    reader = rw.world["liu.reader"]
    for event in (E.EDIT, E.SIGN):
        with pytest.raises(InvalidInput):
            rw.service.step(reader, made.task.id, event)
    before = rw.repository.get(made.task.id)
    assert before is not None
    rw.service.step(reader, made.task.id, E.CLAIM)
    with pytest.raises(StaleReading):
        rw.repository.transition(
            before, before, rw.service._event(before, "reading.claim", reader, rw.service.now())
        )


def test_a_clinic_without_an_ecg_centre_gets_no_task(rw: ReadingWorld) -> None:
    """A root institution has nobody above it to read its ECGs: refused with a reason."""
    with pytest.raises(InvalidInput, match="no ECG centre"):
        rw.service.task_for_stream("s9", "city-1", None, rw.world.clock.now, (), ())
