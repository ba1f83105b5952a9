"""ICE servers for clients, with time-limited TURN credentials.

The credentials follow the "TURN REST API" scheme that coturn implements with
``use-auth-secret`` / ``static-auth-secret``: the server and coturn share a secret; the
username is ``"<expiry-unix-seconds>:<identity>"`` and the credential is
``base64(HMAC-SHA1(secret, username))``. coturn recomputes the HMAC and refuses the
username once its expiry has passed, so a leaked credential is useless after ``ttl_s``
and no per-user state is kept anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

# An RTCIceServer dictionary, the same shape as signaling.ports.IceServerDict.
IceServerDict = dict[str, str | list[str]]


def turn_credentials(secret: str, identity: str, *, ttl_s: float, now_s: float) -> tuple[str, str]:
    """Return ``(username, credential)`` valid until ``now_s + ttl_s``.

    Parameters
    ----------
    secret : str
        The secret shared with the TURN server (coturn ``static-auth-secret``).
    identity : str
        Who the credential is for (appears in coturn's logs).
    ttl_s : float
        Lifetime, seconds.
    now_s : float
        Current time, seconds since the epoch.
    """
    username = f"{int(now_s + ttl_s)}:{identity}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, kw_only=True)
class IceConfig:
    """STUN and TURN servers handed to clients.

    Attributes
    ----------
    stun_urls : sequence of str
        ``stun:`` URLs, given as they are.
    turn_urls : sequence of str
        ``turn:``/``turns:`` URLs; they need ``turn_secret``.
    turn_secret : str or None
        Shared secret with the TURN server.
    turn_ttl_s : float
        Lifetime of TURN credentials, seconds.
    """

    stun_urls: Sequence[str] = ()
    turn_urls: Sequence[str] = ()
    turn_secret: str | None = None
    turn_ttl_s: float = 12 * 3600.0

    def __post_init__(self) -> None:
        if self.turn_urls and not self.turn_secret:
            raise ValueError("turn_urls need turn_secret (coturn static-auth-secret)")
        if self.turn_ttl_s <= 0:
            raise ValueError("turn_ttl_s must be positive")
        for url in self.stun_urls:
            if not url.startswith("stun:") and not url.startswith("stuns:"):
                raise ValueError(f"not a STUN URL: {url!r}")
        for url in self.turn_urls:
            if not url.startswith("turn:") and not url.startswith("turns:"):
                raise ValueError(f"not a TURN URL: {url!r}")

    def ice_servers(self, identity: str, *, now_s: float) -> list[IceServerDict]:
        """The ``iceServers`` list for ``identity``, TURN credentials minted at ``now_s``."""
        servers: list[IceServerDict] = []
        if self.stun_urls:
            servers.append({"urls": list(self.stun_urls)})
        if self.turn_urls and self.turn_secret:
            username, credential = turn_credentials(
                self.turn_secret, identity, ttl_s=self.turn_ttl_s, now_s=now_s
            )
            servers.append(
                {"urls": list(self.turn_urls), "username": username, "credential": credential}
            )
        return servers
