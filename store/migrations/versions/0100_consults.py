"""The consult service: consults, their experts, attachments, opinion drafts and signed
versions, signing keys, referral slots and referrals (a slot held by one live referral).

Revision ID: 0100
Revises: 0001
Create Date: 2026-12-02 10:40:08.735693
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.schema

revision: str = "0100"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consults",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("clinic", sa.String(length=64), nullable=False),
        sa.Column("centre", sa.String(length=64), nullable=False),
        sa.Column("lead_expert", sa.String(length=64), nullable=True),
        sa.Column("created_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("scheduled_start", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("signed_at", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_reason", sa.Text(), nullable=True),
        sa.Column("accept_due", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=False),
        sa.Column("patient_sex", sa.String(length=16), nullable=False),
        sa.Column("patient_birth_date", sa.Date(), nullable=False),
        sa.Column("record_number", sa.String(length=64), nullable=False),
        sa.Column("national_id_sealed", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("specialty", sa.String(length=64), nullable=False),
        sa.Column("title_wanted", sa.String(length=64), nullable=True),
        sa.Column("expert_wanted", sa.String(length=64), nullable=True),
        sa.Column("consent_kind", sa.String(length=16), nullable=False),
        sa.Column("consent_recorded_by", sa.String(length=64), nullable=False),
        sa.Column("consent_time", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("consent_witness", sa.String(length=64), nullable=True),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.CheckConstraint("mode IN ('realtime', 'async')", name=op.f("ck_consults_mode")),
        sa.CheckConstraint(
            "priority IN ('routine', 'urgent', 'emergency')", name=op.f("ck_consults_priority")
        ),
        sa.CheckConstraint(
            "state IN ('draft', 'submitted', 'assigned', 'accepted', 'declined', 'scheduled', 'in_consult', 'reporting', 'reported', 'closed', 'cancelled', 'expired')",  # noqa: E501
            name=op.f("ck_consults_state"),
        ),
        sa.ForeignKeyConstraint(
            ["centre"], ["institutions.code"], name=op.f("fk_consults_centre_institutions")
        ),
        sa.ForeignKeyConstraint(
            ["clinic"], ["institutions.code"], name=op.f("fk_consults_clinic_institutions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consults")),
    )
    with op.batch_alter_table("consults", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consults_centre_state_accept_due", ["centre", "state", "accept_due"], unique=False
        )
        batch_op.create_index(
            "ix_consults_clinic_created_at", ["clinic", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_consults_requester_created_at", ["requester", "created_at"], unique=False
        )
        batch_op.create_index("ix_consults_state_expires_at", ["state", "expires_at"], unique=False)

    op.create_table(
        "referral_slots",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("institution", sa.String(length=64), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("start", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("end", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution"],
            ["institutions.code"],
            name=op.f("fk_referral_slots_institution_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral_slots")),
    )
    with op.batch_alter_table("referral_slots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_referral_slots_institution_start", ["institution", "start"], unique=False
        )

    op.create_table(
        "consult_attachments",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("consult", sa.String(length=64), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("uploaded_by", sa.String(length=64), nullable=False),
        sa.Column("uploaded_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consult"], ["consults.id"], name=op.f("fk_consult_attachments_consult_consults")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consult_attachments")),
    )
    with op.batch_alter_table("consult_attachments", schema=None) as batch_op:
        batch_op.create_index("ix_consult_attachments_consult", ["consult"], unique=False)

    op.create_table(
        "consult_experts",
        sa.Column("consult", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["consult"], ["consults.id"], name=op.f("fk_consult_experts_consult_consults")
        ),
        sa.PrimaryKeyConstraint("consult", "username", name=op.f("pk_consult_experts")),
    )
    with op.batch_alter_table("consult_experts", schema=None) as batch_op:
        batch_op.create_index("ix_consult_experts_username", ["username"], unique=False)

    op.create_table(
        "opinion_drafts",
        sa.Column("consult", sa.String(length=64), nullable=False),
        sa.Column("findings", sa.Text(), nullable=False),
        sa.Column("diagnosis", sa.Text(), nullable=False),
        sa.Column("recommendations", sa.Text(), nullable=False),
        sa.Column("referral_advice", sa.Text(), nullable=False),
        sa.Column("updated_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consult"], ["consults.id"], name=op.f("fk_opinion_drafts_consult_consults")
        ),
        sa.PrimaryKeyConstraint("consult", name=op.f("pk_opinion_drafts")),
    )
    op.create_table(
        "opinion_versions",
        sa.Column("consult", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("key_fingerprint", sa.String(length=80), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("signer", sa.String(length=64), nullable=False),
        sa.Column("signed_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consult"], ["consults.id"], name=op.f("fk_opinion_versions_consult_consults")
        ),
        sa.PrimaryKeyConstraint("consult", "version", name=op.f("pk_opinion_versions")),
    )
    op.create_table(
        "referrals",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("from_institution", sa.String(length=64), nullable=False),
        sa.Column("to_institution", sa.String(length=64), nullable=False),
        sa.Column("to_department", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.String(length=64), nullable=True),
        sa.Column("held_slot", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("consult", sa.String(length=64), nullable=True),
        sa.Column("decline_reason", sa.Text(), nullable=True),
        sa.Column("arrived_at", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("discharge_summary", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('requested', 'accepted', 'declined', 'arrived', 'referred_back', 'cancelled')",  # noqa: E501
            name=op.f("ck_referrals_state"),
        ),
        sa.ForeignKeyConstraint(
            ["consult"], ["consults.id"], name=op.f("fk_referrals_consult_consults")
        ),
        sa.ForeignKeyConstraint(
            ["from_institution"],
            ["institutions.code"],
            name=op.f("fk_referrals_from_institution_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["slot"], ["referral_slots.id"], name=op.f("fk_referrals_slot_referral_slots")
        ),
        sa.ForeignKeyConstraint(
            ["to_institution"],
            ["institutions.code"],
            name=op.f("fk_referrals_to_institution_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referrals")),
        sa.UniqueConstraint("held_slot", name=op.f("uq_referrals_held_slot")),
    )
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_referrals_from_institution_created_at",
            ["from_institution", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_referrals_to_institution_created_at", ["to_institution", "created_at"], unique=False
        )

    op.create_table(
        "signer_keys",
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=80), nullable=False),
        sa.Column("private_key_sealed", sa.Text(), nullable=False),
        sa.Column("created_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_signer_keys_person_id_people")
        ),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_signer_keys")),
        sa.UniqueConstraint("public_key", name=op.f("uq_signer_keys_public_key")),
    )


def downgrade() -> None:
    op.drop_table("signer_keys")
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index("ix_referrals_to_institution_created_at")
        batch_op.drop_index("ix_referrals_from_institution_created_at")

    op.drop_table("referrals")
    op.drop_table("opinion_versions")
    op.drop_table("opinion_drafts")
    with op.batch_alter_table("consult_experts", schema=None) as batch_op:
        batch_op.drop_index("ix_consult_experts_username")

    op.drop_table("consult_experts")
    with op.batch_alter_table("consult_attachments", schema=None) as batch_op:
        batch_op.drop_index("ix_consult_attachments_consult")

    op.drop_table("consult_attachments")
    with op.batch_alter_table("referral_slots", schema=None) as batch_op:
        batch_op.drop_index("ix_referral_slots_institution_start")

    op.drop_table("referral_slots")
    with op.batch_alter_table("consults", schema=None) as batch_op:
        batch_op.drop_index("ix_consults_state_expires_at")
        batch_op.drop_index("ix_consults_requester_created_at")
        batch_op.drop_index("ix_consults_clinic_created_at")
        batch_op.drop_index("ix_consults_centre_state_accept_due")

    op.drop_table("consults")
