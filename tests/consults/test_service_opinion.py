"""The opinion, the attachments and the referrals of the consult service over the real
store (SQLite and PostgreSQL): signing with the second factor (a code counts once), the
signed document and its key, addenda, editing refused after signing, attachments typed
by content and kept in the data dir, and a referral slot two threads race for."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from consults.consult_repositories import StaleConsult
from consults.directory import Role
from consults.errors import Conflict, Forbidden, InvalidInput, NotFound, TotpRequired
from consults.lifecycle import ConsultEvent, ConsultState, apply
from consults.opinions import OpinionSigned, SignedVersion, verify_chain, verify_cosignatures
from consults.referrals import ReferralEvent, ReferralState, SlotTaken
from consults.repositories import AuditEvent, PageRequest
from consults.requests import AttachmentTooLarge, AttachmentType, MediaType
from consults.service import actor_of
from consults.signatures import SignatureError, digest, fingerprint
from consults.transitions import NotPermitted, TransitionNotAllowed
from store.audit import AuditQuery, query
from store.streams import StreamRecord
from tests.consults.test_service import TEXT, reach, take
from tests.consults.test_service_world import World, world
from tests.pg import database

__all__ = ["database", "world"]

S, E = ConsultState, ConsultEvent
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


def test_signing_needs_a_fresh_second_factor(world: World) -> None:
    """No code, a wrong one, or one used already: 401 totp_required, audited, the consult
    still reporting. A fresh code signs: reported, one version whose signature verifies
    with the signer's key on record; the code cannot sign an addendum again."""
    consult_id = reach(world, S.REPORTING)
    service, expert = world.service, world["wang.expert"]
    with pytest.raises(InvalidInput):  # nothing written yet
        service.sign(expert, consult_id, world.totp("wang.expert"))
    service.save_draft(expert, consult_id, TEXT)
    world.clock.advance(30)
    for code in (None, "", "123", "000000"):
        with pytest.raises(TotpRequired):
            service.sign(expert, consult_id, code)
    code = world.totp("wang.expert")
    view = service.sign(expert, consult_id, code)
    assert view.record.consult.state is S.REPORTED
    assert view.record.consult.signed_at == world.clock.now
    versions = service.versions(world["li.doctor"], consult_id)
    assert len(versions) == 1
    verify_chain(versions)
    document = versions[0].document
    assert document["consult"] == consult_id
    assert document["patient"] == view.record.request.patient_id
    assert document["signer"] == "wang.expert"
    assert document["opinion"] == TEXT.as_dict()
    assert document["context"]["patient_name"] == "张三"  # type: ignore[index]
    assert world.service.public_keys(expert.id) == [versions[0].public_key]
    assert versions[0].signature.key_fingerprint == fingerprint(versions[0].public_key)
    with pytest.raises(TotpRequired):  # the same code, once more
        service.addendum(expert, consult_id, TEXT, code)
    denied = [a for a in world.actions(consult_id) if a[1] == "denied"]
    assert denied == [("consult.sign", "denied")] * 4 + [("opinion.addendum", "denied")]
    assert world.notices.sent[-1].kind == "consult.sign"
    assert world.notices.sent[-1].usernames >= {"li.doctor"}


def test_a_signed_opinion_never_changes_an_addendum_corrects_it(world: World) -> None:
    """After signing the draft cannot be saved (409 opinion_signed); an addendum is
    version 2, naming the digest of version 1, signed anew with the same key; the chain
    verifies, and an altered version does not."""
    consult_id = reach(world, S.REPORTED)
    service, expert = world.service, world["wang.expert"]
    with pytest.raises(OpinionSigned):
        service.save_draft(expert, consult_id, TEXT)
    world.clock.advance(30)
    with pytest.raises(Forbidden):  # not the lead expert
        service.addendum(world["chen.expert"], consult_id, TEXT, world.totp("chen.expert"))
    corrected = type(TEXT)(
        findings=TEXT.findings, diagnosis="急性前壁心肌梗死（更正）", recommendations="同前"
    )
    world.clock.advance(30)
    version = service.addendum(expert, consult_id, corrected, world.totp("wang.expert"))
    versions = service.versions(world["zhao.coord"], consult_id)
    assert [v.document["version"] for v in versions] == [1, 2]
    assert version.document["corrects"] == digest(versions[0].document)
    assert versions[1].public_key == versions[0].public_key
    verify_chain(versions)
    forged = dict(versions[1].document)
    forged["opinion"] = {**corrected.as_dict(), "diagnosis": "正常心电图"}
    with pytest.raises(SignatureError):
        verify_chain(
            [
                versions[0],
                SignedVersion(
                    document=forged,
                    signature=versions[1].signature,
                    public_key=versions[1].public_key,
                ),
            ]
        )
    assert world.actions(consult_id)[-1] == ("opinion.addendum", "ok")


def test_the_draft_is_the_experts_until_signed(world: World) -> None:
    """The clinic does not read the draft (403); only the lead expert writes it, and only
    once the consult is accepted (409 before)."""
    consult_id = reach(world, S.ACCEPTED)
    service = world.service
    service.save_draft(world["wang.expert"], consult_id, TEXT)
    assert service.draft(world["chen.expert"], consult_id) == TEXT
    with pytest.raises(Forbidden):
        service.draft(world["li.doctor"], consult_id)
    with pytest.raises(Forbidden):
        service.save_draft(world["chen.expert"], consult_id, TEXT)
    early = reach(world, S.ASSIGNED)
    with pytest.raises(TransitionNotAllowed):
        service.save_draft(world["wang.expert"], early, TEXT)


def test_attachments_are_typed_by_content_and_kept_in_the_data_dir(world: World) -> None:
    """A PNG and a PDF are stored under the data dir with their digest; a file that is not
    what it claims is 415, one over its limit 413, neither stored; another county's
    doctor cannot read or add one (404); downloads are audited."""
    consult_id = reach(world, S.ASSIGNED)
    service, doctor = world.service, world["li.doctor"]
    png = service.add_attachment(doctor, consult_id, "image/png", "ecg.png", PNG)
    world.clock.advance(1)
    pdf = service.add_attachment(doctor, consult_id, "application/pdf", "form.pdf", PDF)
    assert (world.data_dir / "attachments" / consult_id / png.id).read_bytes() == PNG
    assert png.media_type == MediaType.PNG.value
    with pytest.raises(AttachmentType):
        service.add_attachment(doctor, consult_id, "application/pdf", "x.pdf", PNG)
    with pytest.raises(AttachmentType):
        service.add_attachment(doctor, consult_id, "text/html", "x.html", b"<html></html>")
    service.attachment_limits_bytes[MediaType.PNG] = len(PNG) - 1
    with pytest.raises(AttachmentTooLarge):
        service.add_attachment(doctor, consult_id, "image/png", "big.png", PNG)
    assert [a.id for a in service.attachments(world["wang.expert"], consult_id)] == [
        png.id,
        pdf.id,
    ]
    found, data = service.attachment(world["wang.expert"], consult_id, pdf.id)
    assert (found, data) == (pdf, PDF)
    with pytest.raises(NotFound):
        service.attachment(world["zhou.doctor"], consult_id, pdf.id)
    with pytest.raises(NotFound):
        service.add_attachment(world["zhou.doctor"], consult_id, "image/png", "x.png", PNG)
    with pytest.raises(NotFound):
        service.attachment(world["wang.expert"], consult_id, "no-such-attachment")
    assert ("consult.attachment_read", "ok") in world.actions(consult_id)
    assert len(list((world.data_dir / "attachments" / consult_id).iterdir())) == 2


def test_two_referrals_racing_for_a_slot_one_wins(world: World) -> None:
    """Two doctors refer to the same slot from two threads at once: exactly one referral
    holds it, the other gets slot_taken; a decline frees it for the next."""
    service = world.service
    slot = service.publish_slot(
        world["heart.doctor"],
        "cardio",
        world.clock.now + timedelta(days=1),
        world.clock.now + timedelta(days=1, minutes=30),
    )
    barrier = threading.Barrier(2)
    outcomes: list[object] = []
    lock = threading.Lock()

    def refer(username: str) -> None:
        barrier.wait()
        try:
            result: object = service.refer(world[username], slot.id, "需要急诊 PCI")
        except SlotTaken as exc:
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=refer, args=(u,)) for u in ("li.doctor", "zhou.doctor")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(outcomes) == 2
    won = [o for o in outcomes if not isinstance(o, SlotTaken)]
    lost = [o for o in outcomes if isinstance(o, SlotTaken)]
    assert len(won) == 1
    assert len(lost) == 1
    assert [taken for _, taken in service.slots(world["li.doctor"], "county-1")] == [True]
    referral = won[0]
    receiver = world["heart.doctor"]
    declined = service.referral_step(
        receiver,
        referral.id,  # type: ignore[attr-defined]
        ReferralEvent.DECLINE,
        "本周无床位",
    )
    assert declined.state is ReferralState.DECLINED
    assert [taken for _, taken in service.slots(world["li.doctor"], "county-1")] == [False]
    again = service.refer(world["sun.doctor"], slot.id, "需要急诊 PCI")
    assert again.state is ReferralState.REQUESTED
    assert "referral.slot_published" in [row.action for row in world.audit()]
    with pytest.raises(InvalidInput):
        service.publish_slot(
            world["heart.doctor"],
            "cardio",
            world.clock.now - timedelta(hours=1),
            world.clock.now,
        )


def test_a_referral_from_a_signed_opinion(world: World) -> None:
    """The county expert refers the patient of a signed opinion up to the city: the
    referral names the consult, the city's incoming worklist lists it, an outsider does
    not see it (404) and a slot at the referring institution itself is refused."""
    consult_id = reach(world, S.REPORTED)
    service = world.service
    start = world.clock.now + timedelta(hours=3)
    slot = service.publish_slot(world["ma.doctor"], "cardio", start, start + timedelta(hours=1))
    referral = service.refer(world["wang.expert"], slot.id, "急诊 PCI", consult_id)
    assert (referral.from_institution, referral.to_institution) == ("county-1", "city-1")
    assert referral.consult == consult_id
    with pytest.raises(NotFound):
        service.referral_step(world["zhou.doctor"], referral.id, ReferralEvent.ACCEPT)
    incoming = service.referrals(world["ma.doctor"], incoming=True, page=PageRequest())
    assert [r.id for r in incoming.items] == [referral.id]
    own = service.publish_slot(world["heart.doctor"], "cardio", start, start + timedelta(hours=1))
    with pytest.raises(InvalidInput):
        service.refer(world["wang.expert"], own.id, "急诊 PCI", consult_id)


def test_referral_steps_are_the_tables(world: World) -> None:
    """A village doctor refers to the county: the sender may not accept (403, audited);
    the receiver accepts, records arrival and refers back with a discharge summary."""
    service = world.service
    slot = service.publish_slot(
        world["heart.doctor"],
        "cardio",
        world.clock.now + timedelta(hours=3),
        world.clock.now + timedelta(hours=4),
    )
    referral = service.refer(world["li.doctor"], slot.id, "急诊 PCI")
    with pytest.raises(NotPermitted):
        service.referral_step(world["li.doctor"], referral.id, ReferralEvent.ACCEPT)
    with pytest.raises(TransitionNotAllowed):
        service.referral_step(world["heart.doctor"], referral.id, ReferralEvent.ARRIVE)
    receiver = world["heart.doctor"]
    assert service.referral_step(receiver, referral.id, ReferralEvent.ACCEPT).state is (
        ReferralState.ACCEPTED
    )
    assert service.referral_step(receiver, referral.id, ReferralEvent.ARRIVE).state is (
        ReferralState.ARRIVED
    )
    with pytest.raises(InvalidInput):
        service.referral_step(receiver, referral.id, ReferralEvent.REFER_BACK)
    back = service.referral_step(receiver, referral.id, ReferralEvent.REFER_BACK, "好转出院")
    assert back.state is ReferralState.REFERRED_BACK
    assert back.discharge_summary == "好转出院"
    outgoing = service.referrals(world["li.doctor"], incoming=False, page=PageRequest())
    assert [r.state for r in outgoing.items] == [ReferralState.REFERRED_BACK]
    with world.stores.engine.connect() as conn:
        rows = query(conn, AuditQuery(target=f"referral:{referral.id}"), limit=100)
    assert [(r.action, r.detail_object()["outcome"]) for r in rows] == [
        ("referral.request", "ok"),
        ("referral.accept", "denied"),
        ("referral.arrive", "denied"),
        ("referral.accept", "ok"),
        ("referral.arrive", "ok"),
        ("referral.refer_back", "ok"),
    ]


def test_sign_then_close_by_the_clinic(world: World) -> None:
    """The clinic acknowledges the signed opinion: closed, the lead expert told."""
    consult_id = reach(world, S.REPORTED)
    assert take(world, consult_id, E.CLOSE, "sun.doctor") is S.CLOSED
    notice = world.notices.sent[-1]
    assert notice.kind == "consult.close"
    assert "wang.expert" in notice.usernames


def test_the_other_experts_co_sign_a_multidisciplinary_opinion(world: World) -> None:
    """The second expert co-signs the lead's version with a remark and their own key
    (second factor first); not twice, not the lead, not the clinic; the co-signature
    verifies against the chain and a forged one does not."""
    consult_id = reach(world, S.REPORTED)
    service = world.service
    with pytest.raises(Forbidden):
        service.cosign(world["wang.expert"], consult_id, world.totp("wang.expert"))
    with pytest.raises(Forbidden):
        service.cosign(world["li.doctor"], consult_id, "123456")
    with pytest.raises(TotpRequired):
        service.cosign(world["chen.expert"], consult_id, "000000")
    world.clock.advance(30)
    made = service.cosign(
        world["chen.expert"], consult_id, world.totp("chen.expert"), "同意，建议加做心脏超声"
    )
    versions = service.versions(world["li.doctor"], consult_id)
    assert made.document["cosigns"] == digest(versions[0].document)
    assert made.document["comment"] == "同意，建议加做心脏超声"
    assert made.public_key != versions[0].public_key
    cosignatures = service.cosignatures(world["li.doctor"], consult_id)
    assert cosignatures == [made]
    verify_cosignatures(versions, cosignatures)
    world.clock.advance(30)
    with pytest.raises(Conflict):
        service.cosign(world["chen.expert"], consult_id, world.totp("chen.expert"))
    forged = SignedVersion(
        document={**made.document, "comment": "不同意"},
        signature=made.signature,
        public_key=made.public_key,
    )
    with pytest.raises(SignatureError):
        verify_cosignatures(versions, [forged])
    assert ("opinion.cosign", "ok") in world.actions(consult_id)
    assert ("opinion.cosign", "denied") in world.actions(consult_id)


def test_ecg_streams_of_the_clinics_cart_are_the_consults(world: World) -> None:
    """A stream the cart declared for the consult is listed; another of the clinic's is
    attached by the doctor (once: 409 after); one of another institution's cart is 404,
    as is the consult to an outsider; the attachment is audited."""
    consult_id = reach(world, S.ASSIGNED)
    streams = world.stores.streams
    at = world.clock.epoch()
    streams.add_stream(
        StreamRecord(id="s-declared", started_at_s=at, institution="village-1", consult=consult_id)
    )
    streams.add_stream(StreamRecord(id="s-earlier", started_at_s=at - 600, institution="village-1"))
    streams.add_stream(StreamRecord(id="s-elsewhere", started_at_s=at, institution="town-2"))
    service, doctor = world.service, world["li.doctor"]
    assert [(s.id, s.attached_by) for s in service.streams(doctor, consult_id)] == [
        ("s-declared", None)
    ]
    attached = service.attach_stream(doctor, consult_id, "s-earlier")
    assert attached.attached_by == "li.doctor"
    listed = service.streams(world["wang.expert"], consult_id)
    assert [(s.id, s.attached_by) for s in listed] == [
        ("s-earlier", "li.doctor"),
        ("s-declared", None),
    ]
    with pytest.raises(Conflict):
        service.attach_stream(doctor, consult_id, "s-earlier")
    with pytest.raises(NotFound):
        service.attach_stream(doctor, consult_id, "s-elsewhere")
    with pytest.raises(NotFound):
        service.attach_stream(doctor, consult_id, "no-such-stream")
    with pytest.raises(NotFound):
        service.streams(world["zhou.doctor"], consult_id)
    assert ("consult.stream_attached", "ok") in world.actions(consult_id)


def test_two_assignments_racing_one_wins(world: World) -> None:
    """Two coordinators assign the consult they both read, from two threads at once: the
    store's compare-and-set on the revision lets exactly one write through (the other
    gets consult_changed), with one audit row, and the experts are one side's, whole."""
    consult_id = reach(world, S.SUBMITTED)
    before = world.repository.get(consult_id)
    assert before is not None
    qin = world.add_person("qin.coord", "county-1", Role.COORDINATOR)
    choices = {"zhao.coord": ("wang.expert",), "qin.coord": ("chen.expert", "wang.expert")}
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def assign(name: str) -> None:
        person = world[name] if name != "qin.coord" else qin
        moved = apply(
            before.consult, E.ASSIGN, actor_of(person), world.clock.now, experts=choices[name]
        )
        event = AuditEvent(at_s=world.clock.epoch(), action="consult.assign", consult=consult_id)
        barrier.wait()
        try:
            world.repository.transition(before, replace(before, consult=moved), event)
            outcomes[name] = "won"
        except StaleConsult as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=assign, args=(name,)) for name in choices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    won = [name for name, o in outcomes.items() if o == "won"]
    lost = [name for name, o in outcomes.items() if isinstance(o, StaleConsult)]
    assert len(won) == 1
    assert len(lost) == 1
    record = world.repository.get(consult_id)
    assert record is not None
    assert record.consult.experts == choices[won[0]]
    assert record.revision == before.revision + 1
    assert [a for a in world.actions(consult_id) if a[0] == "consult.assign"] == [
        ("consult.assign", "ok")
    ]
