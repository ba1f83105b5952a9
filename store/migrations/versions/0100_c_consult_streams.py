"""ECG streams attached to consults after the fact (the clinic's cart sent them before
the request, or without naming it).

Revision ID: 0100c
Revises: 0100b
Create Date: 2026-12-02 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.schema

revision: str = "0100c"
down_revision: str | None = "0100b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consult_streams",
        sa.Column("consult", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("attached_by", sa.String(length=64), nullable=False),
        sa.Column("attached_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consult"], ["consults.id"], name=op.f("fk_consult_streams_consult_consults")
        ),
        sa.ForeignKeyConstraint(
            ["stream"], ["streams.id"], name=op.f("fk_consult_streams_stream_streams")
        ),
        sa.PrimaryKeyConstraint("consult", "stream", name=op.f("pk_consult_streams")),
    )
    with op.batch_alter_table("consult_streams", schema=None) as batch_op:
        batch_op.create_index("ix_consult_streams_stream", ["stream"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("consult_streams", schema=None) as batch_op:
        batch_op.drop_index("ix_consult_streams_stream")
    op.drop_table("consult_streams")
