"""The exceptions of ``consults/``: one tree.

Every error carries a stable ``code`` (a class attribute, part of the API contract: the
edge maps it to ``{"error": {"code", "reason"}}`` and to an HTTP status in one place) and
a ``reason`` meant for the person who made the request. A reason never says more than the
caller may know: a failed login never says whether the user exists or the password was
wrong, and a record of another branch of the tree is ``NotFound``, never ``Forbidden``.

::

    ConsultsError
    ├── InvalidInput              a value breaks a rule of the domain (field + reason)
    │   └── PasswordRejected      a new password breaks the password rules
    ├── NotFound                  no such record, or not one the caller may see
    ├── Conflict                  the record exists already (code, username, device id)
    ├── Forbidden                 the caller sees the record but may not do this to it
    ├── AuthError                 authentication refused (never say why in more detail)
    │   ├── LoginFailed           unknown user or wrong password: one error for both
    │   ├── AccountLocked         too many failures; an admin unlocks
    │   ├── TotpRequired          the second factor is required and was not given
    │   ├── Throttled             too many attempts from this account or address
    │   ├── SessionInvalid        missing, expired, forged or revoked session
    │   ├── TokenRevoked          a revoked bearer token or device credential was used
    │   └── CsrfFailed            a state-changing request without a valid CSRF token
    └── RepositoryError           storage could not do what was asked (not the caller's fault)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccountLocked",
    "AuthError",
    "Conflict",
    "ConsultsError",
    "CsrfFailed",
    "Forbidden",
    "InvalidInput",
    "LoginFailed",
    "NotFound",
    "PasswordRejected",
    "RepositoryError",
    "SessionInvalid",
    "Throttled",
    "TokenRevoked",
    "TotpRequired",
]


class ConsultsError(Exception):
    """Base of every error raised by ``consults/``.

    Parameters
    ----------
    reason
        What went wrong, for the client; no internal detail.
    """

    code: ClassVar[str] = "error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidInput(ConsultsError):
    """A value breaks a rule of the domain; ``field`` names it."""

    code = "invalid_input"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class PasswordRejected(InvalidInput):
    """A new password breaks the password rules (length, not the username, ...)."""

    code = "password_rejected"

    def __init__(self, reason: str) -> None:
        super().__init__("password", reason)


class NotFound(ConsultsError):
    """No such record, or one the caller may not see (answered the same way)."""

    code = "not_found"

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"no {kind} {key!r}")
        self.kind = kind
        self.key = key


class Conflict(ConsultsError):
    """A record with this key exists already."""

    code = "conflict"

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} exists already")
        self.kind = kind
        self.key = key


class Forbidden(ConsultsError):
    """The caller may see the record but may not do this to it."""

    code = "forbidden"


class AuthError(ConsultsError):
    """Authentication refused."""

    code = "unauthenticated"


class LoginFailed(AuthError):
    """Unknown user or wrong password (or TOTP code): one error, one reason, for all."""

    code = "login_failed"

    def __init__(self) -> None:
        super().__init__("username or password is wrong")


class AccountLocked(AuthError):
    """The account is locked after repeated failures; an admin unlocks it.

    Raised whatever the password given, so it does not tell whether it was right.
    """

    code = "account_locked"

    def __init__(self) -> None:
        super().__init__("the account is locked after repeated failed logins: ask an admin")


class TotpRequired(AuthError):
    """The second factor is required for this account and was not given."""

    code = "totp_required"

    def __init__(self) -> None:
        super().__init__("a one-time code (totp) is required for this account")


class Throttled(AuthError):
    """Too many login attempts for this account or from this address.

    ``retry_after_s`` is when the next attempt will be considered.
    """

    code = "throttled"

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("too many login attempts: try again later")
        self.retry_after_s = retry_after_s


class SessionInvalid(AuthError):
    """Missing, expired, forged or revoked session or bearer token."""

    code = "session_invalid"

    def __init__(self, reason: str = "not logged in or the session has expired") -> None:
        super().__init__(reason)


class TokenRevoked(AuthError):
    """A revoked bearer token or device credential was presented."""

    code = "token_revoked"

    def __init__(self) -> None:
        super().__init__("this token has been revoked")


class CsrfFailed(AuthError):
    """A state-changing request carried the session cookie but no valid CSRF token."""

    code = "csrf_failed"

    def __init__(self) -> None:
        super().__init__("missing or wrong CSRF token: send the X-CSRF-Token header")


class RepositoryError(ConsultsError):
    """Storage could not do what was asked; the request may be retried."""

    code = "unavailable"
