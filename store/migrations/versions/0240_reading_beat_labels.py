"""A reader's beat labels (N, S, V, paced, artefact by the beat's index), kept with the
draft report: one row per reading task.

Revision ID: 0240
Revises: 0230
Create Date: 2026-12-04 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.schema

revision: str = "0240"
down_revision: str | None = "0230"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reading_beat_labels",
        sa.Column("reading", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reading"],
            ["reading_tasks.id"],
            name=op.f("fk_reading_beat_labels_reading_reading_tasks"),
        ),
        sa.PrimaryKeyConstraint("reading", name=op.f("pk_reading_beat_labels")),
    )


def downgrade() -> None:
    op.drop_table("reading_beat_labels")
