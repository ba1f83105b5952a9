"""Webhooks: HMAC signatures a receiver can check, and the retry plan."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from consults.webhooks import (
    Attempt,
    RetryPolicy,
    headers,
    next_attempt_at,
    sign_body,
    verify_signature,
)

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
SECRET = b"s3cret-of-the-county-hospital"
BODY = b'{"event":"critical.raised","critical":"cv1"}'


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    """The header equals an HMAC computed here with the standard library alone."""
    expected = hmac.new(SECRET, b"1764662400." + BODY, hashlib.sha256).hexdigest()
    assert sign_body(SECRET, 1764662400, BODY) == "v1=" + expected


def test_receiver_check() -> None:
    """A right signature verifies; another body, secret or a stale timestamp does not."""
    sig = sign_body(SECRET, 1000, BODY)
    assert verify_signature(SECRET, 1000, BODY, sig, now_s=1010)
    assert not verify_signature(SECRET, 1000, BODY + b" ", sig, now_s=1010)
    assert not verify_signature(b"other", 1000, BODY, sig, now_s=1010)
    assert not verify_signature(SECRET, 1000, BODY, sig, now_s=1000 + 301)


def test_headers_name_event_and_delivery() -> None:
    """Every attempt carries the event, a stable delivery id, timestamp and signature."""
    h = headers(secret=SECRET, event="critical.raised", delivery_id="d1", timestamp_s=5, body=BODY)
    assert h["X-Teleconsult-Delivery"] == "d1"
    assert h["X-Teleconsult-Signature"] == sign_body(SECRET, 5, BODY)


def test_backoff_until_given_up() -> None:
    """10 s, 30 s, 90 s … capped, then None after the last attempt; a success stops it."""
    policy = RetryPolicy(first_delay_s=10, factor=3, max_delay_s=60, max_attempts=4)
    attempts = [Attempt(delivery_id="d1", number=1, at=T0, status=503)]
    waits = []
    while (when := next_attempt_at(attempts, policy)) is not None:
        waits.append((when - attempts[-1].at).total_seconds())
        attempts.append(Attempt(delivery_id="d1", number=len(attempts) + 1, at=when, status=None))
    assert waits == [10, 30, 60]
    assert len(attempts) == 4
    ok = [Attempt(delivery_id="d2", number=1, at=T0, status=204)]
    assert next_attempt_at(ok, policy) is None
    assert ok[0].succeeded
    assert not attempts[0].succeeded


def test_policy_validates() -> None:
    """Nonsense policies are refused."""
    with pytest.raises(ValueError, match="first_delay_s"):
        RetryPolicy(first_delay_s=100, max_delay_s=10)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="no attempt"):
        next_attempt_at([], RetryPolicy())
    assert next_attempt_at(
        [Attempt(delivery_id="d", number=1, at=T0, status=500)], RetryPolicy()
    ) == T0 + timedelta(seconds=10)
