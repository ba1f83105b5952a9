"""The consult service's tables, in :data:`store.schema.metadata`.

This module depends on :mod:`store.schema` only (its ``MetaData``, types and lengths), so
the schema can take these tables in without importing the repositories:
:mod:`store.schema` imports this module last, and whoever imports ``store.schema``
(Alembic's comparison, the migrations, the repositories) sees every table. The
repository over them is :mod:`store.consults`.

Design notes
------------
- Consults reference institutions by code; experts, requesters and signers are
  usernames (what the lifecycle's parties compare).
- ``accept_due`` and ``expires_at`` are computed by the service at each step, so the
  coordinator's queue is a plain index scan: overdue first is earliest due first.
  ``escalated_at`` records that an overdue consult was escalated to the centre's
  coordinators (once).
- A referral holds its slot through ``held_slot``, unique: set to the slot while the
  referral is live, NULL once it is declined, cancelled or done (NULLs never collide,
  on SQLite as on PostgreSQL), so of two referrals racing for a slot one wins.
- Signed versions keep the document as canonical JSON text, byte for byte what was
  signed.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from consults.lifecycle import ConsultState, Mode, Priority
from consults.referrals import ReferralState
from store.schema import CODE, NAME, SHA256_HEX, UtcDateTime, metadata

__all__ = [
    "consult_attachments",
    "consult_experts",
    "consult_streams",
    "consults",
    "opinion_cosignatures",
    "opinion_drafts",
    "opinion_versions",
    "referral_slots",
    "referrals",
    "signer_keys",
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_endpoints",
]

STATES: Final = tuple(s.value for s in ConsultState)
PRIORITIES: Final = tuple(p.value for p in Priority)
MODES: Final = tuple(m.value for m in Mode)
REFERRAL_STATES: Final = tuple(s.value for s in ReferralState)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


consults = Table(
    "consults",
    metadata,
    Column("id", String(CODE), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("requester", String(CODE), nullable=False),
    Column("clinic", String(CODE), ForeignKey("institutions.code"), nullable=False),
    Column("centre", String(CODE), ForeignKey("institutions.code"), nullable=False),
    Column("lead_expert", String(CODE), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("submitted_at", UtcDateTime, nullable=True),
    Column("accepted_at", UtcDateTime, nullable=True),
    Column("scheduled_start", UtcDateTime, nullable=True),
    Column("signed_at", UtcDateTime, nullable=True),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("last_reason", Text, nullable=True),
    Column("accept_due", UtcDateTime, nullable=True),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("escalated_at", UtcDateTime, nullable=True),
    Column("warn_at", UtcDateTime, nullable=True),
    Column("remind_at", UtcDateTime, nullable=True),
    Column("revision", Integer, nullable=False),
    # The request
    Column("patient_id", String(CODE), nullable=False),
    Column("patient_name", String(NAME), nullable=False),
    Column("patient_sex", String(16), nullable=False),
    Column("patient_birth_date", Date, nullable=False),
    Column("record_number", String(CODE), nullable=False),
    Column("national_id_sealed", Text, nullable=True),
    Column("reason", Text, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("specialty", String(CODE), nullable=False),
    Column("title_wanted", String(CODE), nullable=True),
    Column("expert_wanted", String(CODE), nullable=True),
    Column("consent_kind", String(16), nullable=False),
    Column("consent_recorded_by", String(CODE), nullable=False),
    Column("consent_time", UtcDateTime, nullable=False),
    Column("consent_witness", String(CODE), nullable=True),
    Column("consent_form", String(CODE), nullable=True),
    # The proposed times, RFC 3339 UTC, JSON list (at most 10).
    Column("proposed_times", Text, nullable=True),
    Column("search_text", Text, nullable=False),
    CheckConstraint(_one_of("state", STATES), name="state"),
    CheckConstraint(_one_of("priority", PRIORITIES), name="priority"),
    CheckConstraint(_one_of("mode", MODES), name="mode"),
    # The coordinator's queues: a centre's consults by state, earliest due first.
    Index("ix_consults_centre_state_accept_due", "centre", "state", "accept_due"),
    Index("ix_consults_clinic_created_at", "clinic", "created_at"),
    Index("ix_consults_requester_created_at", "requester", "created_at"),
    Index("ix_consults_state_expires_at", "state", "expires_at"),
    # The supervision statistics: the consults submitted in a period.
    Index("ix_consults_submitted_at", "submitted_at"),
    # The sweep's reminders: a column set while a reminder is pending, NULL after.
    Index("ix_consults_warn_at", "warn_at"),
    Index("ix_consults_remind_at", "remind_at"),
)

consult_experts = Table(
    "consult_experts",
    metadata,
    Column("consult", String(CODE), ForeignKey("consults.id"), primary_key=True),
    Column("username", String(CODE), primary_key=True),
    Column("position", Integer, nullable=False),  # 0: the lead expert
    Index("ix_consult_experts_username", "username"),
)

consult_attachments = Table(
    "consult_attachments",
    metadata,
    Column("id", String(CODE), primary_key=True),
    Column("consult", String(CODE), ForeignKey("consults.id"), nullable=False),
    Column("media_type", String(CODE), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("sha256", String(SHA256_HEX), nullable=False),
    Column("name", String(NAME), nullable=False),
    Column("uploaded_by", String(CODE), nullable=False),
    Column("uploaded_at", UtcDateTime, nullable=False),
    Index("ix_consult_attachments_consult", "consult"),
)

opinion_drafts = Table(
    "opinion_drafts",
    metadata,
    Column("consult", String(CODE), ForeignKey("consults.id"), primary_key=True),
    Column("findings", Text, nullable=False),
    Column("diagnosis", Text, nullable=False),
    Column("recommendations", Text, nullable=False),
    Column("referral_advice", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

opinion_versions = Table(
    "opinion_versions",
    metadata,
    Column("consult", String(CODE), ForeignKey("consults.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("document", Text, nullable=False),  # canonical JSON, the bytes signed
    Column("algorithm", String(16), nullable=False),
    Column("signature", Text, nullable=False),
    Column("key_fingerprint", String(80), nullable=False),
    Column("public_key", String(SHA256_HEX), nullable=False),  # hex of the raw key
    Column("signer", String(CODE), nullable=False),
    Column("signed_at", UtcDateTime, nullable=False),
)

# A co-signature of a signed version by another expert of the consult (multidisciplinary).
opinion_cosignatures = Table(
    "opinion_cosignatures",
    metadata,
    Column("consult", String(CODE), ForeignKey("consults.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("signer", String(CODE), primary_key=True),
    Column("document", Text, nullable=False),  # canonical JSON, the bytes signed
    Column("algorithm", String(16), nullable=False),
    Column("signature", Text, nullable=False),
    Column("key_fingerprint", String(80), nullable=False),
    Column("public_key", String(SHA256_HEX), nullable=False),
    Column("signed_at", UtcDateTime, nullable=False),
)

# ECG streams a clinic's cart sent, attached to a consult after the fact (a stream that
# declared the consult when it started names it in streams.consult already).
consult_streams = Table(
    "consult_streams",
    metadata,
    Column("consult", String(CODE), ForeignKey("consults.id"), primary_key=True),
    Column("stream", String(CODE), ForeignKey("streams.id"), primary_key=True),
    Column("attached_by", String(CODE), nullable=False),
    Column("attached_at", UtcDateTime, nullable=False),
    Index("ix_consult_streams_stream", "stream"),
)

# Outgoing webhooks: a hospital system's endpoint, and the delivery log.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(CODE), primary_key=True),
    Column("institution", String(CODE), ForeignKey("institutions.code"), nullable=False),
    Column("url", Text, nullable=False),
    Column("secret_sealed", Text, nullable=False),
    Column("events", Text, nullable=False),  # comma-separated kinds, "" for all
    Column("created_by", String(CODE), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("ix_webhook_endpoints_institution", "institution"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(CODE), primary_key=True),
    Column("endpoint", String(CODE), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("event", String(CODE), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", String(NAME), nullable=True),
    Index("ix_webhook_deliveries_next_attempt_at", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint_created_at", "endpoint", "created_at"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("delivery", String(CODE), ForeignKey("webhook_deliveries.id"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("status", Integer, nullable=True),
    Column("error", String(NAME), nullable=True),
)

signer_keys = Table(
    "signer_keys",
    metadata,
    Column("person_id", String(CODE), ForeignKey("people.id"), primary_key=True),
    Column("public_key", String(SHA256_HEX), nullable=False, unique=True),
    Column("fingerprint", String(80), nullable=False),
    Column("private_key_sealed", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

referral_slots = Table(
    "referral_slots",
    metadata,
    Column("id", String(CODE), primary_key=True),
    Column("institution", String(CODE), ForeignKey("institutions.code"), nullable=False),
    Column("department", String(CODE), nullable=False),
    Column("start", UtcDateTime, nullable=False),
    Column("end", UtcDateTime, nullable=False),
    Index("ix_referral_slots_institution_start", "institution", "start"),
)

referrals = Table(
    "referrals",
    metadata,
    Column("id", String(CODE), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("from_institution", String(CODE), ForeignKey("institutions.code"), nullable=False),
    Column("to_institution", String(CODE), ForeignKey("institutions.code"), nullable=False),
    Column("to_department", String(CODE), nullable=False),
    Column("slot", String(CODE), ForeignKey("referral_slots.id"), nullable=True),
    # The slot while the referral holds it, else NULL: at most one live referral a slot.
    Column("held_slot", String(CODE), nullable=True, unique=True),
    Column("reason", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("consult", String(CODE), ForeignKey("consults.id"), nullable=True),
    Column("decline_reason", Text, nullable=True),
    Column("arrived_at", UtcDateTime, nullable=True),
    Column("discharge_summary", Text, nullable=True),
    CheckConstraint(_one_of("state", REFERRAL_STATES), name="state"),
    Index("ix_referrals_to_institution_created_at", "to_institution", "created_at"),
    Index("ix_referrals_from_institution_created_at", "from_institution", "created_at"),
)
