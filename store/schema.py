"""The schema: every table of the store in one ``MetaData``.

Design notes
------------
- The schema is changed only by a migration (``store/migrations/versions``); a test
  upgrades an empty SQLite and PostgreSQL database to head and checks that Alembic finds
  no difference from this module.
- Keys are the domain's: an institution is its ``code`` (unique across the deployment),
  a person, device, session or token its opaque ``id``. References are foreign keys, so
  the database refuses a person of an institution that does not exist whatever the
  caller checked. The audit trail has none: it names what existed when it was written
  and must outlive any row it names.
- Times are ``UtcDateTime``: aware UTC datetimes in Python, ``timestamptz`` on
  PostgreSQL, ISO text (which sorts in time order) on SQLite. The domain's epoch
  seconds are converted at the repository boundary (:func:`from_epoch_s`).
- Secrets are never stored: a session cookie, API token or device credential is kept as
  the SHA-256 hex of the value handed out once; passwords as argon2id PHC strings.
- Constraint names follow one convention (below), so migrations can name what they
  alter on both databases.
- Room is left for the tables of the consult service and the ECG centre: new tables in
  this MetaData and a migration each.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Lengths match the domain's checks (consults.directory): codes and ids 64, names 200.
CODE: Final = 64
NAME: Final = 200
SHA256_HEX: Final = 64
IDENTITY: Final = 200  # a room-token identity or actor ("doctor:alice", "device:cart-1")

LEVELS: Final = ("province", "city", "county", "township", "village")
ROLES: Final = ("doctor", "expert", "coordinator", "ecg_reader", "admin", "auditor")
ADMIN_SCOPES: Final = ("institution", "deployment")
SERVICE_KINDS: Final = ("ecg", "consult")
OVERRIDES: Final = ("added", "removed")
STREAM_STATES: Final = ("live", "ended", "interrupted")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on both databases (SQLite keeps naive text: made aware here).

    A naive datetime is refused on the way in: it would be stored as if UTC whatever it
    meant.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a naive datetime cannot be stored; give it a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def from_epoch_s(seconds: float) -> datetime:
    """Epoch seconds (the domain's times) as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def to_epoch_s(moment: datetime) -> float:
    """An aware datetime as epoch seconds."""
    return moment.timestamp()


# SQLite's rowid (INTEGER PRIMARY KEY) is its fastest key; PostgreSQL gets a BIGINT.
BigKey = BigInteger().with_variant(Integer(), "sqlite")

# The directory

institutions = Table(
    "institutions",
    metadata,
    Column("code", String(CODE), primary_key=True),
    Column("name", String(NAME), nullable=False),
    Column("level", String(16), nullable=False),
    Column("parent", String(CODE), ForeignKey("institutions.code"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint(_one_of("level", LEVELS), name="level"),
    CheckConstraint("parent IS NULL OR parent <> code", name="not_own_parent"),
    Index("ix_institutions_parent", "parent"),
)

departments = Table(
    "departments",
    metadata,
    Column("institution", String(CODE), ForeignKey("institutions.code"), primary_key=True),
    Column("code", String(CODE), primary_key=True),
    Column("name", String(NAME), nullable=False),
)

people = Table(
    "people",
    metadata,
    Column("id", String(CODE), primary_key=True),
    Column("username", String(CODE), nullable=False, unique=True),
    Column("display_name", String(100), nullable=False),
    # NULL only for a deployment admin (the first one exists before any institution).
    Column("institution", String(CODE), ForeignKey("institutions.code"), nullable=True),
    # NULL: no department. A composite foreign key with a NULL part is not checked.
    Column("department", String(CODE), nullable=True),
    Column("specialty", String(100), nullable=True),
    Column("title", String(100), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(
        ["institution", "department"],
        ["departments.institution", "departments.code"],
        name="fk_people_department_departments",
    ),
    # The directory listing: people of an institution in username order (keyset pages).
    Index("ix_people_institution_username", "institution", "username"),
)

person_roles = Table(
    "person_roles",
    metadata,
    Column(
        "person_id", String(CODE), ForeignKey("people.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("role", String(16), primary_key=True),
    # Only for ``admin``: how far the rights reach.
    Column("scope", String(16), nullable=True),
    CheckConstraint(_one_of("role", ROLES), name="role"),
    CheckConstraint(
        "(role = 'admin' AND scope IN ('institution', 'deployment'))"
        " OR (role <> 'admin' AND scope IS NULL)",
        name="admin_scope",
    ),
    Index("ix_person_roles_role_person_id", "role", "person_id"),
)

credentials = Table(
    "credentials",
    metadata,
    Column(
        "person_id", String(CODE), ForeignKey("people.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("password_hash", Text, nullable=False),
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("locked_at", UtcDateTime, nullable=True),
    # RFC 6238 secret (enrolled when not NULL), encrypted at rest when the store is given
    # a key (store.directory.SecretBox).
    Column("totp_secret", Text, nullable=True),
    # The last 30 s step accepted: a code is accepted once only (replay).
    Column("totp_last_step", BigInteger, nullable=True),
)

role_policies = Table(
    "role_policies",
    metadata,
    Column("role", String(16), primary_key=True),
    Column("totp_required", Boolean, nullable=False, server_default="0"),
    CheckConstraint(_one_of("role", ROLES), name="role"),
)

login_sessions = Table(
    "login_sessions",
    metadata,
    Column("id", String(CODE), primary_key=True),
    Column("person_id", String(CODE), ForeignKey("people.id", ondelete="CASCADE"), nullable=False),
    Column("sha256", String(SHA256_HEX), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("ix_login_sessions_person_id", "person_id"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(CODE), primary_key=True),
    Column("person_id", String(CODE), ForeignKey("people.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("sha256", String(SHA256_HEX), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("ix_api_tokens_person_id", "person_id"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", String(CODE), primary_key=True),
    Column("name", String(NAME), nullable=False),
    Column("institution", String(CODE), ForeignKey("institutions.code"), nullable=False),
    Column("credential_sha256", String(SHA256_HEX), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("ix_devices_institution", "institution"),
)

service_relations = Table(
    "service_relations",
    metadata,
    Column("provider", String(CODE), ForeignKey("institutions.code"), primary_key=True),
    Column("client", String(CODE), ForeignKey("institutions.code"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("override", String(16), nullable=False),
    CheckConstraint(_one_of("kind", SERVICE_KINDS), name="kind"),
    CheckConstraint(_one_of("override", OVERRIDES), name="override"),
    CheckConstraint("provider <> client", name="not_self"),
    Index("ix_service_relations_client_kind", "client", "kind"),
)

# Rooms, bans and streams

rooms = Table(
    "rooms",
    metadata,
    Column("room", String(IDENTITY), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
)

# Chat in a room, kept as part of the consult's record (a consult's room is
# ``consult-<id>``), not in the audit trail.
chat_lines = Table(
    "chat_lines",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("room", String(IDENTITY), nullable=False),
    Column("identity", String(IDENTITY), nullable=False),
    Column("name", String(IDENTITY), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_chat_lines_room_id", "room", "id"),
)

bans = Table(
    "bans",
    metadata,
    Column("jti", String(IDENTITY), primary_key=True),
    Column("room", String(IDENTITY), nullable=False),
    Column("identity", String(IDENTITY), nullable=False),
    Column("by_identity", String(IDENTITY), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # A removal bans the identity in the room, whatever token it comes back with.
    Index("ix_bans_room_identity", "room", "identity"),
)

streams = Table(
    "streams",
    metadata,
    Column("id", String(CODE), primary_key=True),
    Column("device_id", String(CODE), ForeignKey("devices.id"), nullable=True),
    Column("institution", String(CODE), ForeignKey("institutions.code"), nullable=True),
    Column("room", String(IDENTITY), nullable=True),
    Column("consult", String(CODE), nullable=True),
    Column("patient", String(IDENTITY), nullable=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),
    Column("samples", BigInteger, nullable=False, server_default="0"),
    Column("state", String(16), nullable=False),
    CheckConstraint(_one_of("state", STREAM_STATES), name="state"),
    Index("ix_streams_institution_started_at", "institution", "started_at"),
    Index("ix_streams_patient", "patient"),
    Index("ix_streams_device_id", "device_id"),
)

# The audit trail (store.audit): append-only, each row chained to the one before.

GENESIS_HASH: Final = "0" * 64

audit = Table(
    "audit",
    metadata,
    Column("seq", BigKey, primary_key=True, autoincrement=False),
    Column("time", UtcDateTime, nullable=False),
    Column("actor", String(IDENTITY), nullable=False),
    Column("action", String(CODE), nullable=False),
    Column("target", String(IDENTITY), nullable=False, server_default=""),
    Column("institution", String(CODE), nullable=False, server_default=""),
    Column("patient", String(IDENTITY), nullable=False, server_default=""),
    Column("consult", String(CODE), nullable=False, server_default=""),
    Column("room", String(IDENTITY), nullable=False, server_default=""),
    # Canonical JSON text (store.audit.canonical_detail), NULL for none.
    Column("detail", Text, nullable=True),
    Column("prev_hash", String(SHA256_HEX), nullable=False),
    Column("hash", String(SHA256_HEX), nullable=False),
    Index("ix_audit_actor_seq", "actor", "seq"),
    Index("ix_audit_patient_seq", "patient", "seq"),
    Index("ix_audit_consult_seq", "consult", "seq"),
    Index("ix_audit_action_seq", "action", "seq"),
    Index("ix_audit_room_seq", "room", "seq"),
    Index("ix_audit_institution_seq", "institution", "seq"),
    Index("ix_audit_time", "time"),
)

# One row (id 1): incremented by every change of the institution tree or the service
# relations, in that change's transaction; readers reread the tree only when it moved.
directory_version = Table(
    "directory_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

# One row (id 1): the last seq and hash. Appenders lock it first, so two writers
# cannot both extend the same head (store.audit.append).
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(SHA256_HEX), nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

__all__ = [
    "GENESIS_HASH",
    "UtcDateTime",
    "api_tokens",
    "audit",
    "audit_head",
    "bans",
    "credentials",
    "departments",
    "devices",
    "directory_version",
    "from_epoch_s",
    "institutions",
    "login_sessions",
    "metadata",
    "people",
    "person_roles",
    "role_policies",
    "rooms",
    "service_relations",
    "streams",
    "to_epoch_s",
]

# The consult service's tables join this MetaData. Imported last, when every name above
# exists: store.consult_schema imports only this module, so either may be imported first.
from store import consult_schema as _consult_schema  # noqa: E402, F401
from store import reading_schema as _reading_schema  # noqa: E402, F401
