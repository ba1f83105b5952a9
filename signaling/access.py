"""Who may open a connection, and for how long: tokens, bans and revocations.

Every ``join`` and ``watch`` goes through :meth:`Access.claims`: the token is verified
(the injected ``verify``; its key ring is :mod:`sessions.tokens`), device tokens are
refused, then bans and revocations are checked in memory, so the event loop never
waits on the Store.

Design notes:

- **Bans are per identity and room.** A :class:`~sessions.store.Ban` names the token
  (``jti``) that was in use, the room and the identity; the core refuses both that
  token anywhere and *every* token of that identity for that room. The I/O layer loads
  the bans at start (``Store.banned_jtis()`` and ``Store.banned_identities()``) and
  passes bans written by other nodes to
  ``Core.apply_ban`` as they arrive.
- **Revocation** (a session or device ended by the platform) is immediate and in
  memory: a revoked ``jti`` is refused from then on; revoking an identity refuses every
  token of it issued up to that second (``iat`` ≤ the revocation time), so a token
  minted after a fresh login works. The I/O layer replays its revocations at start by
  calling ``Core.revoke`` again; nothing here survives a restart by itself.
- **Expiry** is checked at connect (by ``verify``) and again on live connections by
  ``Core.tick`` (:meth:`Access.expired`), with the same leeway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sessions.errors import TokenError, TokenExpired, TokenNotYetValid
from sessions.store import Ban
from sessions.tokens import TokenClaims
from signaling.errors import ClientError
from signaling.messages import CloseCode, ErrorCode


class Access:
    """Token checks with the bans and revocations known to this process.

    Parameters
    ----------
    verify : callable
        ``verify(token) -> TokenClaims``; raises :class:`~sessions.errors.TokenError`.
    banned : iterable of str
        Banned token ids (the old, jti-only form of the bans).
    bans : iterable of Ban
        Bans of identities in rooms (each also bans its ``jti``).
    banned_identities : iterable of (room, identity)
        Identities banned from rooms (``Store.banned_identities()``).
    leeway_s : float
        Clock skew allowed on a live token's expiry, seconds.
    """

    def __init__(
        self,
        *,
        verify: Callable[[str], TokenClaims],
        banned: Iterable[str] = (),
        bans: Iterable[Ban] = (),
        banned_identities: Iterable[tuple[str, str]] = (),
        leeway_s: float = 5.0,
        revoked: Iterable[str] = (),
    ) -> None:
        self._verify = verify
        self._banned_jtis = set(banned)
        self._banned_identities = set(banned_identities)  # (room, identity)
        self._revoked_jtis: set[str] = set(revoked)
        self._revoked_until_s: dict[str, float] = {}  # identity -> tokens issued up to it
        self.leeway_s = leeway_s
        for ban in bans:
            self.add_ban(ban)

    def add_ban(self, ban: Ban) -> None:
        """Ban ``ban.jti`` and the identity ``ban.identity`` in ``ban.room``."""
        self._banned_jtis.add(ban.jti)
        self._banned_identities.add((ban.room, ban.identity))

    def is_banned(self, claims: TokenClaims) -> bool:
        """Whether the token, or its identity in its room, is banned."""
        return (
            claims.jti in self._banned_jtis
            or (claims.room, claims.identity) in self._banned_identities
        )

    def revoke_jti(self, jti: str) -> None:
        """Refuse the token ``jti`` from now on."""
        self._revoked_jtis.add(jti)

    def revoke_identity(self, identity: str, now_epoch_s: float) -> None:
        """Refuse every token of ``identity`` issued up to ``now_epoch_s`` (whole seconds)."""
        until = float(int(now_epoch_s))
        self._revoked_until_s[identity] = max(until, self._revoked_until_s.get(identity, until))

    def is_revoked(self, claims: TokenClaims) -> bool:
        """Whether the token was revoked, by its id or by its identity."""
        if claims.jti in self._revoked_jtis:
            return True
        until = self._revoked_until_s.get(claims.identity)
        return until is not None and claims.issued_at_s <= until

    def expired(self, claims: TokenClaims, now_epoch_s: float) -> bool:
        """Whether the token has expired at ``now_epoch_s`` (seconds since the epoch)."""
        return now_epoch_s > claims.expires_at_s + self.leeway_s

    def claims(self, token: str) -> TokenClaims:
        """The claims of a token that may open a ``/ws`` connection.

        Raises
        ------
        ClientError
            ``token_expired``, ``token_not_yet_valid``, ``invalid_token`` or ``revoked``
            (close 4401), ``forbidden`` for a device token or ``banned`` (close 4403).
        """
        try:
            claims = self._verify(token)
        except TokenExpired:
            raise ClientError(
                ErrorCode.TOKEN_EXPIRED, "token expired", CloseCode.UNAUTHORIZED
            ) from None
        except TokenNotYetValid:
            raise ClientError(
                ErrorCode.TOKEN_NOT_YET_VALID, "token not yet valid", CloseCode.UNAUTHORIZED
            ) from None
        except TokenError:
            raise ClientError(
                ErrorCode.INVALID_TOKEN, "invalid token", CloseCode.UNAUTHORIZED
            ) from None
        if claims.role == "device":
            raise ClientError(
                ErrorCode.FORBIDDEN, "device tokens belong on /device", CloseCode.FORBIDDEN
            )
        if self.is_revoked(claims):
            raise ClientError(ErrorCode.REVOKED, "this token was revoked", CloseCode.UNAUTHORIZED)
        if self.is_banned(claims):
            raise ClientError(
                ErrorCode.BANNED, "you were removed from this room", CloseCode.FORBIDDEN
            )
        return claims
