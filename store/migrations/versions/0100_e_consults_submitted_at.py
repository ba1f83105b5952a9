"""An index on consults.submitted_at: the supervision statistics read the consults
submitted in a period.

Revision ID: 0100e
Revises: 0100d
Create Date: 2026-12-02 14:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0100e"
down_revision: str | None = "0100d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("consults", schema=None) as batch_op:
        batch_op.create_index("ix_consults_submitted_at", ["submitted_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("consults", schema=None) as batch_op:
        batch_op.drop_index("ix_consults_submitted_at")
