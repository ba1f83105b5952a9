"""Outgoing webhooks, without I/O: the signed request, the retry plan, the delivery log.

A hospital connects its SMS gateway or HIS by registering an endpoint (a URL and a
shared secret) for the event kinds it wants (``consult.assigned``, ``critical.raised``,
…). Each event is delivered as an HTTP POST of a JSON body:

- ``X-Teleconsult-Event``: the event kind; ``X-Teleconsult-Delivery``: the delivery id
  (the same on every retry, so the receiver can drop duplicates);
- ``X-Teleconsult-Timestamp``: Unix seconds when this attempt was signed;
- ``X-Teleconsult-Signature``: ``v1=`` and the hex HMAC-SHA256, under the endpoint's
  secret, of ``TIMESTAMP + "." + BODY``. A receiver recomputes it, compares in constant
  time (:func:`verify_signature` is the reference) and refuses a timestamp older than
  its tolerance (replays).

A delivery that fails (a network error, a timeout, a status other than 2xx) is retried
with exponential backoff — 10 s, 30 s, 90 s, … capped at one hour, for at most
``max_attempts`` — and every attempt is one row of the delivery log
(:class:`Attempt`). The sender (the asyncio layer) asks :func:`next_attempt_at` when to
try again.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

SIGNATURE_VERSION: Final = "v1"


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """When to retry a failed delivery.

    Attributes
    ----------
    first_delay_s : float
        Wait after the first failure.
    factor : float
        Each further wait is this many times the previous.
    max_delay_s : float
        No wait is longer.
    max_attempts : int
        Attempts in all, the first included; then the delivery is given up.
    timeout_s : float
        How long one attempt may take.
    """

    first_delay_s: float = 10.0
    factor: float = 3.0
    max_delay_s: float = 3600.0
    max_attempts: int = 8
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not (0 < self.first_delay_s <= self.max_delay_s and self.factor >= 1):
            raise ValueError("0 < first_delay_s <= max_delay_s and factor >= 1 must hold")
        if self.max_attempts < 1 or self.timeout_s <= 0:
            raise ValueError("max_attempts >= 1 and timeout_s > 0 must hold")


def sign_body(secret: bytes, timestamp_s: int, body: bytes) -> str:
    """The ``X-Teleconsult-Signature`` value for one attempt."""
    mac = hmac.new(secret, str(timestamp_s).encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify_signature(
    secret: bytes,
    timestamp_s: int,
    body: bytes,
    signature: str,
    *,
    now_s: float,
    tolerance_s: float = 300.0,
) -> bool:
    """What a receiver checks: the HMAC in constant time and a fresh timestamp."""
    if abs(now_s - timestamp_s) > tolerance_s:
        return False
    return hmac.compare_digest(sign_body(secret, timestamp_s, body), signature)


def headers(
    *, secret: bytes, event: str, delivery_id: str, timestamp_s: int, body: bytes
) -> dict[str, str]:
    """The request headers of one attempt."""
    return {
        "Content-Type": "application/json",
        "X-Teleconsult-Event": event,
        "X-Teleconsult-Delivery": delivery_id,
        "X-Teleconsult-Timestamp": str(timestamp_s),
        "X-Teleconsult-Signature": sign_body(secret, timestamp_s, body),
    }


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One row of the delivery log."""

    delivery_id: str
    number: int  # 1 for the first attempt
    at: datetime
    status: int | None  # the HTTP status, None for a network error or timeout
    error: str | None = None  # what went wrong, in our words (never the receiver's body)

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def next_attempt_at(attempts: list[Attempt], policy: RetryPolicy) -> datetime | None:
    """When to try again after the last attempt, or None (delivered, or given up)."""
    if not attempts:
        raise ValueError("no attempt made yet")
    last = attempts[-1]
    if last.succeeded or len(attempts) >= policy.max_attempts:
        return None
    delay_s = min(policy.first_delay_s * policy.factor ** (len(attempts) - 1), policy.max_delay_s)
    return last.at + timedelta(seconds=delay_s)
