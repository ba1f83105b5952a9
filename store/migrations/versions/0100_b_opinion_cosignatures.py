"""Co-signatures of signed opinions (multidisciplinary consults): one row per version
and co-signing expert, the signed document kept as its canonical JSON.

Revision ID: 0100b
Revises: 0100
Create Date: 2026-12-02 14:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.schema

revision: str = "0100b"
down_revision: str | None = "0100"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "opinion_cosignatures",
        sa.Column("consult", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("signer", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("key_fingerprint", sa.String(length=80), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("signed_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consult"],
            ["consults.id"],
            name=op.f("fk_opinion_cosignatures_consult_consults"),
        ),
        sa.PrimaryKeyConstraint(
            "consult", "version", "signer", name=op.f("pk_opinion_cosignatures")
        ),
    )


def downgrade() -> None:
    op.drop_table("opinion_cosignatures")
