"""Outgoing webhooks: the sender (HMAC-signed bodies, no redirects followed) and the
admin's endpoints and delivery log under ``/api/v1/webhooks``."""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import Body, Parameter
from msgspec import Meta

from api.schemas import AUTH_ERRORS, NO_STORE, PathId, documented
from api.session import consults_error
from consults.accounts import Principal
from consults.consult_repositories import (
    WebhookDelivery,
    WebhookEndpoint,
    WebhookRepository,
)
from consults.errors import Conflict, ConsultsError
from consults.service import Webhooks
from consults.webhooks import Attempt, RetryPolicy, next_attempt_at
from consults.webhooks import headers as webhook_headers

__all__ = ["WebhookController", "WebhookSender", "post_json"]


# Outgoing webhooks: the sender and the admin's endpoints


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A receiver's redirect is an answer (3xx, not delivered), never followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def post_json(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
    """POST ``body`` to ``url``; the HTTP status. Blocking (a worker thread).

    Raises
    ------
    OSError
        The connection failed or timed out (``urllib.error.URLError`` is one).
    """
    opener = urllib.request.build_opener(_NoRedirect())
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with opener.open(request, timeout=timeout_s) as answer:
            status: int = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status


class WebhookSender:
    """Delivers the queued webhooks that are due (the server's sweep, in a thread).

    Each attempt is signed anew (``X-Teleconsult-Signature`` over its timestamp and the
    body, :mod:`consults.webhooks`), logged with its status or our reason, and retried
    with the backoff of the :class:`~consults.webhooks.RetryPolicy` until delivered or
    out of attempts.
    """

    def __init__(
        self,
        repository: WebhookRepository,
        *,
        policy: RetryPolicy | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        post: Callable[[str, bytes, Mapping[str, str], float], int] = post_json,
    ) -> None:
        self._repo = repository
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._post = post

    def deliver_due(self, limit: int = 50) -> int:
        """Attempt every due delivery once; answers how many were delivered."""
        delivered = 0
        for delivery, url, secret in self._repo.due(self._clock(), limit):
            now = self._clock()
            headers = webhook_headers(
                secret=secret.encode(),
                event=delivery.event,
                delivery_id=delivery.id,
                timestamp_s=int(now.timestamp()),
                body=delivery.body,
            )
            status: int | None
            try:
                status = self._post(url, delivery.body, headers, self.policy.timeout_s)
                error = None if 200 <= status < 300 else f"HTTP {status}"
            except (OSError, ValueError) as exc:
                status, error = None, f"not delivered: {type(exc).__name__}"
            attempt = Attempt(
                delivery_id=delivery.id,
                number=delivery.attempts + 1,
                at=now,
                status=status,
                error=error,
            )
            earlier = [
                Attempt(delivery_id=delivery.id, number=n, at=now, status=None)
                for n in range(1, delivery.attempts + 1)
            ]
            again = next_attempt_at([*earlier, attempt], self.policy)
            try:
                self._repo.record_attempt(delivery, now, status, error, again)
            except Conflict:  # another node's sender made this attempt
                continue
            delivered += attempt.succeeded
        return delivered


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /webhooks``: where to deliver and which kinds (empty: all)."""

    url: Annotated[str, Meta(min_length=1, max_length=2000, examples=["https://his.example/hook"])]
    events: Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=32)] = (
        msgspec.field(default_factory=list)
    )


class WebhookAnswer(msgspec.Struct):
    """A webhook endpoint (its secret is never shown again)."""

    id: Annotated[str, Meta(examples=["3f2b9c1e7d4a4f0e9a1b2c3d4e5f6a7b"])]
    institution: str
    url: str
    events: list[str]
    created_by: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class WebhookCreated(msgspec.Struct):
    """The new endpoint and its shared secret (hex), shown this once."""

    endpoint: WebhookAnswer
    secret: str


class DeliveryAnswer(msgspec.Struct):
    """One row of the delivery log."""

    id: Annotated[str, Meta(examples=["9c1e7d4a4f0e9a1b2c3d4e5f6a7b3f2b"])]
    event: str
    created_at: dt.datetime
    attempts: int
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    last_status: int | None
    last_error: str | None


def _webhook(endpoint: WebhookEndpoint) -> WebhookAnswer:
    return WebhookAnswer(
        id=endpoint.id,
        institution=endpoint.institution,
        url=endpoint.url,
        events=sorted(endpoint.events),
        created_by=endpoint.created_by,
        created_at=endpoint.created_at,
        revoked_at=endpoint.revoked_at,
    )


def _delivery(found: WebhookDelivery) -> DeliveryAnswer:
    return DeliveryAnswer(
        id=found.id,
        event=found.event,
        created_at=found.created_at,
        attempts=found.attempts,
        next_attempt_at=found.next_attempt_at,
        delivered_at=found.delivered_at,
        last_status=found.last_status,
        last_error=found.last_error,
    )


class WebhookController(Controller):
    """An institution admin's webhook endpoints and their delivery log."""

    path = "/webhooks"
    tags = ["webhooks"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @post(
        "/",
        status_code=201,
        sync_to_thread=True,
        summary="Register a webhook endpoint",
        responses=documented(
            201,
            WebhookCreated,
            None,
            *AUTH_ERRORS,
            (400, "invalid_input", "url: an http or https URL of at most 2000 characters"),
            (403, "forbidden", "webhooks are registered by an admin of an institution"),
        ),
    )
    def register(
        self,
        data: Annotated[WebhookCreate, Body()],
        principal: NamedDependency[Principal],
        webhooks: NamedDependency[Webhooks],
    ) -> Response[WebhookCreated]:
        """Deliveries are HTTP POSTs of ``{"event", "consult", "at", "delivery"}`` signed
        with ``X-Teleconsult-Signature: v1=HMAC-SHA256(secret, timestamp.body)``."""
        endpoint, secret = webhooks.register(principal.person, data.url, frozenset(data.events))
        return Response(
            WebhookCreated(endpoint=_webhook(endpoint), secret=secret),
            status_code=201,
            headers=NO_STORE,
        )

    @get(
        "/",
        sync_to_thread=True,
        summary="The institution's webhook endpoints",
        responses=documented(200, None, None, *AUTH_ERRORS),
    )
    def listing(
        self, principal: NamedDependency[Principal], webhooks: NamedDependency[Webhooks]
    ) -> list[WebhookAnswer]:
        """Oldest first, revoked ones too."""
        return [_webhook(e) for e in webhooks.endpoints(principal.person)]

    @delete(
        "/{endpoint_id:str}",
        status_code=204,
        sync_to_thread=True,
        summary="Revoke a webhook endpoint",
        responses=documented(204, None, None, *AUTH_ERRORS, (404, "not_found", "no webhook 'x'")),
    )
    def revoke(
        self,
        endpoint_id: PathId,
        principal: NamedDependency[Principal],
        webhooks: NamedDependency[Webhooks],
    ) -> None:
        """Nothing more is delivered to it; pending deliveries are given up."""
        webhooks.revoke(principal.person, endpoint_id)

    @get(
        "/{endpoint_id:str}/deliveries",
        sync_to_thread=True,
        summary="The delivery log of an endpoint",
        responses=documented(200, None, None, *AUTH_ERRORS, (404, "not_found", "no webhook 'x'")),
    )
    def deliveries(
        self,
        endpoint_id: PathId,
        principal: NamedDependency[Principal],
        webhooks: NamedDependency[Webhooks],
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    ) -> list[DeliveryAnswer]:
        """Newest first: attempts, the last status or reason, the next attempt."""
        return [_delivery(d) for d in webhooks.deliveries(principal.person, endpoint_id, limit)]
