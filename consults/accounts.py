"""Accounts policy: passwords, login, throttling, lockout, the second factor, sessions,
API tokens, device credentials, and the admin's changes to the directory.

Design notes
------------
- No I/O of its own: storage comes in through the Protocols of
  :mod:`consults.repositories`, the clock and the random source are injected. The
  services are synchronous; the API calls them from a worker thread.
- **Passwords** are hashed with argon2id (argon2-cffi's ``PasswordHasher``); a hash made
  with other parameters is rehashed at the next successful login. A login for an
  unknown user verifies a dummy hash, so it costs as long as a wrong password, and both
  raise the same :class:`~consults.errors.LoginFailed` (Django's "no detail of why").
- **Throttling** (:class:`Throttle`): a token bucket per username and per address,
  spent by failed attempts only, refilled at a steady rate; in memory per process (it
  slows a guesser down; the lockout below is the durable limit and is shared through
  the store). **Lockout**: after ``lock_after_failures`` consecutive failures the
  account locks until an admin unlocks it; a locked account answers
  :class:`~consults.errors.AccountLocked` whatever the password, after the same work.
- **TOTP** (RFC 6238, SHA-1, 30 s, 6 digits, one step of drift either way): once
  enrolled, login needs the code; a step is accepted once only (the store's
  compare-and-set), so a code seen over a shoulder cannot be replayed. Admins can
  require a second factor per role: a person of such a role who has not enrolled gets a
  session restricted to enrolling (:attr:`Principal.must_enrol_totp`).
- **Secrets shown once.** Session tokens (``tcs_``), API tokens (``tca_``) and device
  credentials (``tcd_``) are 32 random bytes, URL-safe base64, with a prefix saying what
  they are (so a leaked one is recognised by scanners and routed without a lookup);
  only their SHA-256 is stored. The CSRF token of a session is HMAC-SHA256 of a fixed
  label keyed by the session token: bound to the session, nothing to store, and
  unguessable without the cookie.
- **Audit.** Every login, failure, lock, unlock, logout, password change, enrolment,
  token minted or revoked, use of a revoked token and every admin change is one
  :class:`~consults.repositories.AuditEvent`, appended before the answer is given.
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import hashlib
import hmac
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import argon2
import pyotp
from argon2.exceptions import InvalidHashError, VerificationError

from consults import rights
from consults.directory import (
    AdminScope,
    ApiToken,
    Credentials,
    Department,
    Device,
    Institution,
    Level,
    LoginSession,
    Person,
    Role,
    ServiceKind,
    ServiceRelation,
    check_code,
    check_username,
)
from consults.errors import (
    AccountLocked,
    Conflict,
    Forbidden,
    InvalidInput,
    LoginFailed,
    NotFound,
    PasswordRejected,
    SessionInvalid,
    Throttled,
    TokenRevoked,
    TotpRequired,
)
from consults.repositories import (
    AuditEvent,
    AuditSink,
    CredentialRepository,
    DeviceFilter,
    DirectoryRepository,
    InstitutionFilter,
    Page,
    PageRequest,
    PeopleFilter,
    SessionRepository,
)

__all__ = [
    "API_TOKEN_PREFIX",
    "DEVICE_PREFIX",
    "SESSION_PREFIX",
    "AccountPolicy",
    "Accounts",
    "DeviceCredentials",
    "DeviceVerifier",
    "DirectoryAdmin",
    "LoginResult",
    "MintedToken",
    "NewPerson",
    "NoRevocations",
    "Principal",
    "Revocations",
    "Throttle",
    "check_csrf",
    "check_password",
    "csrf_token",
    "token_sha256",
]

SESSION_PREFIX = "tcs_"
API_TOKEN_PREFIX = "tca_"
DEVICE_PREFIX = "tcd_"
_SECRET_BYTES = 32
_CSRF_LABEL = b"teleconsult csrf v1"
# Passwords too common to allow whatever their length (Django's list is the model; these
# are the ones that pass the length rule and top the leaked-password lists).
_COMMON_PASSWORDS = frozenset(
    {
        "1234567890",
        "12345678910",
        "123456789012",
        "0987654321",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "qwertyuiop",
        "asdfghjkl;",
        "password123",
        "password1234",
        "passw0rd123",
        "iloveyou123",
        "a1234567890",
        "aa12345678",
        "abc1234567",
        "abcd123456",
        "qwerty123456",
        "woaini1314",
        "woaini520",
        "5201314520",
        "1314520520",
        "administrator",
        "changeme123",
        "welcome123",
        "teleconsult",
    }
)

Clock = Callable[[], float]
RandomBytes = Callable[[int], bytes]


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountPolicy:
    """The settings of accounts, validated.

    Parameters
    ----------
    min_password_chars, max_password_chars
        Password length bounds (the upper one bounds the hashing work of a request).
    lock_after_failures
        Consecutive failed logins that lock an account.
    account_burst, account_refill_per_s
        Throttle per username: failures allowed at once, and how fast they come back.
    address_burst, address_refill_per_s
        Throttle per client address.
    throttle_keys
        How many usernames/addresses each throttle remembers (oldest forgotten first).
    session_lifetime_s
        How long a login session lasts.
    totp_drift_steps
        Steps of 30 s accepted either side of now.
    argon2_time_cost, argon2_memory_kib, argon2_parallelism
        argon2id parameters (RFC 9106's second recommended option by default).
    """

    # Passwords
    min_password_chars: int = 8
    max_password_chars: int = 256
    # Lockout and throttling
    lock_after_failures: int = 10
    account_burst: int = 5
    account_refill_per_s: float = 1 / 60
    address_burst: int = 30
    address_refill_per_s: float = 1 / 6
    throttle_keys: int = 100_000
    # Sessions
    session_lifetime_s: float = 12 * 3600.0
    # Second factor
    totp_drift_steps: int = 1
    # Hashing
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4

    def __post_init__(self) -> None:
        if not 8 <= self.min_password_chars <= self.max_password_chars <= 4096:
            raise ValueError("8 <= min_password_chars <= max_password_chars <= 4096 must hold")
        if self.lock_after_failures < 1 or self.account_burst < 1 or self.address_burst < 1:
            raise ValueError("lock_after_failures, account_burst, address_burst must be >= 1")
        if self.account_refill_per_s <= 0 or self.address_refill_per_s <= 0:
            raise ValueError("refill rates must be > 0")
        if self.session_lifetime_s <= 0 or self.throttle_keys < 1:
            raise ValueError("session_lifetime_s and throttle_keys must be > 0")
        if not 0 <= self.totp_drift_steps <= 2:
            raise ValueError("0 <= totp_drift_steps <= 2 must hold")
        # argon2's own bounds (RFC 9106 3.1: memory at least 8 KiB per lane), told at
        # start-up rather than at the first login.
        if self.argon2_time_cost < 1 or not 1 <= self.argon2_parallelism <= 255:
            raise ValueError("argon2_time_cost >= 1 and 1 <= argon2_parallelism <= 255 required")
        if self.argon2_memory_kib < 8 * self.argon2_parallelism:
            raise ValueError("argon2_memory_kib >= 8 x argon2_parallelism required")

    def hasher(self) -> argon2.PasswordHasher:
        """The argon2id hasher of these parameters."""
        return argon2.PasswordHasher(
            time_cost=self.argon2_time_cost,
            memory_cost=self.argon2_memory_kib,
            parallelism=self.argon2_parallelism,
            type=argon2.Type.ID,
        )


def token_sha256(secret: str) -> str:
    """The SHA-256 hex of a token, the only form in which it is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def csrf_token(session_token: str) -> str:
    """The CSRF token bound to a session: HMAC-SHA256 keyed by the session token."""
    mac = hmac.new(session_token.encode("utf-8"), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def check_csrf(session_token: str, presented: str | None) -> bool:
    """Whether ``presented`` is the CSRF token of ``session_token`` (constant time)."""
    if presented is None:
        return False
    return hmac.compare_digest(csrf_token(session_token).encode(), presented.encode())


def check_password(
    policy: AccountPolicy, password: str, *, username: str, display_name: str = ""
) -> None:
    """Refuse a password that breaks the rules; :class:`PasswordRejected` says which.

    Length within the policy (8 characters at least by default, as Django), not all
    digits, no control character, not one of the commonest passwords, not too similar
    to the username or the display name (Django's similarity ratio of 0.7).
    """
    if len(password) < policy.min_password_chars:
        raise PasswordRejected(f"at least {policy.min_password_chars} characters")
    if len(password) > policy.max_password_chars:
        raise PasswordRejected(f"at most {policy.max_password_chars} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in password):
        raise PasswordRejected("no control characters")
    if password.isdigit():
        raise PasswordRejected("not only digits")
    lowered = password.lower()
    if lowered in _COMMON_PASSWORDS or len(set(lowered)) < 4:
        raise PasswordRejected("too common: choose a less guessable password")
    for name in (username, display_name):
        # Django's UserAttributeSimilarityValidator: too close to the name as a whole.
        if len(name) >= 3 and (
            lowered == name.lower()
            or difflib.SequenceMatcher(a=lowered, b=name.lower()).quick_ratio() >= 0.7
        ):
            raise PasswordRejected("too similar to your username or name")


class Throttle:
    """Token buckets per key: each failure spends one token, tokens refill steadily.

    Parameters
    ----------
    burst
        Tokens a full bucket holds: failures allowed in a row.
    refill_per_s
        Tokens regained per second.
    max_keys
        Buckets kept; the least recently touched is forgotten first (a forgotten key
        starts full again, which only errs towards letting a person in).
    clock
        Seconds, monotonic enough for intervals.
    """

    def __init__(self, *, burst: int, refill_per_s: float, max_keys: int, clock: Clock) -> None:
        self.burst = float(burst)
        self.refill_per_s = refill_per_s
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str, now_s: float) -> float:
        tokens, at_s = self._buckets.get(key, (self.burst, now_s))
        return min(self.burst, tokens + max(0.0, now_s - at_s) * self.refill_per_s)

    def retry_after_s(self, key: str) -> float:
        """0 when an attempt for ``key`` may go ahead, else seconds until it may."""
        tokens = self._level(key, self.clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.refill_per_s

    def failed(self, key: str) -> None:
        """Spend one token of ``key``'s bucket."""
        now_s = self.clock()
        tokens = self._level(key, now_s)
        self._buckets[key] = (max(0.0, tokens - 1.0), now_s)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def forget(self, key: str) -> None:
        """Refill ``key``'s bucket (after a successful login)."""
        self._buckets.pop(key, None)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request, and through what.

    ``session`` is set for a login session (cookie or its bearer form), ``api_token`` for
    an integration's token. ``must_enrol_totp``: a role of the person requires a second
    factor and none is enrolled; the API allows such a session only to enrol, read
    ``/me`` and log out.
    """

    person: Person
    session: LoginSession | None = None
    api_token: ApiToken | None = None
    must_enrol_totp: bool = False


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A successful login: the session token (shown once) and its CSRF token."""

    principal: Principal
    token: str
    csrf: str
    expires_at_s: float


@dataclass(frozen=True, slots=True)
class MintedToken:
    """A new API token: the record and the secret, shown once."""

    record: ApiToken
    secret: str


def _new_secret(prefix: str, random_bytes: RandomBytes) -> str:
    raw = random_bytes(_SECRET_BYTES)
    return prefix + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _new_id() -> str:
    return uuid.uuid4().hex


class Revocations(Protocol):
    """Told when a credential stops being valid, so that the edge closes the live
    connections (``/ws``, ``/device``) opened with it at once.

    Called from the worker thread of the request, after the store has recorded the
    revocation: an implementation hands the news to the event loop
    (``loop.call_soon_threadsafe``) and returns at once.
    """

    def session_revoked(self, session_id: str) -> None:
        """One login session ended (logout)."""
        ...

    def person_sessions_revoked(self, person_id: str) -> None:
        """Every session of a person ended (lock, password change or reset)."""
        ...

    def api_token_revoked(self, token_id: str) -> None:
        """An API token was revoked."""
        ...

    def device_revoked(self, device_id: str) -> None:
        """A cart was revoked: its open stream must close."""
        ...


class NoRevocations:
    """Revocations nobody listens to (tests, commands)."""

    def session_revoked(self, session_id: str) -> None:
        """Nothing to close."""

    def person_sessions_revoked(self, person_id: str) -> None:
        """Nothing to close."""

    def api_token_revoked(self, token_id: str) -> None:
        """Nothing to close."""

    def device_revoked(self, device_id: str) -> None:
        """Nothing to close."""


@dataclass(slots=True, kw_only=True)
class _Deps:
    directory: DirectoryRepository
    credentials: CredentialRepository
    sessions: SessionRepository
    audit: AuditSink
    policy: AccountPolicy
    clock: Clock
    random_bytes: RandomBytes
    new_id: Callable[[], str]
    revocations: Revocations


class Accounts:
    """Login, logout, password change, the second factor, sessions and API tokens.

    Parameters
    ----------
    directory, credentials, sessions, audit
        The store, through its Protocols.
    policy
        The settings.
    clock
        Seconds since the epoch (UTC); also drives the throttles.
    random_bytes
        The source of secrets (``secrets.token_bytes``).
    new_id
        Opaque ids for new records.
    revocations
        Told of every revoked session, token and device (the edge closes their
        connections); by default nobody.
    """

    def __init__(
        self,
        *,
        directory: DirectoryRepository,
        credentials: CredentialRepository,
        sessions: SessionRepository,
        audit: AuditSink,
        policy: AccountPolicy | None = None,
        clock: Clock = time.time,
        random_bytes: RandomBytes = secrets.token_bytes,
        new_id: Callable[[], str] = _new_id,
        revocations: Revocations | None = None,
    ) -> None:
        self.policy = policy or AccountPolicy()
        self._d = _Deps(
            directory=directory,
            credentials=credentials,
            sessions=sessions,
            audit=audit,
            policy=self.policy,
            clock=clock,
            random_bytes=random_bytes,
            new_id=new_id,
            revocations=revocations or NoRevocations(),
        )
        self._hasher = self.policy.hasher()
        # Verified when the user is unknown, so that such a login costs the same work.
        self._dummy_hash = self._hasher.hash(base64.b64encode(random_bytes(16)).decode())
        self._by_account = Throttle(
            burst=self.policy.account_burst,
            refill_per_s=self.policy.account_refill_per_s,
            max_keys=self.policy.throttle_keys,
            clock=clock,
        )
        self._by_address = Throttle(
            burst=self.policy.address_burst,
            refill_per_s=self.policy.address_refill_per_s,
            max_keys=self.policy.throttle_keys,
            clock=clock,
        )

    # Passwords
    def hash_password(self, password: str) -> str:
        """An argon2id hash of ``password`` with the policy's parameters."""
        return self._hasher.hash(password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _audit(
        self,
        action: str,
        *,
        actor: str | None = None,
        target: str | None = None,
        outcome: str = "ok",
        details: Mapping[str, str] | None = None,
        institution: str | None = None,
    ) -> None:
        self._d.audit.append(
            AuditEvent(
                at_s=self._d.clock(),
                action=action,
                actor=actor,
                target=target,
                outcome=outcome,
                details=dict(details or {}),
                institution=institution,
            )
        )

    # Login
    def login(
        self, username: str, password: str, *, totp: str | None = None, address: str = ""
    ) -> LoginResult:
        """Check a login and open a session.

        Parameters
        ----------
        username, password
            As typed.
        totp
            The 6-digit code, required once the person has enrolled.
        address
            The client's address, for the per-address throttle only (never stored).

        Raises
        ------
        Throttled
            Too many recent failures for this username or from this address.
        LoginFailed
            Unknown user, wrong password, or wrong or reused code.
        AccountLocked
            The account is locked (whatever the password).
        TotpRequired
            The password is right and a code is needed but was not given.
        """
        d = self._d
        account_key = username.strip().lower()
        wait_s = max(
            self._by_account.retry_after_s(account_key),
            self._by_address.retry_after_s(address),
        )
        if wait_s > 0:
            self._audit(
                "auth.login_throttled", outcome="denied", details={"username": account_key[:64]}
            )
            raise Throttled(wait_s)
        person = d.directory.person_by_username(account_key)
        creds = d.credentials.get_credentials(person.id) if person is not None else None
        if person is None or creds is None:
            self._verify(self._dummy_hash, password)
            self._fail(account_key, address, None)
            raise LoginFailed()
        password_ok = self._verify(creds.password_hash, password)
        if creds.locked:
            self._audit(
                "auth.login_failed", actor=person.id, outcome="denied", details={"reason": "locked"}
            )
            raise AccountLocked()
        if not password_ok:
            self._fail(account_key, address, person.id)
            raise self._count_failure(person)
        if creds.totp_secret is not None:
            if not totp:
                self._audit(
                    "auth.login_failed",
                    actor=person.id,
                    outcome="denied",
                    details={"reason": "totp_missing"},
                )
                raise TotpRequired()
            if not self._totp_ok(person.id, creds.totp_secret, totp):
                self._fail(account_key, address, person.id, reason="totp_wrong")
                raise self._count_failure(person)
        d.credentials.record_successful_login(person.id, d.clock())
        self._by_account.forget(account_key)
        if self._hasher.check_needs_rehash(creds.password_hash):
            d.credentials.set_password_hash(person.id, self._hasher.hash(password))
        return self._open_session(person, creds, "auth.login")

    def _fail(
        self, account_key: str, address: str, person_id: str | None, reason: str = "credentials"
    ) -> None:
        self._by_account.failed(account_key)
        self._by_address.failed(address)
        details = {"reason": reason}
        if person_id is None:
            details["username"] = account_key[:64]
        self._audit("auth.login_failed", actor=person_id, outcome="failed", details=details)

    def _count_failure(self, person: Person) -> LoginFailed | AccountLocked:
        d = self._d
        now_s = d.clock()
        failures = d.credentials.record_failed_login(person.id, now_s)
        if failures < self.policy.lock_after_failures:
            return LoginFailed()
        d.credentials.lock(person.id, now_s)
        d.sessions.revoke_sessions_of(person.id, now_s)
        d.revocations.person_sessions_revoked(person.id)
        self._audit(
            "auth.account_locked", target=f"person:{person.id}", details={"failures": str(failures)}
        )
        return AccountLocked()

    def _totp_ok(self, person_id: str, secret: str, code: str) -> bool:
        code = code.strip()
        if len(code) != 6 or not code.isdigit():
            return False
        totp = pyotp.TOTP(secret, digits=6, interval=30)
        now_step = int(self._d.clock() // 30)
        drift = self.policy.totp_drift_steps
        for step in range(now_step - drift, now_step + drift + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                return self._d.credentials.accept_totp_step(person_id, step)
        return False

    def _must_enrol(self, person: Person, creds: Credentials) -> bool:
        if creds.totp_secret is not None:
            return False
        return bool(person.roles & self._d.credentials.totp_required_roles())

    # Requests
    def authenticate(self, token: str) -> Principal:
        """The principal of a session token (cookie or bearer) or an API token.

        Raises
        ------
        SessionInvalid
            Unknown (forged), expired, or the person is gone.
        TokenRevoked
            A revoked session or API token (audited).
        AccountLocked
            The person's account is locked (their API tokens stop with it).
        """
        d = self._d
        now_s = d.clock()
        digest = token_sha256(token)
        if token.startswith(SESSION_PREFIX):
            session = d.sessions.session_by_sha256(digest)
            if session is None:
                self._audit("auth.session_invalid", outcome="denied", details={"reason": "unknown"})
                raise SessionInvalid()
            if session.revoked_at_s is not None:
                self._audit(
                    "auth.revoked_token_used",
                    actor=session.person_id,
                    target=f"session:{session.id}",
                    outcome="denied",
                )
                raise TokenRevoked()
            if not session.valid_at(now_s):
                raise SessionInvalid("the session has expired: log in again")
            person = d.directory.get_person(session.person_id)
            creds = d.credentials.get_credentials(session.person_id)
            if person is None or creds is None:
                raise SessionInvalid()
            if creds.locked:
                raise AccountLocked()
            return Principal(
                person, session=session, must_enrol_totp=self._must_enrol(person, creds)
            )
        if token.startswith(API_TOKEN_PREFIX):
            api_token = d.sessions.api_token_by_sha256(digest)
            if api_token is None:
                self._audit(
                    "auth.session_invalid",
                    outcome="denied",
                    details={"reason": "unknown api token"},
                )
                raise SessionInvalid()
            if api_token.revoked_at_s is not None:
                self._audit(
                    "auth.revoked_token_used",
                    actor=api_token.person_id,
                    target=f"api_token:{api_token.id}",
                    outcome="denied",
                )
                raise TokenRevoked()
            if not api_token.valid_at(now_s):
                raise SessionInvalid("the token has expired")
            person = d.directory.get_person(api_token.person_id)
            creds = d.credentials.get_credentials(api_token.person_id)
            if person is None or creds is None:
                raise SessionInvalid()
            if creds.locked:
                # A locked account stops its integrations too, until an admin unlocks it.
                raise AccountLocked()
            return Principal(person, api_token=api_token)
        self._audit("auth.session_invalid", outcome="denied", details={"reason": "malformed"})
        raise SessionInvalid()

    def csrf_failed(self, session_token: str) -> None:
        """Audit a state-changing request refused for its CSRF token, naming the
        session's person when the cookie is a real session."""
        session = self._d.sessions.session_by_sha256(token_sha256(session_token))
        self._audit(
            "auth.csrf_failed",
            actor=session.person_id if session else None,
            target=f"session:{session.id}" if session else None,
            outcome="denied",
        )

    def logout(self, principal: Principal) -> None:
        """End the principal's session (an API token is revoked with :meth:`revoke_token`)."""
        if principal.session is None:
            raise InvalidInput("session", "an API token has no session to end: revoke it")
        self._d.sessions.revoke_session(principal.session.id, self._d.clock())
        self._d.revocations.session_revoked(principal.session.id)
        self._audit(
            "auth.logout", actor=principal.person.id, target=f"session:{principal.session.id}"
        )

    def change_password(self, principal: Principal, old: str, new: str) -> LoginResult | None:
        """Replace the caller's password; every session of theirs ends.

        A caller on a login session gets a new one in its place (answered); a caller on
        an API token gets ``None``.

        Raises
        ------
        LoginFailed
            ``old`` is wrong (counted towards the lockout).
        AccountLocked
            ``old`` was wrong once too often.
        PasswordRejected
            ``new`` breaks the rules.
        """
        d = self._d
        person = principal.person
        creds = d.credentials.get_credentials(person.id)
        if creds is None:
            raise SessionInvalid()
        if not self._verify(creds.password_hash, old):
            self._audit("auth.password_change_failed", actor=person.id, outcome="failed")
            raise self._count_failure(person)
        check_password(self.policy, new, username=person.username, display_name=person.display_name)
        now_s = d.clock()
        d.credentials.set_password_hash(person.id, self._hasher.hash(new))
        ended = d.sessions.revoke_sessions_of(person.id, now_s)
        d.revocations.person_sessions_revoked(person.id)
        self._audit(
            "auth.password_changed", actor=person.id, details={"sessions_ended": str(ended)}
        )
        if principal.session is None:
            return None
        return self._open_session(person, creds, "auth.session_renewed")

    def _open_session(self, person: Person, creds: Credentials, action: str) -> LoginResult:
        d = self._d
        now_s = d.clock()
        token = _new_secret(SESSION_PREFIX, d.random_bytes)
        session = LoginSession(
            id=d.new_id(),
            person_id=person.id,
            sha256=token_sha256(token),
            created_at_s=now_s,
            expires_at_s=now_s + self.policy.session_lifetime_s,
        )
        d.sessions.add_session(session)
        self._audit(action, actor=person.id, target=f"session:{session.id}")
        principal = Principal(
            person=person, session=session, must_enrol_totp=self._must_enrol(person, creds)
        )
        return LoginResult(principal, token, csrf_token(token), session.expires_at_s)

    # Second factor
    def enrol_totp(self, principal: Principal, current_code: str | None = None) -> str:
        """Enrol a new TOTP secret for the caller and answer it (Base32, shown once).

        Replacing an enrolled secret needs a valid current code, so that a stolen session
        cannot move the second factor to another phone.
        """
        d = self._d
        person = principal.person
        creds = d.credentials.get_credentials(person.id)
        if creds is None:
            raise SessionInvalid()
        if creds.totp_secret is not None and not (
            current_code and self._totp_ok(person.id, creds.totp_secret, current_code)
        ):
            self._audit("auth.totp_enrol_failed", actor=person.id, outcome="denied")
            raise TotpRequired()
        secret = base64.b32encode(d.random_bytes(20)).decode("ascii")
        d.credentials.set_totp_secret(person.id, secret)
        self._audit("auth.totp_enrolled", actor=person.id)
        return secret

    def confirm_totp(self, person: Person, code: str | None) -> None:
        """Check the person's second factor for a step that requires it (signing).

        Raises
        ------
        TotpRequired
            No code given, none enrolled, or the code is wrong or was used already (a
            code counts once, as at login).
        """
        creds = self._d.credentials.get_credentials(person.id)
        if creds is None or creds.totp_secret is None or not code:
            raise TotpRequired()
        if not self._totp_ok(person.id, creds.totp_secret, code):
            raise TotpRequired()

    # API tokens
    def create_token(
        self, principal: Principal, name: str, *, lifetime_s: float | None = None
    ) -> MintedToken:
        """Mint an API token for the caller (not from another API token)."""
        if principal.session is None:
            raise Forbidden("API tokens are created from a login session")
        if lifetime_s is not None and not 0 < lifetime_s <= 10 * 365 * 86400:
            raise InvalidInput("lifetime_s", "more than 0 and at most ten years")
        d = self._d
        now_s = d.clock()
        secret = _new_secret(API_TOKEN_PREFIX, d.random_bytes)
        record = ApiToken(
            id=d.new_id(),
            person_id=principal.person.id,
            name=name,
            sha256=token_sha256(secret),
            created_at_s=now_s,
            expires_at_s=None if lifetime_s is None else now_s + lifetime_s,
        )
        d.sessions.add_api_token(record)
        self._audit(
            "auth.token_created", actor=principal.person.id, target=f"api_token:{record.id}"
        )
        return MintedToken(record, secret)

    def list_tokens(self, principal: Principal) -> tuple[ApiToken, ...]:
        """The caller's API tokens."""
        return tuple(self._d.sessions.list_api_tokens(principal.person.id))

    def revoke_token(self, principal: Principal, token_id: str) -> None:
        """Revoke one of the caller's API tokens; another person's is "not found"."""
        check_code("id", token_id)
        mine = {t.id for t in self._d.sessions.list_api_tokens(principal.person.id)}
        if token_id not in mine:
            raise NotFound("api token", token_id)
        self._d.sessions.revoke_api_token(token_id, self._d.clock())
        self._d.revocations.api_token_revoked(token_id)
        self._audit("auth.token_revoked", actor=principal.person.id, target=f"api_token:{token_id}")


class DeviceVerifier(Protocol):
    """The contract of a cart's credential check, for the ``/device`` endpoint."""

    def verify_device(self, credential: str) -> Device:
        """The registered, unrevoked device presenting ``credential``.

        Raises :class:`SessionInvalid` for an unknown one, :class:`TokenRevoked` for a
        revoked one (synchronous: one indexed lookup, call it from a worker thread).
        """
        ...


class DeviceCredentials:
    """Checks a cart's ``tcd_`` credential: its SHA-256 looked up in the directory.

    Synchronous (one indexed lookup); call it from a worker thread.
    """

    def __init__(self, directory: DirectoryRepository, audit: AuditSink, clock: Clock = time.time):
        self._directory = directory
        self._audit = audit
        self._clock = clock

    @staticmethod
    def is_device_credential(token: str) -> bool:
        """Whether ``token`` has the shape of a device credential (not a JWT)."""
        return token.startswith(DEVICE_PREFIX)

    def verify_device(self, credential: str) -> Device:
        """See :meth:`DeviceVerifier.verify_device`; a revoked cart's attempt is audited."""
        device = (
            self._directory.device_by_credential(token_sha256(credential))
            if self.is_device_credential(credential)
            else None
        )
        if device is None:
            self._audit.append(
                AuditEvent(
                    self._clock(),
                    "device.credential_refused",
                    outcome="denied",
                    details={"reason": "unknown"},
                )
            )
            raise SessionInvalid("unknown device credential")
        if device.revoked:
            self._audit.append(
                AuditEvent(
                    self._clock(),
                    "device.credential_refused",
                    target=f"device:{device.id}",
                    outcome="denied",
                    details={"reason": "revoked"},
                )
            )
            raise TokenRevoked()
        return device


@dataclass(frozen=True, slots=True)
class NewPerson:
    """What an admin gives to create a person (the password in clear, hashed at once)."""

    username: str
    display_name: str
    password: str
    roles: frozenset[Role]
    institution: str | None
    admin_scope: AdminScope | None = None
    department: str | None = None
    specialty: str | None = None
    title: str | None = None


class DirectoryAdmin:
    """Admins' changes to the directory and everyone's reading of it, with the rights of
    :mod:`consults.rights` applied and every change audited.

    Records outside what the caller may see raise :class:`NotFound`; inside it, an action
    the caller may not take raises :class:`Forbidden`.
    """

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts
        self._d = accounts._d

    # Helpers
    def _tree(self) -> rights.Tree:
        return rights.Tree(self._d.directory.all_institutions())

    def _require_admin(self, actor: Person) -> None:
        if not actor.is_admin:
            raise Forbidden("this needs an admin")

    def _audit(
        self, action: str, actor: Person, target: str, institution: str | None, **details: str
    ) -> None:
        self._accounts._audit(
            action, actor=actor.id, target=target, details=details, institution=institution
        )

    def _visible(self, viewer: Person, tree: rights.Tree) -> frozenset[str] | None:
        return rights.visible_institutions(viewer, tree, self._d.directory.all_relations())

    # Institutions
    def create_institution(
        self, actor: Person, *, code: str, name: str, level: Level, parent: str | None
    ) -> Institution:
        """Create an institution below ``parent`` (a root for a deployment admin)."""
        self._require_admin(actor)
        institution = Institution(code=code, name=name, level=level, parent=parent)
        tree = self._tree()
        if parent is not None and not rights.may_administer(actor, tree, parent):
            raise NotFound("institution", parent)
        if not rights.may_create_institution(actor, tree, parent):
            raise Forbidden("only a deployment admin creates a root institution")
        if code in tree:
            raise Conflict("institution", code)
        rights.check_parent(tree, institution)
        self._d.directory.add_institution(institution)
        self._audit("directory.institution_created", actor, f"institution:{code}", code)
        return institution

    def rename_institution(self, actor: Person, code: str, name: str) -> Institution:
        """Change an institution's name (its code, level and place in the tree stay)."""
        self._require_admin(actor)
        tree = self._tree()
        if code not in tree or not rights.may_administer(actor, tree, code):
            raise NotFound("institution", code)
        before = tree.get(code)
        renamed = Institution(code=code, name=name, level=before.level, parent=before.parent)
        self._d.directory.update_institution(renamed)
        self._audit("directory.institution_updated", actor, f"institution:{code}", code)
        return renamed

    def get_institution(self, viewer: Person, code: str) -> Institution:
        """The institution ``code`` if the viewer sees it, else :class:`NotFound`."""
        tree = self._tree()
        visible = self._visible(viewer, tree)
        if code not in tree or (visible is not None and code not in visible):
            raise NotFound("institution", code)
        return tree.get(code)

    def list_institutions(
        self,
        viewer: Person,
        page: PageRequest,
        *,
        parent: str | None = None,
        level: Level | None = None,
        search: str | None = None,
    ) -> Page[Institution]:
        """The institutions the viewer sees, filtered and paginated."""
        visible = self._visible(viewer, self._tree())
        where = InstitutionFilter(within=visible, parent=parent, level=level, search=search)
        return self._d.directory.list_institutions(where, page)

    # Departments
    def add_department(
        self, actor: Person, *, institution: str, code: str, name: str
    ) -> Department:
        """Add a department to an institution the admin reaches."""
        self._require_admin(actor)
        department = Department(institution=institution, code=code, name=name)
        tree = self._tree()
        if institution not in tree or not rights.may_administer(actor, tree, institution):
            raise NotFound("institution", institution)
        self._d.directory.add_department(department)
        self._audit(
            "directory.department_created", actor, f"department:{institution}/{code}", institution
        )
        return department

    def list_departments(self, viewer: Person, institution: str) -> tuple[Department, ...]:
        """The departments of an institution the viewer sees."""
        self.get_institution(viewer, institution)
        return tuple(self._d.directory.list_departments(institution))

    # People
    def create_person(self, actor: Person, new: NewPerson) -> Person:
        """Create a person in an institution the admin reaches, with a first password."""
        self._require_admin(actor)
        check_username(new.username)
        person = Person(
            id=self._d.new_id(),
            username=new.username,
            display_name=new.display_name,
            institution=new.institution,
            roles=new.roles,
            admin_scope=new.admin_scope,
            department=new.department,
            specialty=new.specialty,
            title=new.title,
        )
        tree = self._tree()
        if new.institution is not None and not (
            new.institution in tree and rights.may_administer(actor, tree, new.institution)
        ):
            raise NotFound("institution", new.institution)
        if not rights.may_grant(actor, new.roles, new.admin_scope):
            raise Forbidden("only a deployment admin makes a deployment admin")
        if new.department is not None and new.institution is not None:
            codes = {d.code for d in self._d.directory.list_departments(new.institution)}
            if new.department not in codes:
                raise NotFound("department", new.department)
        check_password(
            self._accounts.policy,
            new.password,
            username=new.username,
            display_name=new.display_name,
        )
        if self._d.directory.person_by_username(new.username) is not None:
            raise Conflict("person", new.username)
        creds = Credentials(
            person_id=person.id, password_hash=self._accounts.hash_password(new.password)
        )
        self._d.directory.add_person(person, creds)
        self._audit(
            "directory.person_created",
            actor,
            f"person:{person.id}",
            person.institution,
            roles=",".join(sorted(r.value for r in person.roles)),
        )
        return person

    def get_person(self, viewer: Person, person_id: str) -> Person:
        """A person the viewer sees (themselves always), else :class:`NotFound`."""
        check_code("id", person_id)
        person = self._d.directory.get_person(person_id)
        if person is None:
            raise NotFound("person", person_id)
        if person.id == viewer.id:
            return person
        visible = self._visible(viewer, self._tree())
        if visible is not None and person.institution not in visible:
            raise NotFound("person", person_id)
        return person

    def list_people(
        self,
        viewer: Person,
        page: PageRequest,
        *,
        institution: str | None = None,
        role: Role | None = None,
        search: str | None = None,
    ) -> Page[Person]:
        """The people of the institutions the viewer sees, filtered and paginated."""
        visible = self._visible(viewer, self._tree())
        if institution is not None:
            if visible is not None and institution not in visible:
                raise NotFound("institution", institution)
            visible = frozenset({institution})
        return self._d.directory.list_people(
            PeopleFilter(institutions=visible, role=role, search=search), page
        )

    def update_person(self, actor: Person, person: Person) -> Person:
        """Replace a person's record (same id and username) as an admin who reaches both
        their institution and the new one; audited with the fields that changed."""
        self._require_admin(actor)
        before = self._administered_person(actor, person.id)
        if person.username != before.username:
            raise InvalidInput("username", "a username does not change")
        tree = self._tree()
        if person.institution != before.institution and not (
            person.institution in tree and rights.may_administer(actor, tree, person.institution)
        ):
            raise NotFound("institution", str(person.institution))
        if not rights.may_grant(actor, person.roles, person.admin_scope):
            raise Forbidden("only a deployment admin makes a deployment admin")
        if person.department is not None and person.institution is not None:
            codes = {d.code for d in self._d.directory.list_departments(person.institution)}
            if person.department not in codes:
                raise NotFound("department", person.department)
        self._d.directory.update_person(person)
        old_fields = dataclasses.asdict(before)
        changed = [k for k, v in dataclasses.asdict(person).items() if old_fields[k] != v]
        self._audit(
            "directory.person_updated",
            actor,
            f"person:{person.id}",
            person.institution,
            fields=",".join(changed),
        )
        return person

    def reset_password(self, actor: Person, person_id: str, password: str) -> None:
        """Give a person a new password (they forgot theirs); their sessions end."""
        self._require_admin(actor)
        person = self._administered_person(actor, person_id)
        check_password(
            self._accounts.policy,
            password,
            username=person.username,
            display_name=person.display_name,
        )
        now_s = self._d.clock()
        self._d.credentials.set_password_hash(person.id, self._accounts.hash_password(password))
        ended = self._d.sessions.revoke_sessions_of(person.id, now_s)
        self._d.revocations.person_sessions_revoked(person.id)
        self._audit(
            "auth.password_reset",
            actor,
            f"person:{person.id}",
            person.institution,
            sessions_ended=str(ended),
        )

    def unlock(self, actor: Person, person_id: str) -> None:
        """Unlock a locked account of an institution the admin reaches."""
        self._require_admin(actor)
        person = self._administered_person(actor, person_id)
        self._d.credentials.unlock(person.id)
        self._audit("auth.account_unlocked", actor, f"person:{person.id}", person.institution)

    def _administered_person(self, actor: Person, person_id: str) -> Person:
        check_code("id", person_id)
        person = self._d.directory.get_person(person_id)
        if person is None or not rights.may_administer(actor, self._tree(), person.institution):
            raise NotFound("person", person_id)
        return person

    def set_totp_required_roles(self, actor: Person, roles: frozenset[Role]) -> None:
        """Choose which roles must log in with a second factor (deployment admins)."""
        if not actor.is_deployment_admin:
            raise Forbidden("only a deployment admin sets which roles need a second factor")
        self._d.credentials.set_totp_required_roles(roles)
        self._audit(
            "auth.totp_roles_set",
            actor,
            "deployment",
            None,
            roles=",".join(sorted(r.value for r in roles)),
        )

    # Devices
    def register_device(
        self, actor: Person, *, device_id: str, name: str, institution: str
    ) -> tuple[Device, str]:
        """Register a cart to an institution the admin reaches; answer it and its
        credential (shown once)."""
        self._require_admin(actor)
        device = Device(
            id=device_id, name=name, institution=institution, created_at_s=self._d.clock()
        )
        tree = self._tree()
        if institution not in tree or not rights.may_administer(actor, tree, institution):
            raise NotFound("institution", institution)
        if self._d.directory.get_device(device_id) is not None:
            raise Conflict("device", device_id)
        credential = _new_secret(DEVICE_PREFIX, self._d.random_bytes)
        self._d.directory.add_device(device, token_sha256(credential))
        self._audit("directory.device_registered", actor, f"device:{device_id}", institution)
        return device, credential

    def get_device(self, viewer: Person, device_id: str) -> Device:
        """A device of an institution the viewer administers, else :class:`NotFound`."""
        check_code("id", device_id)
        device = self._d.directory.get_device(device_id)
        if device is None or not rights.may_administer(viewer, self._tree(), device.institution):
            raise NotFound("device", device_id)
        return device

    def list_devices(
        self, viewer: Person, page: PageRequest, *, search: str | None = None
    ) -> Page[Device]:
        """The devices of the institutions the viewer administers."""
        self._require_admin(viewer)
        reach = rights.admin_reach(viewer, self._tree())
        return self._d.directory.list_devices(DeviceFilter(institutions=reach, search=search), page)

    def revoke_device(self, actor: Person, device_id: str) -> Device:
        """Revoke a cart at once (the edge closes its open connection)."""
        self._require_admin(actor)
        device = self.get_device(actor, device_id)
        self._d.directory.revoke_device(device_id, self._d.clock())
        self._d.revocations.device_revoked(device_id)
        self._audit("directory.device_revoked", actor, f"device:{device_id}", device.institution)
        return Device(device.id, device.name, device.institution, True, device.created_at_s)

    # Service relations
    def set_relation(self, actor: Person, relation: ServiceRelation) -> None:
        """Add or remove a service relation (an override of the tree's default)."""
        self._require_admin(actor)
        tree = self._tree()
        for code in (relation.provider, relation.client):
            if code not in tree:
                raise NotFound("institution", code)
        if not rights.may_set_relation(actor, tree, relation):
            raise NotFound("institution", relation.client)
        self._d.directory.set_relation(relation)
        self._audit(
            "directory.relation_set",
            actor,
            f"relation:{relation.provider}>{relation.client}",
            relation.client,
            kind=relation.kind.value,
            override=relation.override.value,
        )

    def clear_relation(
        self, actor: Person, *, provider: str, client: str, kind: ServiceKind
    ) -> None:
        """Clear an override (back to the tree's default)."""
        self._require_admin(actor)
        tree = self._tree()
        if not rights.may_clear_relation(actor, tree, provider, client):
            raise NotFound("institution", client)
        self._d.directory.clear_relation(provider, client, kind)
        self._audit(
            "directory.relation_cleared",
            actor,
            f"relation:{provider}>{client}",
            client,
            kind=kind.value,
        )

    def list_relations(self, viewer: Person) -> tuple[ServiceRelation, ...]:
        """The overrides touching institutions the viewer sees."""
        visible = self._visible(viewer, self._tree())
        return tuple(
            r
            for r in self._d.directory.all_relations()
            if visible is None or r.client in visible or r.provider in visible
        )

    # Setup
    def create_first_admin(self, *, username: str, display_name: str, password: str) -> Person:
        """Create the first deployment admin; refused once one exists (``teleconsult setup``)."""
        d = self._d
        if d.directory.deployment_admin_exists():
            raise Conflict("deployment admin", "any")
        check_username(username)
        check_password(
            self._accounts.policy, password, username=username, display_name=display_name
        )
        person = Person(
            id=d.new_id(),
            username=username,
            display_name=display_name,
            institution=None,
            roles=frozenset({Role.ADMIN}),
            admin_scope=AdminScope.DEPLOYMENT,
        )
        d.directory.add_person(
            person, Credentials(person.id, self._accounts.hash_password(password))
        )
        self._accounts._audit(
            "directory.first_admin_created", actor=person.id, target=f"person:{person.id}"
        )
        return person
