"""The ECG centre: reading tasks, their draft reports and signed versions, and critical
values (the 危急值 register).

Revision ID: 0200
Revises: 0100g
Create Date: 2026-12-02 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.schema

revision: str = "0200"
down_revision: str | None = "0100g"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = store.schema.UtcDateTime(timezone=True)
_READING_STATES = "'new', 'claimed', 'draft', 'signed', 'amended', 'returned'"
_CRITICAL_STATES = "'raised', 'notified', 'escalated', 'acknowledged'"


def upgrade() -> None:
    op.create_table(
        "reading_tasks",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("clinic", sa.String(length=64), nullable=False),
        sa.Column("centre", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=True),
        sa.Column("record", sa.String(length=64), nullable=True),
        sa.Column("patient", sa.String(length=200), nullable=True),
        sa.Column("received_at", _TIME, nullable=False),
        sa.Column("stat", sa.Boolean(), nullable=False),
        sa.Column("urgency", sa.Integer(), nullable=False),
        sa.Column("critical", sa.Text(), nullable=False),
        sa.Column("top_statements", sa.Text(), nullable=False),
        sa.Column("claimant", sa.String(length=64), nullable=True),
        sa.Column("signer", sa.String(length=64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("signed_at", _TIME, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.CheckConstraint(f"state IN ({_READING_STATES})", name=op.f("ck_reading_tasks_state")),
        sa.CheckConstraint("urgency BETWEEN 0 AND 3", name=op.f("ck_reading_tasks_urgency")),
        sa.ForeignKeyConstraint(
            ["centre"], ["institutions.code"], name=op.f("fk_reading_tasks_centre_institutions")
        ),
        sa.ForeignKeyConstraint(
            ["clinic"], ["institutions.code"], name=op.f("fk_reading_tasks_clinic_institutions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reading_tasks")),
        sa.UniqueConstraint("record", name=op.f("uq_reading_tasks_record")),
        sa.UniqueConstraint("stream", name=op.f("uq_reading_tasks_stream")),
    )
    with op.batch_alter_table("reading_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_reading_tasks_claimant", ["claimant"], unique=False)
        batch_op.create_index(
            "ix_reading_tasks_clinic_state_urgency",
            ["clinic", "state", "urgency", "received_at"],
            unique=False,
        )
        batch_op.create_index("ix_reading_tasks_patient", ["patient"], unique=False)
        batch_op.create_index(
            "ix_reading_tasks_state_urgency", ["state", "urgency", "received_at"], unique=False
        )
    op.create_table(
        "reading_reports",
        sa.Column("reading", sa.String(length=64), nullable=False),
        sa.Column("statements", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["reading"], ["reading_tasks.id"], name=op.f("fk_reading_reports_reading_reading_tasks")
        ),
        sa.PrimaryKeyConstraint("reading", name=op.f("pk_reading_reports")),
    )
    op.create_table(
        "reading_versions",
        sa.Column("reading", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("key_fingerprint", sa.String(length=80), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("signer", sa.String(length=64), nullable=False),
        sa.Column("signed_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["reading"],
            ["reading_tasks.id"],
            name=op.f("fk_reading_versions_reading_reading_tasks"),
        ),
        sa.PrimaryKeyConstraint("reading", "version", name=op.f("pk_reading_versions")),
    )
    op.create_table(
        "critical_values",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("reading", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("clinic", sa.String(length=64), nullable=False),
        sa.Column("centre", sa.String(length=64), nullable=False),
        sa.Column("patient", sa.String(length=200), nullable=True),
        sa.Column("raised_by", sa.String(length=64), nullable=True),
        sa.Column("detected_at", _TIME, nullable=False),
        sa.Column("notified", sa.Text(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("notified_at", _TIME, nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("acknowledged_at", _TIME, nullable=True),
        sa.Column("read_back", sa.Text(), nullable=True),
        sa.Column("escalate_at", _TIME, nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.CheckConstraint(f"state IN ({_CRITICAL_STATES})", name=op.f("ck_critical_values_state")),
        sa.ForeignKeyConstraint(
            ["centre"], ["institutions.code"], name=op.f("fk_critical_values_centre_institutions")
        ),
        sa.ForeignKeyConstraint(
            ["clinic"], ["institutions.code"], name=op.f("fk_critical_values_clinic_institutions")
        ),
        sa.ForeignKeyConstraint(
            ["reading"],
            ["reading_tasks.id"],
            name=op.f("fk_critical_values_reading_reading_tasks"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_critical_values")),
        sa.UniqueConstraint("reading", "code", name="uq_critical_values_reading_code"),
    )
    with op.batch_alter_table("critical_values", schema=None) as batch_op:
        batch_op.create_index(
            "ix_critical_values_clinic_detected_at", ["clinic", "detected_at"], unique=False
        )
        batch_op.create_index("ix_critical_values_escalate_at", ["escalate_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("critical_values", schema=None) as batch_op:
        batch_op.drop_index("ix_critical_values_escalate_at")
        batch_op.drop_index("ix_critical_values_clinic_detected_at")
    op.drop_table("critical_values")
    op.drop_table("reading_versions")
    op.drop_table("reading_reports")
    with op.batch_alter_table("reading_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_reading_tasks_state_urgency")
        batch_op.drop_index("ix_reading_tasks_patient")
        batch_op.drop_index("ix_reading_tasks_clinic_state_urgency")
        batch_op.drop_index("ix_reading_tasks_claimant")
    op.drop_table("reading_tasks")
