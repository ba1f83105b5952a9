"""Outgoing webhooks on the SQL store: :class:`consults.consult_repositories.WebhookRepository`.

Design notes
------------
- An endpoint's shared secret is sealed at rest (:class:`store.secrets.SecretBox`,
  bound to ``webhook:<id>``); it is handed out once, at registration.
- A delivery is a row per event and endpoint, written before anyone is told (the
  notice's step is stored first, then the outbox enqueues): a crash between the step and
  the enqueue loses the webhook, never the step. ``next_attempt_at`` is when it is due;
  NULL once delivered or given up, so the sender's query is an index range scan.
- Every attempt is a row of ``webhook_attempts`` (the delivery log), with the HTTP
  status or our words for the failure (never the receiver's body).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from consults.consult_repositories import WebhookDelivery, WebhookEndpoint
from consults.errors import Conflict, NotFound, RepositoryError
from consults.repositories import AuditEvent
from store import audit as chain
from store.accounts import audit_record
from store.consult_schema import webhook_attempts, webhook_deliveries, webhook_endpoints
from store.directory import unit_of_work
from store.secrets import SecretBox, SecretError

__all__ = ["SqlWebhookRepository"]


def _endpoint(row: Any) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id,
        institution=row.institution,
        url=row.url,
        events=frozenset(e for e in row.events.split(",") if e),
        created_by=row.created_by,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        endpoint=row.endpoint,
        event=row.event,
        body=row.body.encode(),
        created_at=row.created_at,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
        last_status=row.last_status,
        last_error=row.last_error,
    )


class SqlWebhookRepository:
    """:class:`consults.consult_repositories.WebhookRepository` on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine, *, secrets: SecretBox | None = None) -> None:
        self.engine = engine
        self._box = secrets or SecretBox(None)

    def add_endpoint(self, endpoint: WebhookEndpoint, secret: str, event: AuditEvent) -> None:
        sealed = self._box.seal(secret, f"webhook:{endpoint.id}")
        with unit_of_work(self.engine) as conn:
            try:
                conn.execute(
                    insert(webhook_endpoints).values(
                        id=endpoint.id,
                        institution=endpoint.institution,
                        url=endpoint.url,
                        secret_sealed=sealed,
                        events=",".join(sorted(endpoint.events)),
                        created_by=endpoint.created_by,
                        created_at=endpoint.created_at,
                    )
                )
            except IntegrityError as exc:
                raise Conflict("webhook", endpoint.id) from exc
            chain.append(conn, [audit_record(event)])

    def endpoints(self, institution: str) -> Sequence[WebhookEndpoint]:
        e = webhook_endpoints.c
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(webhook_endpoints)
                .where(e.institution == institution)
                .order_by(e.created_at, e.id)
            ).all()
        return [_endpoint(row) for row in rows]

    def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(
                select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
            ).first()
        return None if row is None else _endpoint(row)

    def revoke_endpoint(self, endpoint_id: str, at: datetime, event: AuditEvent) -> None:
        e, d = webhook_endpoints.c, webhook_deliveries.c
        with unit_of_work(self.engine) as conn:
            done = conn.execute(
                update(webhook_endpoints)
                .where((e.id == endpoint_id) & e.revoked_at.is_(None))
                .values(revoked_at=at)
            )
            if done.rowcount == 0:
                raise NotFound("webhook", endpoint_id)
            conn.execute(
                update(webhook_deliveries)
                .where((d.endpoint == endpoint_id) & d.next_attempt_at.is_not(None))
                .values(next_attempt_at=None, last_error="the endpoint was revoked")
            )
            chain.append(conn, [audit_record(event)])

    def enqueue(self, deliveries: Sequence[WebhookDelivery]) -> None:
        if not deliveries:
            return
        with unit_of_work(self.engine) as conn:
            conn.execute(
                insert(webhook_deliveries),
                [
                    {
                        "id": d.id,
                        "endpoint": d.endpoint,
                        "event": d.event,
                        "body": d.body.decode(),
                        "created_at": d.created_at,
                        "attempts": 0,
                        "next_attempt_at": d.next_attempt_at,
                    }
                    for d in deliveries
                ],
            )

    def due(self, now: datetime, limit: int) -> Sequence[tuple[WebhookDelivery, str, str]]:
        d, e = webhook_deliveries.c, webhook_endpoints.c
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(webhook_deliveries, e.url, e.secret_sealed)
                .join(webhook_endpoints, e.id == d.endpoint)
                .where(d.next_attempt_at.is_not(None) & (d.next_attempt_at <= now))
                .where(e.revoked_at.is_(None))
                .order_by(d.next_attempt_at, d.id)
                .limit(limit)
            ).all()
        out: list[tuple[WebhookDelivery, str, str]] = []
        for row in rows:
            try:
                secret = self._box.open(row.secret_sealed, f"webhook:{row.endpoint}")
            except SecretError as exc:
                raise RepositoryError("a stored webhook secret cannot be read") from exc
            assert secret is not None
            out.append((_delivery(row), row.url, secret))
        return out

    def record_attempt(
        self,
        delivery: WebhookDelivery,
        at: datetime,
        status: int | None,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> None:
        number = delivery.attempts + 1
        delivered = status is not None and 200 <= status < 300
        with unit_of_work(self.engine) as conn:
            try:
                conn.execute(
                    insert(webhook_attempts).values(
                        delivery=delivery.id, number=number, at=at, status=status, error=error
                    )
                )
            except IntegrityError as exc:  # another sender took this attempt
                raise Conflict("webhook attempt", f"{delivery.id}/{number}") from exc
            conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == delivery.id)
                .values(
                    attempts=number,
                    next_attempt_at=None if delivered else next_attempt_at,
                    delivered_at=at if delivered else None,
                    last_status=status,
                    last_error=error,
                )
            )

    def deliveries(self, endpoint_id: str, limit: int) -> Sequence[WebhookDelivery]:
        d = webhook_deliveries.c
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(webhook_deliveries)
                .where(d.endpoint == endpoint_id)
                .order_by(d.created_at.desc(), d.id)
                .limit(limit)
            ).all()
        return [_delivery(row) for row in rows]
