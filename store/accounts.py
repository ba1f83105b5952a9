"""Credentials, login sessions, API tokens and the accounts' audit sink on the SQL store:
:class:`consults.repositories.CredentialRepository`, ``SessionRepository`` and
``AuditSink``.

Design notes
------------
- The two writes that race between nodes are single statements, atomic on both
  databases without a lock held across a round trip: ``record_failed_login`` is
  ``UPDATE ... SET failed_logins = failed_logins + 1 ... RETURNING failed_logins``;
  ``accept_totp_step`` is ``UPDATE ... WHERE totp_last_step IS NULL OR
  totp_last_step < :step`` and answers whether it changed a row, so of two logins
  with the same code exactly one wins.
- TOTP secrets are sealed at rest when the store has a key (:mod:`store.secrets`),
  bound to the person id.
- ``AuditSink.append`` is one transaction of its own (the chain's lock, one row), durable
  when it returns: a login's row is on disk before the login is answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from consults.directory import ApiToken, Credentials, LoginSession, Role
from consults.errors import NotFound, RepositoryError
from consults.repositories import AuditEvent
from store import audit as chain
from store import schema
from store.directory import unit_of_work
from store.schema import api_tokens, from_epoch_s, login_sessions, role_policies, to_epoch_s
from store.secrets import SecretBox, SecretError

__all__ = ["SqlAuditSink", "SqlCredentialRepository", "SqlSessionRepository"]

creds_t = schema.credentials


def _epoch(moment: Any) -> float | None:
    return None if moment is None else to_epoch_s(moment)


def _moment(seconds: float | None) -> Any:
    return None if seconds is None else from_epoch_s(seconds)


class SqlCredentialRepository:
    """:class:`consults.repositories.CredentialRepository` on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine, *, secrets: SecretBox | None = None) -> None:
        self.engine = engine
        self._box = secrets or SecretBox(None)

    def get_credentials(self, person_id: str) -> Credentials | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(select(creds_t).where(creds_t.c.person_id == person_id)).first()
        if row is None:
            return None
        try:
            secret = self._box.open(row.totp_secret, person_id)
        except SecretError as exc:
            raise RepositoryError("a stored second factor cannot be read") from exc
        return Credentials(
            person_id=row.person_id,
            password_hash=row.password_hash,
            failed_logins=row.failed_logins,
            locked_at_s=_epoch(row.locked_at),
            totp_secret=secret,
            totp_last_step=row.totp_last_step,
        )

    def _set(self, person_id: str, **values: Any) -> None:
        with unit_of_work(self.engine) as conn:
            done = conn.execute(
                update(creds_t).where(creds_t.c.person_id == person_id).values(**values)
            )
            if done.rowcount == 0:
                raise NotFound("person", person_id)

    def set_password_hash(self, person_id: str, password_hash: str) -> None:
        self._set(person_id, password_hash=password_hash)

    def record_failed_login(self, person_id: str, at_s: float) -> int:
        with unit_of_work(self.engine) as conn:
            count = conn.execute(
                update(creds_t)
                .where(creds_t.c.person_id == person_id)
                .values(failed_logins=creds_t.c.failed_logins + 1)
                .returning(creds_t.c.failed_logins)
            ).scalar_one_or_none()
        if count is None:
            raise NotFound("person", person_id)
        return int(count)

    def record_successful_login(self, person_id: str, at_s: float) -> None:
        self._set(person_id, failed_logins=0)

    def lock(self, person_id: str, at_s: float) -> None:
        self._set(person_id, locked_at=from_epoch_s(at_s))

    def unlock(self, person_id: str) -> None:
        self._set(person_id, locked_at=None, failed_logins=0)

    def set_totp_secret(self, person_id: str, secret: str | None) -> None:
        self._set(person_id, totp_secret=self._box.seal(secret, person_id), totp_last_step=None)

    def accept_totp_step(self, person_id: str, step: int) -> bool:
        with unit_of_work(self.engine) as conn:
            done = conn.execute(
                update(creds_t)
                .where(
                    (creds_t.c.person_id == person_id)
                    & (creds_t.c.totp_last_step.is_(None) | (creds_t.c.totp_last_step < step))
                )
                .values(totp_last_step=step)
            )
            return done.rowcount == 1

    def totp_required_roles(self) -> frozenset[Role]:
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(role_policies.c.role).where(role_policies.c.totp_required.is_(True))
            )
            return frozenset(Role(role) for role in rows.scalars())

    def set_totp_required_roles(self, roles: frozenset[Role]) -> None:
        with unit_of_work(self.engine) as conn:
            conn.execute(delete(role_policies))
            if roles:
                conn.execute(
                    insert(role_policies),
                    [{"role": r.value, "totp_required": True} for r in sorted(roles, key=str)],
                )


def _session(row: Any) -> LoginSession:
    return LoginSession(
        id=row.id,
        person_id=row.person_id,
        sha256=row.sha256,
        created_at_s=to_epoch_s(row.created_at),
        expires_at_s=to_epoch_s(row.expires_at),
        revoked_at_s=_epoch(row.revoked_at),
    )


def _token(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id,
        person_id=row.person_id,
        name=row.name,
        sha256=row.sha256,
        created_at_s=to_epoch_s(row.created_at),
        expires_at_s=_epoch(row.expires_at),
        revoked_at_s=_epoch(row.revoked_at),
    )


class SqlSessionRepository:
    """:class:`consults.repositories.SessionRepository` (login sessions, API tokens)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add_session(self, session: LoginSession) -> None:
        with unit_of_work(self.engine) as conn:
            conn.execute(
                insert(login_sessions).values(
                    id=session.id,
                    person_id=session.person_id,
                    sha256=session.sha256,
                    created_at=from_epoch_s(session.created_at_s),
                    expires_at=from_epoch_s(session.expires_at_s),
                    revoked_at=_moment(session.revoked_at_s),
                )
            )

    def session_by_sha256(self, sha256: str) -> LoginSession | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(
                select(login_sessions).where(login_sessions.c.sha256 == sha256)
            ).first()
        return None if row is None else _session(row)

    def revoke_session(self, session_id: str, at_s: float) -> None:
        with unit_of_work(self.engine) as conn:
            conn.execute(
                update(login_sessions)
                .where((login_sessions.c.id == session_id) & login_sessions.c.revoked_at.is_(None))
                .values(revoked_at=from_epoch_s(at_s))
            )

    def revoke_sessions_of(self, person_id: str, at_s: float) -> int:
        at = from_epoch_s(at_s)
        with unit_of_work(self.engine) as conn:
            done = conn.execute(
                update(login_sessions)
                .where(
                    (login_sessions.c.person_id == person_id)
                    & login_sessions.c.revoked_at.is_(None)
                    & (login_sessions.c.expires_at > at)
                )
                .values(revoked_at=at)
            )
            return int(done.rowcount)

    def revoked_since(self, since_s: float) -> tuple[list[str], list[str]]:
        """The ids of the login sessions and API tokens revoked at or after ``since_s``:
        the server refuses the room tokens minted with them after a restart too (a room
        token lasts at most as long as it looks back)."""
        since = from_epoch_s(since_s)
        with unit_of_work(self.engine, read=True) as conn:
            sessions = conn.execute(
                select(login_sessions.c.id).where(login_sessions.c.revoked_at >= since)
            )
            session_ids = [row.id for row in sessions]
            tokens = conn.execute(select(api_tokens.c.id).where(api_tokens.c.revoked_at >= since))
            return session_ids, [row.id for row in tokens]

    def add_api_token(self, token: ApiToken) -> None:
        with unit_of_work(self.engine) as conn:
            conn.execute(
                insert(api_tokens).values(
                    id=token.id,
                    person_id=token.person_id,
                    name=token.name,
                    sha256=token.sha256,
                    created_at=from_epoch_s(token.created_at_s),
                    expires_at=_moment(token.expires_at_s),
                    revoked_at=_moment(token.revoked_at_s),
                )
            )

    def api_token_by_sha256(self, sha256: str) -> ApiToken | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.sha256 == sha256)).first()
        return None if row is None else _token(row)

    def list_api_tokens(self, person_id: str) -> Sequence[ApiToken]:
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(api_tokens)
                .where(api_tokens.c.person_id == person_id)
                .order_by(api_tokens.c.created_at.desc(), api_tokens.c.id)
            )
            return [_token(row) for row in rows]

    def revoke_api_token(self, token_id: str, at_s: float) -> None:
        with unit_of_work(self.engine) as conn:
            exists = conn.execute(
                select(api_tokens.c.id).where(api_tokens.c.id == token_id)
            ).first()
            if exists is None:
                raise NotFound("token", token_id)
            conn.execute(
                update(api_tokens)
                .where((api_tokens.c.id == token_id) & api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=from_epoch_s(at_s))
            )


def audit_record(event: AuditEvent) -> chain.AuditRecord:
    """The chain's record of a domain event: institution, patient and consult in their
    indexed columns, outcome and details in ``detail``."""
    detail: dict[str, Any] = {"outcome": event.outcome, **event.details}
    return chain.AuditRecord(
        time=from_epoch_s(event.at_s),
        actor=event.actor or "",
        action=event.action,
        target=event.target or "",
        institution=event.institution or "",
        patient=event.patient or "",
        consult=event.consult or "",
        detail=detail,
    )


class SqlAuditSink:
    """:class:`consults.repositories.AuditSink`: one chained row per event, durable."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, event: AuditEvent) -> None:
        try:
            record = audit_record(event)
        except ValueError as exc:
            raise RepositoryError("the audit event cannot be stored") from exc
        with unit_of_work(self.engine) as conn:
            chain.append(conn, [record])
