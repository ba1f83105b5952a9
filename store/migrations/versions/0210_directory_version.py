"""The directory's version: one counter that every change of the institution tree or of
the service relations increments in its transaction, so that readers keep the tree and
the relations and reread them only when it moved (store.directory). And an index of
reading tasks by signer (a reader's own worklist: claimed or signed by them).

Revision ID: 0210
Revises: 0200
Create Date: 2026-12-02 19:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0210"
down_revision: str | None = "0200"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "directory_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_directory_version_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_version")),
    )
    op.bulk_insert(
        sa.table(
            "directory_version",
            sa.column("id", sa.Integer()),
            sa.column("version", sa.BigInteger()),
        ),
        [{"id": 1, "version": 0}],
    )
    with op.batch_alter_table("reading_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_reading_tasks_signer", ["signer"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reading_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_reading_tasks_signer")
    op.drop_table("directory_version")
