"""When the sweep warns that a consult's acceptance deadline nears (``warn_at``) and
reminds both sides that a scheduled consult starts soon (``remind_at``); each is NULL
once done.

Revision ID: 0100f
Revises: 0100e
Create Date: 2026-12-02 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.schema

revision: str = "0100f"
down_revision: str | None = "0100e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("consults", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("warn_at", store.schema.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("remind_at", store.schema.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_consults_warn_at", ["warn_at"], unique=False)
        batch_op.create_index("ix_consults_remind_at", ["remind_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("consults", schema=None) as batch_op:
        batch_op.drop_index("ix_consults_remind_at")
        batch_op.drop_index("ix_consults_warn_at")
        batch_op.drop_column("remind_at")
        batch_op.drop_column("warn_at")
