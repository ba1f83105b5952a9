"""Access tokens (JWT, HS256), the key ring that signs them, and the server secret.

Design notes:

- The algorithm is pinned: :func:`verify_token` passes ``algorithms=["HS256"]`` to
  PyJWT, so ``alg=none`` and every other algorithm (including the RS256/HS256
  confusion) are refused.
- ``exp``, ``nbf``, ``iat``, ``aud``, ``sub`` and ``jti`` are required; the audience is
  fixed (``teleconsult``) so that a token minted for another service with the same
  secret is refused.
- Each token carries a ``jti`` (the unit of revocation) and an ``iat`` (revoking a
  person refuses the tokens issued before).
- **Key ring and rotation.** A :class:`KeyRing` holds HMAC keys by key id; tokens
  minted with it carry the current key's id in the JWT header (``kid``), and
  verification picks the key by ``kid``: an unknown ``kid`` is refused
  (:class:`~sessions.errors.InvalidToken`). Rotating (:meth:`KeyRing.rotated`) adds a
  key and makes it current while the previous keys stay, so tokens signed before keep
  verifying until they expire; a key is dropped (:meth:`KeyRing.retired`) once the
  longest token lifetime has passed. A token with no ``kid`` (minted with a plain
  secret, before the ring) verifies only against the ring's ``unkeyed`` key, if any.
  Every other check (algorithm, audience, ``exp``, ``nbf``, claims) is the same, with
  the same error classes.
- **The key-ring file** ``<data-dir>/keys.json`` (mode 0600, written atomically)::

      {"current": "k2",
       "keys": {"k1": "<secret, >= 32 bytes>", "k2": "<secret>"},
       "unkeyed": "k1"}

  ``current`` signs; every key in ``keys`` verifies its own ``kid``; ``unkeyed``
  (optional, may be null) names the key that verifies tokens without ``kid``. Key ids
  are 1-64 characters of ``A-Z a-z 0-9 _ -``. Without the file, :func:`load_key_ring`
  makes a one-key ring of the server secret (below) whose id is derived from it and
  which is also ``unkeyed``, so the tokens of a deployment that had only the secret
  keep working; :func:`rotate_key_ring` writes the file the first time.
- The secret comes from configuration, else ``TELECONSULT_SECRET``, else
  ``<data-dir>/secret``, generated on first run (32 random bytes, URL-safe base64,
  mode 0600, created with ``O_EXCL`` so two processes starting at once agree).
  :func:`mint_token` and :func:`verify_token` take either a secret or a ring.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
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
KEYS_FILE: Final = "keys.json"
MIN_SECRET_BYTES: Final = 32
_KID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")

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
    institution : str or None
        ``inst``: the code of the holder's institution, when the server minted the token
        for a logged-in person (viewing rights follow from it); None for tokens minted
        on the command line.
    person_roles : frozenset of str
        ``proles``: the person's roles in the directory (``doctor``, ``expert``, …), not
        to be confused with :attr:`role`, the part they take in this room.
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
    institution: str | None = None
    person_roles: frozenset[str] = frozenset()

    @property
    def moderator(self) -> bool:
        """Whether the holder may admit, mute and remove others."""
        return "moderate" in self.permissions


def key_id(secret: str) -> str:
    """A key id derived from a secret: 12 hex digits of its SHA-256 (never starts with
    ``-``, so a command line takes it as an argument, not an option)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


@dataclass(frozen=True, kw_only=True)
class KeyRing:
    """HMAC signing keys by key id; one of them signs (``current``).

    Attributes
    ----------
    keys : Mapping of str to str
        Key id -> secret (at least 32 bytes each).
    current : str
        The id of the key that signs new tokens.
    unkeyed : str or None
        The id of the key that verifies tokens without a ``kid`` (minted with the plain
        secret before the ring); None refuses them.

    Raises
    ------
    ValueError
        For a malformed key id, a short secret, or ``current``/``unkeyed`` not in ``keys``.
    """

    keys: Mapping[str, str] = field(default_factory=dict)
    current: str
    unkeyed: str | None = None

    def __post_init__(self) -> None:
        for kid, secret in self.keys.items():
            if not isinstance(kid, str) or not _KID.fullmatch(kid):
                raise ValueError(f"key id {kid!r}: 1-64 characters of A-Z a-z 0-9 _ -")
            if not isinstance(secret, str) or len(secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"key {kid!r} must be a secret of at least 32 bytes")
        if self.current not in self.keys:
            raise ValueError(f"the current key {self.current!r} is not in the ring")
        if self.unkeyed is not None and self.unkeyed not in self.keys:
            raise ValueError(f"the unkeyed key {self.unkeyed!r} is not in the ring")
        # A private copy, so the frozen ring cannot change under its users.
        object.__setattr__(self, "keys", dict(self.keys))

    @classmethod
    def single(cls, secret: str, kid: str | None = None) -> KeyRing:
        """A ring of one key, which also verifies tokens without ``kid``."""
        kid = key_id(secret) if kid is None else kid
        return cls(keys={kid: secret}, current=kid, unkeyed=kid)

    def rotated(self, kid: str | None = None, secret: str | None = None) -> KeyRing:
        """This ring plus a new current key (random unless given); the old keys stay."""
        secret = secret or base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        kid = key_id(secret) if kid is None else kid
        if kid in self.keys:
            raise ValueError(f"key id {kid!r} is already in the ring")
        return KeyRing(keys={**self.keys, kid: secret}, current=kid, unkeyed=self.unkeyed)

    def retired(self, kid: str) -> KeyRing:
        """This ring without key ``kid`` (its tokens are refused from then on).

        Raises
        ------
        ValueError
            For the current key, or a key id not in the ring.
        """
        if kid == self.current:
            raise ValueError("the current key cannot be retired: rotate first")
        if kid not in self.keys:
            raise ValueError(f"no key {kid!r} in the ring")
        keys = {k: v for k, v in self.keys.items() if k != kid}
        return KeyRing(
            keys=keys, current=self.current, unkeyed=None if self.unkeyed == kid else self.unkeyed
        )

    def verification_key(self, kid: str | None) -> str:
        """The secret that verifies a token whose header names ``kid`` (None: no ``kid``).

        Raises
        ------
        InvalidToken
            For an unknown key id, or no ``kid`` where the ring has no unkeyed key.
        """
        if kid is None:
            if self.unkeyed is None:
                raise InvalidToken("invalid token: no key id")
            return self.keys[self.unkeyed]
        secret = self.keys.get(kid)
        if secret is None:
            raise InvalidToken("invalid token: unknown key id")
        return secret

    def to_json(self) -> str:
        """The key-ring file's text (see the module notes)."""
        document = {"current": self.current, "keys": dict(self.keys), "unkeyed": self.unkeyed}
        return json.dumps(document, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> KeyRing:
        """Read the key-ring file's text.

        Raises
        ------
        ValueError
            If it is not a key-ring document.
        """
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc.msg}") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), dict):
            raise ValueError('expected {"current": ..., "keys": {...}, "unkeyed": ...}')
        current, unkeyed = document.get("current"), document.get("unkeyed")
        if not isinstance(current, str) or not (unkeyed is None or isinstance(unkeyed, str)):
            raise ValueError('"current" must be a key id and "unkeyed" a key id or null')
        return cls(keys=document["keys"], current=current, unkeyed=unkeyed)


def mint_token(
    secret: str | KeyRing,
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
    institution: str | None = None,
    person_roles: frozenset[str] = frozenset(),
) -> str:
    """Sign a token.

    Parameters
    ----------
    secret : str or KeyRing
        The server secret (no ``kid``), or a key ring: its current key signs and its id
        goes in the header as ``kid``.
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
    institution : str, optional
        Claim ``inst``: the holder's institution code (tokens for a logged-in person).
    person_roles : frozenset of str
        Claim ``proles``: the person's directory roles.

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
    if institution is not None:
        claims["inst"] = institution
    if person_roles:
        claims["proles"] = sorted(person_roles)
    if isinstance(secret, KeyRing):
        key = secret.keys[secret.current]
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": secret.current})
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str | KeyRing, token: str, *, leeway_s: float = 5.0) -> TokenClaims:
    """Verify a token and return its claims.

    Parameters
    ----------
    secret : str or KeyRing
        The server secret, or a key ring (the key is picked by the header's ``kid``).
    token : str
        The compact JWT.
    leeway_s : float
        Clock skew allowed on ``exp`` and ``nbf``, seconds.

    Raises
    ------
    TokenExpired, TokenNotYetValid, InvalidToken
    """
    key = secret if isinstance(secret, str) else secret.verification_key(_kid(token))
    try:
        payload = jwt.decode(
            token,
            key,
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


def _kid(token: str) -> str | None:
    """The ``kid`` of a token's header (None when absent), read before verifying."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"invalid token: {exc}") from exc
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("invalid token: kid must be a string")
    return kid


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
    institution = payload.get("inst")
    if institution is not None and (not isinstance(institution, str) or not institution):
        raise InvalidToken("invalid token: claim 'inst' must be a non-empty string")
    person_roles = payload.get("proles", [])
    if not isinstance(person_roles, list) or not all(isinstance(r, str) for r in person_roles):
        raise InvalidToken("invalid token: claim 'proles' must be a list of strings")
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
        institution=institution,
        person_roles=frozenset(person_roles),
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
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
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
        mode = stat.S_IMODE(path.stat().st_mode)
        secret = path.read_text().strip()
    except OSError as exc:
        raise SecretError(f"cannot read {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise SecretError(f"{path} is readable by others (mode {mode:o}): chmod 600 it")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise SecretError(f"{path} holds a secret shorter than 32 bytes")
    return secret


def load_key_ring(
    data_dir: Path, configured: str | None = None, environ: Mapping[str, str] | None = None
) -> KeyRing:
    """The key ring: ``<data_dir>/keys.json`` if it exists, else one key from the secret.

    Parameters
    ----------
    data_dir : Path
        The data directory.
    configured, environ
        As for :func:`load_secret`, used only when there is no key-ring file.

    Raises
    ------
    SecretError
        If the file cannot be read, is readable by group or others, or is not a ring.
    """
    path = data_dir / KEYS_FILE
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return KeyRing.single(load_secret(data_dir, configured, environ))
    except OSError as exc:
        raise SecretError(f"cannot read {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise SecretError(f"{path} is readable by others (mode {mode:o}): chmod 600 it")
    try:
        return KeyRing.from_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SecretError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise SecretError(f"{path} is not a key ring: {exc}") from exc


def save_key_ring(data_dir: Path, ring: KeyRing) -> Path:
    """Write ``<data_dir>/keys.json`` atomically, mode 0600; returns its path.

    Raises
    ------
    SecretError
        If it cannot be written.
    """
    path = data_dir / KEYS_FILE
    temporary = path.with_name(f".{KEYS_FILE}.{secrets.token_hex(4)}")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(ring.to_json())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        directory = os.open(data_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise SecretError(f"cannot write {path}: {exc.strerror}") from exc
    return path


def rotate_key_ring(
    data_dir: Path, configured: str | None = None, environ: Mapping[str, str] | None = None
) -> KeyRing:
    """Add a new random key to the ring of ``data_dir`` and make it current; save it.

    Tokens signed by the previous keys keep verifying (until they expire or their key
    is retired). The first rotation of a deployment that had only the secret keeps the
    secret as a key (and as the ``unkeyed`` one).
    """
    ring = load_key_ring(data_dir, configured, environ).rotated()
    save_key_ring(data_dir, ring)
    return ring
