"""The request's proposed times and the consent form's attachment, which the national
rules ask an invitation to record.

Revision ID: 0100d
Revises: 0100c
Create Date: 2026-12-02 14:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0100d"
down_revision: str | None = "0100c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("consults", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consent_form", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("proposed_times", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consults", schema=None) as batch_op:
        batch_op.drop_column("proposed_times")
        batch_op.drop_column("consent_form")
