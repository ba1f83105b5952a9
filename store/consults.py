"""The consult service on the SQL store: its tables and
:class:`consults.consult_repositories.ConsultRepository`.

Design notes
------------
- The tables are :mod:`store.consult_schema`'s, in :data:`store.schema.metadata` (one
  schema; their migration is ``0100_consults``).
- Each change and its audit row are one transaction (:func:`store.audit.append` runs on
  the same connection). A transition is a compare-and-set on ``revision``: the update
  names the revision the service read, and no row updated means someone else moved the
  consult first (:class:`~consults.consult_repositories.StaleConsult`, nothing written).
- A referral holds its slot through ``held_slot``, unique: set to the slot while the
  referral is live, NULL once it is declined, cancelled or done (NULLs never collide,
  on SQLite as on PostgreSQL). Two referrals racing for a slot: the second insert fails
  the unique key and is answered :class:`~consults.referrals.SlotTaken`.
- Signing keys: the public key in the clear (with its fingerprint), the private key
  sealed with the deployment's field key (:class:`store.secrets.SecretBox`, bound to
  the person id).
- Signed versions keep the document as canonical JSON text, byte for byte what was
  signed.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from consults.consult_repositories import (
    Attachment,
    ConsultFilter,
    ConsultRecord,
    ConsultStream,
    Queue,
    StaleConsult,
    StoredRequest,
)
from consults.errors import Conflict, RepositoryError
from consults.lifecycle import AWAITING_ACCEPTANCE, Consult, ConsultState, Mode, Priority
from consults.opinions import OpinionText, SignedVersion
from consults.referrals import HOLDS_SLOT, Referral, ReferralState, Slot, SlotTaken
from consults.repositories import AuditEvent, Page, PageRequest
from consults.signatures import KeyPair, Signature, canonical_json, fingerprint
from store import audit as chain
from store.accounts import audit_record
from store.consult_schema import (
    consult_attachments,
    consult_experts,
    consult_streams,
    consults,
    opinion_cosignatures,
    opinion_drafts,
    opinion_versions,
    referral_slots,
    referrals,
    signer_keys,
)
from store.directory import unit_of_work
from store.schema import from_epoch_s, streams
from store.secrets import SecretBox, SecretError

__all__ = ["FileBlobStore", "SqlConsultRepository"]

_SEARCH_CHARS: Final = 100


def _search_text(record: ConsultRecord) -> str:
    r = record.request
    return " ".join((r.patient_name, r.record_number, r.specialty, record.consult.id)).lower()


def _consult_values(record: ConsultRecord) -> dict[str, Any]:
    c, r = record.consult, record.request
    return {
        "state": c.state.value,
        "priority": c.priority.value,
        "mode": c.mode.value,
        "requester": c.requester,
        "clinic": c.clinic,
        "centre": c.centre,
        "lead_expert": c.lead_expert,
        "created_at": c.created_at,
        "submitted_at": c.submitted_at,
        "accepted_at": c.accepted_at,
        "scheduled_start": c.scheduled_start,
        "signed_at": c.signed_at,
        "closed_at": c.closed_at,
        "last_reason": c.reason,
        "accept_due": record.accept_due,
        "expires_at": record.expires_at,
        "escalated_at": record.escalated_at,
        "warn_at": record.warn_at,
        "remind_at": record.remind_at,
        "revision": record.revision,
        "patient_id": r.patient_id,
        "patient_name": r.patient_name,
        "patient_sex": r.patient_sex,
        "patient_birth_date": r.patient_birth_date,
        "record_number": r.record_number,
        "national_id_sealed": r.national_id_sealed,
        "reason": r.reason,
        "purpose": r.purpose,
        "summary": r.summary,
        "specialty": r.specialty,
        "title_wanted": r.title_wanted,
        "expert_wanted": r.expert_wanted,
        "consent_kind": r.consent_kind,
        "consent_recorded_by": r.consent_recorded_by,
        "consent_time": r.consent_time,
        "consent_witness": r.consent_witness,
        "consent_form": r.consent_form,
        "proposed_times": json.dumps([chain.format_time(t) for t in r.proposed_times])
        if r.proposed_times
        else None,
        "search_text": _search_text(record),
    }


def _record(row: Any, experts: tuple[str, ...]) -> ConsultRecord:
    consult = Consult(
        id=row.id,
        state=ConsultState(row.state),
        priority=Priority(row.priority),
        mode=Mode(row.mode),
        requester=row.requester,
        clinic=row.clinic,
        centre=row.centre,
        experts=experts,
        lead_expert=row.lead_expert,
        created_at=row.created_at,
        submitted_at=row.submitted_at,
        accepted_at=row.accepted_at,
        scheduled_start=row.scheduled_start,
        signed_at=row.signed_at,
        closed_at=row.closed_at,
        reason=row.last_reason,
    )
    request = StoredRequest(
        patient_id=row.patient_id,
        patient_name=row.patient_name,
        patient_sex=row.patient_sex,
        patient_birth_date=row.patient_birth_date,
        record_number=row.record_number,
        national_id_sealed=row.national_id_sealed,
        reason=row.reason,
        purpose=row.purpose,
        summary=row.summary,
        specialty=row.specialty,
        title_wanted=row.title_wanted,
        expert_wanted=row.expert_wanted,
        consent_kind=row.consent_kind,
        consent_recorded_by=row.consent_recorded_by,
        consent_time=row.consent_time,
        consent_witness=row.consent_witness,
        consent_form=row.consent_form,
        proposed_times=tuple(chain.parse_time(t) for t in json.loads(row.proposed_times or "[]")),
    )
    return ConsultRecord(
        consult=consult,
        request=request,
        accept_due=row.accept_due,
        expires_at=row.expires_at,
        escalated_at=row.escalated_at,
        warn_at=row.warn_at,
        remind_at=row.remind_at,
        revision=row.revision,
    )


def _experts_of(conn: Connection, ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {i: [] for i in ids}
    if not ids:
        return {}
    rows = conn.execute(
        select(consult_experts.c.consult, consult_experts.c.username)
        .where(consult_experts.c.consult.in_(list(ids)))
        .order_by(consult_experts.c.consult, consult_experts.c.position)
    )
    for row in rows:
        found[row.consult].append(row.username)
    return {k: tuple(v) for k, v in found.items()}


def _append(conn: Connection, event: AuditEvent) -> None:
    try:
        record = audit_record(event)
    except ValueError as exc:
        raise RepositoryError("the audit event cannot be stored") from exc
    chain.append(conn, [record])


def _referral_values(referral: Referral) -> dict[str, Any]:
    return {
        "state": referral.state.value,
        "from_institution": referral.from_institution,
        "to_institution": referral.to_institution,
        "to_department": referral.to_department,
        "slot": referral.slot,
        "held_slot": referral.slot if referral.state in HOLDS_SLOT else None,
        "reason": referral.reason,
        "created_at": referral.created_at,
        "consult": referral.consult,
        "decline_reason": referral.decline_reason,
        "arrived_at": referral.arrived_at,
        "discharge_summary": referral.discharge_summary,
    }


def _signature_values(signed: SignedVersion) -> dict[str, Any]:
    """The columns a signed document and its signature share in both tables."""
    return {
        "document": canonical_json(signed.document).decode(),
        "algorithm": signed.signature.algorithm,
        "signature": signed.signature.value,
        "key_fingerprint": signed.signature.key_fingerprint,
        "public_key": signed.public_key.hex(),
        "signed_at": chain.parse_time(str(signed.document["signed_at"])),
    }


def _stream(row: Any, attached_by: str | None) -> ConsultStream:
    return ConsultStream(
        id=row.id,
        institution=row.institution,
        device_id=row.device_id,
        started_at=row.started_at,
        ended_at=row.ended_at,
        state=row.state,
        samples=row.samples,
        attached_by=attached_by,
    )


def _slot(row: Any) -> Slot:
    return Slot(
        id=row.id,
        institution=row.institution,
        department=row.department,
        start=row.start,
        end=row.end,
    )


def _referral(row: Any) -> Referral:
    return Referral(
        id=row.id,
        state=ReferralState(row.state),
        from_institution=row.from_institution,
        to_institution=row.to_institution,
        to_department=row.to_department,
        slot=row.slot,
        reason=row.reason,
        created_at=row.created_at,
        consult=row.consult,
        decline_reason=row.decline_reason,
        arrived_at=row.arrived_at,
        discharge_summary=row.discharge_summary,
    )


class SqlConsultRepository:
    """:class:`consults.consult_repositories.ConsultRepository` on SQLite or PostgreSQL.

    Parameters
    ----------
    engine
        The process's engine.
    secrets
        Seals the signers' private keys (the deployment's field key).
    """

    def __init__(self, engine: Engine, *, secrets: SecretBox | None = None) -> None:
        self.engine = engine
        self._box = secrets or SecretBox(None)

    # Consults
    def create(self, record: ConsultRecord, event: AuditEvent) -> None:
        with unit_of_work(self.engine) as conn:
            try:
                conn.execute(
                    insert(consults).values(id=record.consult.id, **_consult_values(record))
                )
            except IntegrityError as exc:
                raise Conflict("consult", record.consult.id) from exc
            self._set_experts(conn, record.consult)
            _append(conn, event)

    @staticmethod
    def _set_experts(conn: Connection, consult: Consult) -> None:
        conn.execute(delete(consult_experts).where(consult_experts.c.consult == consult.id))
        if consult.experts:
            conn.execute(
                insert(consult_experts),
                [
                    {"consult": consult.id, "username": name, "position": i}
                    for i, name in enumerate(consult.experts)
                ],
            )

    def get(self, consult_id: str) -> ConsultRecord | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(select(consults).where(consults.c.id == consult_id)).first()
            if row is None:
                return None
            return _record(row, _experts_of(conn, [consult_id])[consult_id])

    def _compare_and_set(
        self, conn: Connection, before: ConsultRecord, after: ConsultRecord
    ) -> None:
        values = _consult_values(after)
        values["revision"] = before.revision + 1
        done = conn.execute(
            update(consults)
            .where((consults.c.id == before.consult.id) & (consults.c.revision == before.revision))
            .values(**values)
        )
        if done.rowcount != 1:
            raise StaleConsult(before.consult.id)
        if after.consult.experts != before.consult.experts:
            self._set_experts(conn, after.consult)

    def transition(self, before: ConsultRecord, after: ConsultRecord, event: AuditEvent) -> None:
        with unit_of_work(self.engine) as conn:
            self._compare_and_set(conn, before, after)
            _append(conn, event)

    def list(self, where: ConsultFilter, page: PageRequest) -> Page[ConsultRecord]:
        c = consults.c
        condition: Any
        order: list[Any]
        if where.queue is Queue.MINE:
            condition, order = c.requester == where.who, [c.created_at.desc(), c.id]
        elif where.queue is Queue.CLINIC:
            condition, order = c.clinic == where.who, [c.created_at.desc(), c.id]
        elif where.queue is Queue.ASSIGNED:
            mine = select(consult_experts.c.consult).where(consult_experts.c.username == where.who)
            condition = c.id.in_(mine)
            # By deadline: the acceptance due while one runs, else the scheduled start.
            deadline = func.coalesce(c.accept_due, c.scheduled_start, c.created_at)
            order = [deadline, c.id]
        else:
            awaiting = [s.value for s in AWAITING_ACCEPTANCE]
            condition = (c.centre == where.who) & c.state.in_(awaiting)
            if where.queue is Queue.OVERDUE:
                condition = condition & (c.accept_due < where.now)
            # Earliest due first: the overdue ones lead.
            order = [c.accept_due, c.id]
        if where.states is not None:
            condition = and_(condition, c.state.in_([s.value for s in where.states]))
        if where.search:
            needle = where.search.strip().lower()[:_SEARCH_CHARS]
            condition = and_(condition, c.search_text.contains(needle, autoescape=True))
        statement = select(consults).where(condition)
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                statement.order_by(*order).limit(page.limit).offset(page.offset)
            ).all()
            total = int(
                conn.execute(
                    select(func.count()).select_from(consults).where(condition)
                ).scalar_one()
            )
            experts = _experts_of(conn, [r.id for r in rows])
        return Page(items=tuple(_record(r, experts[r.id]) for r in rows), total=total)

    def _awaiting(self, condition: Any, order: Any, limit: int) -> Sequence[ConsultRecord]:
        """Consults awaiting acceptance that meet ``condition``, ordered, at most ``limit``."""
        awaiting = [s.value for s in AWAITING_ACCEPTANCE]
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(consults)
                .where(consults.c.state.in_(awaiting) & condition)
                .order_by(order, consults.c.id)
                .limit(limit)
            ).all()
            experts = _experts_of(conn, [r.id for r in rows])
        return [_record(r, experts[r.id]) for r in rows]

    def due_to_expire(self, now: datetime, limit: int) -> Sequence[ConsultRecord]:
        c = consults.c
        return self._awaiting(c.expires_at < now, c.expires_at, limit)

    def due_to_escalate(self, now: datetime, limit: int) -> Sequence[ConsultRecord]:
        c = consults.c
        return self._awaiting((c.accept_due < now) & c.escalated_at.is_(None), c.accept_due, limit)

    def due_to_warn(self, now: datetime, limit: int) -> Sequence[ConsultRecord]:
        c = consults.c
        return self._awaiting(c.warn_at < now, c.warn_at, limit)

    def due_to_remind(self, now: datetime, limit: int) -> Sequence[ConsultRecord]:
        c = consults.c
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(consults)
                .where((c.state == ConsultState.SCHEDULED.value) & (c.remind_at < now))
                .order_by(c.remind_at, c.id)
                .limit(limit)
            ).all()
            experts = _experts_of(conn, [r.id for r in rows])
        return [_record(r, experts[r.id]) for r in rows]

    # Opinions
    def save_draft(self, consult_id: str, text: OpinionText, event: AuditEvent) -> None:
        values = {**text.as_dict(), "updated_at": from_epoch_s(event.at_s)}
        with unit_of_work(self.engine) as conn:
            done = conn.execute(
                update(opinion_drafts)
                .where(opinion_drafts.c.consult == consult_id)
                .values(**values)
            )
            if done.rowcount == 0:
                conn.execute(insert(opinion_drafts).values(consult=consult_id, **values))
            _append(conn, event)

    def draft(self, consult_id: str) -> OpinionText | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(
                select(opinion_drafts).where(opinion_drafts.c.consult == consult_id)
            ).first()
        if row is None:
            return None
        return OpinionText(
            findings=row.findings,
            diagnosis=row.diagnosis,
            recommendations=row.recommendations,
            referral_advice=row.referral_advice,
        )

    def versions(self, consult_id: str) -> Sequence[SignedVersion]:
        v = opinion_versions.c
        return self._signed(
            select(opinion_versions).where(v.consult == consult_id).order_by(v.version)
        )

    def cosignatures(self, consult_id: str) -> Sequence[SignedVersion]:
        c = opinion_cosignatures.c
        return self._signed(
            select(opinion_cosignatures)
            .where(c.consult == consult_id)
            .order_by(c.version, c.signed_at, c.signer)
        )

    def _signed(self, statement: Any) -> Sequence[SignedVersion]:
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(statement).all()
        return [
            SignedVersion(
                document=json.loads(row.document),
                signature=Signature(
                    algorithm=row.algorithm,
                    key_fingerprint=row.key_fingerprint,
                    value=row.signature,
                ),
                public_key=bytes.fromhex(row.public_key),
            )
            for row in rows
        ]

    def add_cosignature(self, cosignature: SignedVersion, event: AuditEvent) -> None:
        doc = cosignature.document
        with unit_of_work(self.engine) as conn:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(opinion_cosignatures).values(
                            consult=str(doc["consult"]),
                            version=int(str(doc["version"])),
                            signer=str(doc["signer"]),
                            **_signature_values(cosignature),
                        )
                    )
            except IntegrityError as exc:
                raise Conflict("co-signature", str(doc["signer"])) from exc
            _append(conn, event)

    def add_version(
        self,
        version: SignedVersion,
        event: AuditEvent,
        transition: tuple[ConsultRecord, ConsultRecord] | None = None,
    ) -> None:
        doc = version.document
        with unit_of_work(self.engine) as conn:
            if transition is not None:
                self._compare_and_set(conn, *transition)
            try:
                conn.execute(
                    insert(opinion_versions).values(
                        consult=str(doc["consult"]),
                        version=int(str(doc["version"])),
                        signer=str(doc["signer"]),
                        **_signature_values(version),
                    )
                )
            except IntegrityError as exc:
                raise Conflict("opinion version", str(doc["version"])) from exc
            _append(conn, event)

    # Signing keys
    def signer_key(self, person_id: str) -> KeyPair | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(
                select(signer_keys).where(signer_keys.c.person_id == person_id)
            ).first()
        if row is None:
            return None
        try:
            private = self._box.open(row.private_key_sealed, f"signer:{person_id}")
        except SecretError as exc:
            raise RepositoryError("a stored signing key cannot be read") from exc
        assert private is not None
        return KeyPair(
            private_key=base64.b64decode(private), public_key=bytes.fromhex(row.public_key)
        )

    def public_keys(self, person_id: str) -> Sequence[bytes]:
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(signer_keys.c.public_key).where(signer_keys.c.person_id == person_id)
            ).all()
        return [bytes.fromhex(r.public_key) for r in rows]

    def add_signer_key(self, person_id: str, keys: KeyPair, event: AuditEvent) -> None:
        sealed = self._box.seal(
            base64.b64encode(keys.private_key).decode("ascii"), f"signer:{person_id}"
        )
        with unit_of_work(self.engine) as conn:
            try:
                conn.execute(
                    insert(signer_keys).values(
                        person_id=person_id,
                        public_key=keys.public_key.hex(),
                        fingerprint=fingerprint(keys.public_key),
                        private_key_sealed=sealed,
                        created_at=from_epoch_s(event.at_s),
                    )
                )
            except IntegrityError as exc:
                raise Conflict("signing key", person_id) from exc
            _append(conn, event)

    # Attachments
    def add_attachment(self, attachment: Attachment, event: AuditEvent) -> None:
        with unit_of_work(self.engine) as conn:
            conn.execute(
                insert(consult_attachments).values(
                    id=attachment.id,
                    consult=attachment.consult,
                    media_type=attachment.media_type,
                    size_bytes=attachment.size_bytes,
                    sha256=attachment.sha256,
                    name=attachment.name,
                    uploaded_by=attachment.uploaded_by,
                    uploaded_at=attachment.uploaded_at,
                )
            )
            _append(conn, event)

    def attachments(self, consult_id: str) -> Sequence[Attachment]:
        a = consult_attachments.c
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(consult_attachments)
                .where(a.consult == consult_id)
                .order_by(a.uploaded_at, a.id)
            ).all()
        return [
            Attachment(
                id=r.id,
                consult=r.consult,
                media_type=r.media_type,
                size_bytes=r.size_bytes,
                sha256=r.sha256,
                name=r.name,
                uploaded_by=r.uploaded_by,
                uploaded_at=r.uploaded_at,
            )
            for r in rows
        ]

    # ECG streams
    def stream(self, stream_id: str) -> ConsultStream | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(select(streams).where(streams.c.id == stream_id)).first()
        return None if row is None else _stream(row, None)

    def attach_stream(self, consult_id: str, stream: ConsultStream, event: AuditEvent) -> None:
        with unit_of_work(self.engine) as conn:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(consult_streams).values(
                            consult=consult_id,
                            stream=stream.id,
                            attached_by=stream.attached_by or "",
                            attached_at=from_epoch_s(event.at_s),
                        )
                    )
            except IntegrityError as exc:
                raise Conflict("stream", stream.id) from exc
            _append(conn, event)

    def streams_of(self, consult_id: str) -> Sequence[ConsultStream]:
        s, a = streams.c, consult_streams.c
        attached = (
            select(streams, a.attached_by)
            .join(consult_streams, a.stream == s.id)
            .where(a.consult == consult_id)
        )
        declared = select(streams).where(
            (s.consult == consult_id) & s.id.not_in(select(a.stream).where(a.consult == consult_id))
        )
        with unit_of_work(self.engine, read=True) as conn:
            found = [_stream(row, row.attached_by) for row in conn.execute(attached)]
            found += [_stream(row, None) for row in conn.execute(declared)]
        return sorted(found, key=lambda x: (x.started_at, x.id))

    # Referrals
    def add_slot(self, slot: Slot, event: AuditEvent) -> None:
        with unit_of_work(self.engine) as conn:
            try:
                conn.execute(
                    insert(referral_slots).values(
                        id=slot.id,
                        institution=slot.institution,
                        department=slot.department,
                        start=slot.start,
                        end=slot.end,
                    )
                )
            except IntegrityError as exc:
                raise Conflict("slot", slot.id) from exc
            _append(conn, event)

    def get_slot(self, slot_id: str) -> Slot | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(select(referral_slots).where(referral_slots.c.id == slot_id)).first()
        return None if row is None else _slot(row)

    def add_referral(self, referral: Referral, event: AuditEvent) -> None:
        with unit_of_work(self.engine) as conn:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(referrals).values(id=referral.id, **_referral_values(referral))
                    )
            except IntegrityError as exc:
                raise SlotTaken(referral.slot or "") from exc
            _append(conn, event)

    def get_referral(self, referral_id: str) -> Referral | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(select(referrals).where(referrals.c.id == referral_id)).first()
        return None if row is None else _referral(row)

    def list_referrals(
        self, institution: str, *, incoming: bool, page: PageRequest
    ) -> Page[Referral]:
        r = referrals.c
        condition = (r.to_institution if incoming else r.from_institution) == institution
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(referrals)
                .where(condition)
                .order_by(r.created_at.desc(), r.id)
                .limit(page.limit)
                .offset(page.offset)
            ).all()
            total = int(
                conn.execute(
                    select(func.count()).select_from(referrals).where(condition)
                ).scalar_one()
            )
        return Page(items=tuple(_referral(row) for row in rows), total=total)

    def list_slots(
        self, institution: str, department: str | None, since: datetime
    ) -> Sequence[tuple[Slot, bool]]:
        s, r = referral_slots.c, referrals.c
        condition = (s.institution == institution) & (s.start > since)
        if department is not None:
            condition = condition & (s.department == department)
        held = select(r.held_slot).where(r.held_slot.is_not(None))
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(referral_slots, s.id.in_(held).label("taken"))
                .where(condition)
                .order_by(s.start, s.id)
                .limit(500)
            ).all()
        return [(_slot(row), bool(row.taken)) for row in rows]

    def update_referral(self, before: Referral, after: Referral, event: AuditEvent) -> None:
        with unit_of_work(self.engine) as conn:
            done = conn.execute(
                update(referrals)
                .where((referrals.c.id == before.id) & (referrals.c.state == before.state.value))
                .values(**_referral_values(after))
            )
            if done.rowcount != 1:
                raise Conflict("referral", before.id)
            _append(conn, event)

    def audit(self, event: AuditEvent) -> None:
        with unit_of_work(self.engine) as conn:
            _append(conn, event)


class FileBlobStore:
    """:class:`consults.service.BlobStore` in a folder of the data dir (0700; files 0600,
    fsynced before the metadata row is written, so a row never names missing bytes)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not parts or any(not p or not p.isalnum() for p in parts):
            raise ValueError("a blob key is alphanumeric parts joined by /")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()
