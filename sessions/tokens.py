"""Access tokens (JWT, HS256) and the server secret that signs them.

Design notes:

- The algorithm is pinned: :func:`verify_token` passes ``algorithms=["HS256"]`` to
  PyJWT, so ``alg=none`` and every other algorithm (including the RS256/HS256
  confusion) are refused.
- ``exp``, ``nbf``, ``iat``, ``aud``, ``sub`` and ``jti`` are required; the audience is
  fixed (``teleconsult``) so that a token minted for another service with the same
  secret is refused.
- Each token carries a ``jti`` so that removing a participant can ban exactly that
  token (see :mod:`sessions.rooms`).
- The secret comes from configuration, else ``TELECONSULT_SECRET``, else
  ``<data-dir>/secret``, generated on first run (32 random bytes, URL-safe base64,
  mode 0600, created with ``O_EXCL`` so two processes starting at once agree).
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

import jwt

from sessions.errors import InvalidToken, SecretError, TokenExpired, TokenNotYetValid

Role = Literal["applicant", "expert", "coordinator", "observer", "device"]
Permission = Literal["publish", "subscribe", "moderate"]

ROLES: Final[frozenset[str]] = frozenset(get_args(Role))
PERMISSIONS: Final[frozenset[str]] = frozenset(get_args(Permission))
ALGORITHM: Final = "HS256"
AUDIENCE: Final = "teleconsult"
SECRET_ENV: Final = "TELECONSULT_SECRET"
SECRET_FILE: Final = "secret"
MIN_SECRET_BYTES: Final = 32

# What each role may do when the minting command is not told otherwise; moderation is
# always explicit (``--moderator``).
DEFAULT_PERMISSIONS: Final[Mapping[str, frozenset[Permission]]] = {
    "applicant": frozenset({"publish", "subscribe"}),
    "expert": frozenset({"publish", "subscribe"}),
    "coordinator": frozenset({"publish", "subscribe"}),
    "observer": frozenset({"subscribe"}),
    "device": frozenset({"publish"}),
}


@dataclass(frozen=True, kw_only=True)
class TokenClaims:
    """The verified claims of a token.

    Attributes
    ----------
    identity : str
        ``sub``: who holds the token.
    name : str
        Display name.
    role : Role
        One of :data:`ROLES`.
    room : str
        The room (or, for devices, the room or consult) the token enters.
    permissions : frozenset of Permission
        What the holder may do.
    jti : str
        Token id, the unit of banning.
    expires_at_s, not_before_s : float
        ``exp`` and ``nbf``, seconds since the epoch (UTC).
    issued_at_s : float
        ``iat``, seconds since the epoch (revoking a person refuses the tokens issued
        before the revocation).
    """

    identity: str
    name: str
    role: Role
    room: str
    permissions: frozenset[Permission]
    jti: str
    expires_at_s: float
    not_before_s: float
    issued_at_s: float = 0.0

    @property
    def moderator(self) -> bool:
        """Whether the holder may admit, mute and remove others."""
        return "moderate" in self.permissions


def mint_token(
    secret: str,
    *,
    identity: str,
    name: str,
    role: str,
    room: str,
    permissions: frozenset[str] | None = None,
    ttl_s: float = 2 * 3600.0,
    not_before_s: float | None = None,
    now_s: float | None = None,
    jti: str | None = None,
) -> str:
    """Sign a token.

    Parameters
    ----------
    secret : str
        The server secret.
    identity, name, role, room : str
        Claims ``sub``, ``name``, ``role``, ``room``.
    permissions : frozenset of str, optional
        Defaults to :data:`DEFAULT_PERMISSIONS` for the role.
    ttl_s : float
        Lifetime in seconds from ``now_s``.
    not_before_s : float, optional
        ``nbf`` in seconds since the epoch; defaults to ``now_s``.
    now_s : float, optional
        Issue time in seconds since the epoch; defaults to the clock.
    jti : str, optional
        Token id; random by default.

    Raises
    ------
    ValueError
        For an unknown role or permission, an empty identity or room, or ``ttl_s <= 0``.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: expected one of {', '.join(sorted(ROLES))}")
    granted = DEFAULT_PERMISSIONS[role] if permissions is None else permissions
    unknown = set(granted) - PERMISSIONS
    if unknown:
        raise ValueError(f"unknown permissions {sorted(unknown)}")
    if not identity or not room:
        raise ValueError("identity and room must not be empty")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    issued = time.time() if now_s is None else now_s
    claims = {
        "sub": identity,
        "name": name,
        "role": role,
        "room": room,
        "permissions": sorted(granted),
        "aud": AUDIENCE,
        "iat": int(issued),
        "nbf": int(issued if not_before_s is None else not_before_s),
        "exp": int(issued + ttl_s),
        "jti": jti or secrets.token_urlsafe(12),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, *, leeway_s: float = 5.0) -> TokenClaims:
    """Verify a token and return its claims.

    Parameters
    ----------
    secret : str
        The server secret.
    token : str
        The compact JWT.
    leeway_s : float
        Clock skew allowed on ``exp`` and ``nbf``, seconds.

    Raises
    ------
    TokenExpired, TokenNotYetValid, InvalidToken
    """
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            leeway=leeway_s,
            options={"require": ["exp", "nbf", "iat", "aud", "sub", "jti"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired("token expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise TokenNotYetValid("token not yet valid") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"invalid token: {exc}") from exc
    return _claims(payload)


def _claims(payload: Mapping[str, object]) -> TokenClaims:
    role = payload.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidToken(f"invalid token: unknown role {role!r}")
    raw_permissions = payload.get("permissions", [])
    if not isinstance(raw_permissions, list) or not all(
        isinstance(p, str) and p in PERMISSIONS for p in raw_permissions
    ):
        raise InvalidToken("invalid token: bad permissions claim")
    texts = {key: payload.get(key) for key in ("sub", "room", "jti")}
    for key, value in texts.items():
        if not isinstance(value, str) or not value:
            raise InvalidToken(f"invalid token: claim {key!r} must be a non-empty string")
    name = payload.get("name", texts["sub"])
    exp, nbf, iat = payload["exp"], payload["nbf"], payload["iat"]
    if not all(isinstance(v, int | float) for v in (exp, nbf, iat)):
        raise InvalidToken("invalid token: exp, nbf and iat must be numbers")
    return TokenClaims(
        identity=str(texts["sub"]),
        name=name if isinstance(name, str) and name else str(texts["sub"]),
        role=role,  # type: ignore[arg-type]  # checked against ROLES above
        room=str(texts["room"]),
        permissions=frozenset(raw_permissions),
        jti=str(texts["jti"]),
        expires_at_s=float(exp),  # type: ignore[arg-type]  # checked above
        not_before_s=float(nbf),  # type: ignore[arg-type]
        issued_at_s=float(iat),  # type: ignore[arg-type]
    )


def load_secret(
    data_dir: Path, configured: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """Return the server secret: configured, else ``TELECONSULT_SECRET``, else the file.

    The file ``<data_dir>/secret`` is created on first use with mode 0600.

    Raises
    ------
    SecretError
        If a given secret is shorter than 32 bytes, or the file cannot be read or made.
    """
    env = os.environ if environ is None else environ
    for source, value in (("configuration", configured), (SECRET_ENV, env.get(SECRET_ENV))):
        if value:
            if len(value.encode()) < MIN_SECRET_BYTES:
                raise SecretError(f"the secret from {source} must be at least 32 bytes")
            return value
    path = data_dir / SECRET_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SecretError(f"cannot create {path}: {exc.strerror}") from exc
    else:
        with os.fdopen(fd, "w") as file:
            file.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "\n")
            file.flush()
            os.fsync(file.fileno())
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise SecretError(f"cannot read {path}: {exc.strerror}") from exc
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise SecretError(f"{path} holds a secret shorter than 32 bytes")
    return secret
