"""A reader's corrections of the global fiducials on the median beat (ms by name), kept
with the draft report: one row per reading task.

Revision ID: 0220
Revises: 0210
Create Date: 2026-12-03 08:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.schema

revision: str = "0220"
down_revision: str | None = "0210"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reading_fiducials",
        sa.Column("reading", sa.String(length=64), nullable=False),
        sa.Column("fiducials_ms", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reading"],
            ["reading_tasks.id"],
            name=op.f("fk_reading_fiducials_reading_reading_tasks"),
        ),
        sa.PrimaryKeyConstraint("reading", name=op.f("pk_reading_fiducials")),
    )


def downgrade() -> None:
    op.drop_table("reading_fiducials")
