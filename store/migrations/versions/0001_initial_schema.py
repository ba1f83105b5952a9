"""The initial schema: the directory, accounts, rooms, bans, streams and the audit chain.

Revision ID: 0001
Revises:
Create Date: 2026-12-02 09:45:30.382836
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.schema
from store.legacy import LEGACY, adopt, is_legacy

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A data directory of the first SQLite store: its tables step aside, adopted below.
    legacy = is_legacy(op.get_bind())
    if legacy:
        op.drop_index("audit_room", table_name="audit")
        for name in LEGACY:
            op.rename_table(name, f"legacy_{name}")
    op.create_table(
        "audit",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("time", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), server_default="", nullable=False),
        sa.Column("institution", sa.String(length=64), server_default="", nullable=False),
        sa.Column("patient", sa.String(length=200), server_default="", nullable=False),
        sa.Column("consult", sa.String(length=64), server_default="", nullable=False),
        sa.Column("room", sa.String(length=200), server_default="", nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit")),
    )
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.create_index("ix_audit_action_seq", ["action", "seq"], unique=False)
        batch_op.create_index("ix_audit_actor_seq", ["actor", "seq"], unique=False)
        batch_op.create_index("ix_audit_consult_seq", ["consult", "seq"], unique=False)
        batch_op.create_index("ix_audit_institution_seq", ["institution", "seq"], unique=False)
        batch_op.create_index("ix_audit_patient_seq", ["patient", "seq"], unique=False)
        batch_op.create_index("ix_audit_room_seq", ["room", "seq"], unique=False)
        batch_op.create_index("ix_audit_time", ["time"], unique=False)

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    # The chain starts empty: seq 0, the genesis hash.
    op.bulk_insert(
        sa.table(
            "audit_head",
            sa.column("id", sa.Integer()),
            sa.column("seq", sa.BigInteger()),
            sa.column("hash", sa.String()),
        ),
        [{"id": 1, "seq": 0, "hash": store.schema.GENESIS_HASH}],
    )
    op.create_table(
        "bans",
        sa.Column("jti", sa.String(length=200), nullable=False),
        sa.Column("room", sa.String(length=200), nullable=False),
        sa.Column("identity", sa.String(length=200), nullable=False),
        sa.Column("by_identity", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_bans")),
    )
    with op.batch_alter_table("bans", schema=None) as batch_op:
        batch_op.create_index("ix_bans_room_identity", ["room", "identity"], unique=False)

    op.create_table(
        "institutions",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("parent", sa.String(length=64), nullable=True),
        sa.Column("created_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "level IN ('province', 'city', 'county', 'township', 'village')",
            name=op.f("ck_institutions_level"),
        ),
        sa.CheckConstraint(
            "parent IS NULL OR parent <> code", name=op.f("ck_institutions_not_own_parent")
        ),
        sa.ForeignKeyConstraint(
            ["parent"], ["institutions.code"], name=op.f("fk_institutions_parent_institutions")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_institutions")),
    )
    with op.batch_alter_table("institutions", schema=None) as batch_op:
        batch_op.create_index("ix_institutions_parent", ["parent"], unique=False)

    op.create_table(
        "role_policies",
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("totp_required", sa.Boolean(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "role IN ('doctor', 'expert', 'coordinator', 'ecg_reader', 'admin', 'auditor')",
            name=op.f("ck_role_policies_role"),
        ),
        sa.PrimaryKeyConstraint("role", name=op.f("pk_role_policies")),
    )
    op.create_table(
        "rooms",
        sa.Column("room", sa.String(length=200), nullable=False),
        sa.Column("created_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("room", name=op.f("pk_rooms")),
    )
    op.create_table(
        "departments",
        sa.Column("institution", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution"],
            ["institutions.code"],
            name=op.f("fk_departments_institution_institutions"),
        ),
        sa.PrimaryKeyConstraint("institution", "code", name=op.f("pk_departments")),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("institution", sa.String(length=64), nullable=False),
        sa.Column("credential_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["institution"], ["institutions.code"], name=op.f("fk_devices_institution_institutions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("credential_sha256", name=op.f("uq_devices_credential_sha256")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index("ix_devices_institution", ["institution"], unique=False)

    op.create_table(
        "service_relations",
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("override", sa.String(length=16), nullable=False),
        sa.CheckConstraint("kind IN ('ecg', 'consult')", name=op.f("ck_service_relations_kind")),
        sa.CheckConstraint(
            "override IN ('added', 'removed')", name=op.f("ck_service_relations_override")
        ),
        sa.CheckConstraint("provider <> client", name=op.f("ck_service_relations_not_self")),
        sa.ForeignKeyConstraint(
            ["client"], ["institutions.code"], name=op.f("fk_service_relations_client_institutions")
        ),
        sa.ForeignKeyConstraint(
            ["provider"],
            ["institutions.code"],
            name=op.f("fk_service_relations_provider_institutions"),
        ),
        sa.PrimaryKeyConstraint("provider", "client", "kind", name=op.f("pk_service_relations")),
    )
    with op.batch_alter_table("service_relations", schema=None) as batch_op:
        batch_op.create_index("ix_service_relations_client_kind", ["client", "kind"], unique=False)

    op.create_table(
        "people",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("institution", sa.String(length=64), nullable=True),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("specialty", sa.String(length=100), nullable=True),
        sa.Column("title", sa.String(length=100), nullable=True),
        sa.Column("created_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution", "department"],
            ["departments.institution", "departments.code"],
            name="fk_people_department_departments",
        ),
        sa.ForeignKeyConstraint(
            ["institution"], ["institutions.code"], name=op.f("fk_people_institution_institutions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_people")),
        sa.UniqueConstraint("username", name=op.f("uq_people_username")),
    )
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.create_index(
            "ix_people_institution_username", ["institution", "username"], unique=False
        )

    op.create_table(
        "streams",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("institution", sa.String(length=64), nullable=True),
        sa.Column("room", sa.String(length=200), nullable=True),
        sa.Column("consult", sa.String(length=64), nullable=True),
        sa.Column("patient", sa.String(length=200), nullable=True),
        sa.Column("started_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("samples", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "state IN ('live', 'ended', 'interrupted')", name=op.f("ck_streams_state")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_streams_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["institution"], ["institutions.code"], name=op.f("fk_streams_institution_institutions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_streams")),
    )
    with op.batch_alter_table("streams", schema=None) as batch_op:
        batch_op.create_index("ix_streams_device_id", ["device_id"], unique=False)
        batch_op.create_index(
            "ix_streams_institution_started_at", ["institution", "started_at"], unique=False
        )
        batch_op.create_index("ix_streams_patient", ["patient"], unique=False)

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_api_tokens_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("sha256", name=op.f("uq_api_tokens_sha256")),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_api_tokens_person_id", ["person_id"], unique=False)

    op.create_table(
        "credentials",
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_at", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("totp_secret", sa.Text(), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_credentials_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_credentials")),
    )
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_login_sessions_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_sessions")),
        sa.UniqueConstraint("sha256", name=op.f("uq_login_sessions_sha256")),
    )
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_login_sessions_person_id", ["person_id"], unique=False)

    op.create_table(
        "person_roles",
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=True),
        sa.CheckConstraint(
            "(role = 'admin' AND scope IN ('institution', 'deployment'))"
            " OR (role <> 'admin' AND scope IS NULL)",
            name=op.f("ck_person_roles_admin_scope"),
        ),
        sa.CheckConstraint(
            "role IN ('doctor', 'expert', 'coordinator', 'ecg_reader', 'admin', 'auditor')",
            name=op.f("ck_person_roles_role"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_person_roles_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("person_id", "role", name=op.f("pk_person_roles")),
    )
    with op.batch_alter_table("person_roles", schema=None) as batch_op:
        batch_op.create_index("ix_person_roles_role_person_id", ["role", "person_id"], unique=False)

    if legacy:
        adopt(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("person_roles", schema=None) as batch_op:
        batch_op.drop_index("ix_person_roles_role_person_id")

    op.drop_table("person_roles")
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_login_sessions_person_id")

    op.drop_table("login_sessions")
    op.drop_table("credentials")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_api_tokens_person_id")

    op.drop_table("api_tokens")
    with op.batch_alter_table("streams", schema=None) as batch_op:
        batch_op.drop_index("ix_streams_patient")
        batch_op.drop_index("ix_streams_institution_started_at")
        batch_op.drop_index("ix_streams_device_id")

    op.drop_table("streams")
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.drop_index("ix_people_institution_username")

    op.drop_table("people")
    with op.batch_alter_table("service_relations", schema=None) as batch_op:
        batch_op.drop_index("ix_service_relations_client_kind")

    op.drop_table("service_relations")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index("ix_devices_institution")

    op.drop_table("devices")
    op.drop_table("departments")
    op.drop_table("rooms")
    op.drop_table("role_policies")
    with op.batch_alter_table("institutions", schema=None) as batch_op:
        batch_op.drop_index("ix_institutions_parent")

    op.drop_table("institutions")
    with op.batch_alter_table("bans", schema=None) as batch_op:
        batch_op.drop_index("ix_bans_room_identity")

    op.drop_table("bans")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_time")
        batch_op.drop_index("ix_audit_room_seq")
        batch_op.drop_index("ix_audit_patient_seq")
        batch_op.drop_index("ix_audit_institution_seq")
        batch_op.drop_index("ix_audit_consult_seq")
        batch_op.drop_index("ix_audit_actor_seq")
        batch_op.drop_index("ix_audit_action_seq")

    op.drop_table("audit")
