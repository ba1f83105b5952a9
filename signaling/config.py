"""The protocol core's settings, declared once (keyword-only, units in the names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from signaling.messages import MAX_CHAT_CHARS


@dataclass(frozen=True, kw_only=True)
class CoreConfig:
    """Settings of the protocol core.

    Attributes
    ----------
    grace_s : float
        How long a dropped participant is kept for a resume, seconds.
    join_timeout_s : float
        How long a new connection may take to send ``join`` (or ``watch``), seconds.
    token_leeway_s : float
        Clock skew allowed on a live connection's token expiry, seconds: a connection is
        closed once the wall clock passes the token's ``exp`` by more than this (the
        same leeway the token was verified with at connect).
    max_message_bytes : int
        Largest accepted message, bytes (larger ones get ``too_large``).
    rate_per_s, burst : float
        Token bucket per connection: sustained messages per second and bucket size.
    flood_close_after : int
        Refused messages in a row after which the connection is closed.
    chat_chars_per_s, chat_burst_chars : float, int
        Chat budget per person per room: characters refilled per second, and at most
        at once (at least one whole line, ``messages.MAX_CHAT_CHARS``).
    max_watchers_per_identity, max_watchers_per_token : int
        Viewer (``watch``) connections open at once for one identity, and for one token
        (its ``jti``); one more is refused with ``too_many_connections`` and closed 4429.
    waiting_room : bool
        Whether participants without ``moderate`` wait to be admitted.
    recording_policy : {"required", "allowed", "off"}
        ``required``: every room is recorded from its creation and a stop is refused;
        ``allowed``: moderators start and stop it (consent); ``off``: a start is refused.
    """

    # Timeouts
    grace_s: float = 30.0
    join_timeout_s: float = 10.0
    token_leeway_s: float = 5.0
    # Limits
    max_message_bytes: int = 64 * 1024
    rate_per_s: float = 20.0
    burst: float = 50.0
    flood_close_after: int = 20
    chat_chars_per_s: float = 50.0
    chat_burst_chars: int = 4_000
    max_watchers_per_identity: int = 32
    max_watchers_per_token: int = 8
    # Rooms
    waiting_room: bool = True
    recording_policy: Literal["required", "allowed", "off"] = "allowed"

    def __post_init__(self) -> None:
        if self.grace_s < 0 or self.join_timeout_s <= 0 or self.token_leeway_s < 0:
            raise ValueError("grace_s >= 0, join_timeout_s > 0 and token_leeway_s >= 0 required")
        if self.max_message_bytes < 1024:
            raise ValueError("max_message_bytes must be at least 1024")
        if self.rate_per_s <= 0 or self.burst < 1 or self.flood_close_after < 1:
            raise ValueError("rate_per_s > 0, burst >= 1 and flood_close_after >= 1 are required")
        if self.chat_chars_per_s <= 0 or self.chat_burst_chars < MAX_CHAT_CHARS:
            raise ValueError(
                f"chat_chars_per_s > 0 and chat_burst_chars >= {MAX_CHAT_CHARS} are required"
            )
        if self.max_watchers_per_identity < 1 or self.max_watchers_per_token < 1:
            raise ValueError("max_watchers_per_identity and max_watchers_per_token must be >= 1")
