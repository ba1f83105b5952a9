"""Login sessions at the edge: who makes a request, the CSRF check, the session cookies,
and the translation of the domain's errors into the edge's error answers.

Design notes
------------
- **Credentials.** ``Authorization: Bearer <token>`` (a login session's token, or an API
  token) wins; otherwise the ``tc_session`` cookie. The token is checked by
  :meth:`consults.accounts.Accounts.authenticate` in a worker thread (it reads the
  store): the :func:`provide_principal` dependency, injected with ``Provide``.
- **CSRF** (:class:`CsrfMiddleware`, on the API router): a state-changing request
  (``POST``, ``PUT``, ``PATCH``, ``DELETE``) that carries the session cookie and no
  bearer token must send ``X-CSRF-Token`` equal to the session's CSRF token (an HMAC of
  the cookie's value, :func:`consults.accounts.csrf_token`), else 403 ``csrf_failed``
  and an audit row, before any handler runs. A cross-site page cannot read the cookie
  nor the ``tc_csrf`` cookie, so it cannot send the header; a bearer request carries
  no ambient credential and needs no CSRF token. Login is exempt (it opens the session
  whose token it would need, and a stale cookie must not stop a new login): it takes
  ``application/json`` only, which a cross-site page cannot send without a preflight.
- **Cookies.** ``tc_session``: HttpOnly, ``SameSite=Lax``, ``Path=/``, ``Secure`` under
  TLS (the request's scheme, or :attr:`SessionConfig.secure_cookies`); ``tc_csrf``:
  the same but readable by our scripts.
- **Errors.** :func:`consults_error` answers every :class:`consults.errors.ConsultsError`
  through the edge's one mapping (:class:`api.errors.ApiError`), with the status of
  :data:`STATUS` and the domain's stable code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import anyio.to_thread
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.app import API_PATH
from api.errors import ApiError, error_body, exception_handlers
from consults import errors
from consults.accounts import (
    Accounts,
    DeviceCredentials,
    DeviceVerifier,
    LoginResult,
    Principal,
    check_csrf,
)
from consults.requests import AttachmentTooLarge, AttachmentType
from consults.transitions import TransitionNotAllowed
from sessions.errors import InvalidToken
from sessions.tokens import TokenClaims

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "STATUS",
    "CsrfMiddleware",
    "SessionConfig",
    "bearer",
    "clear_cookies",
    "consults_error",
    "csrf_middleware",
    "device_token_verifier",
    "provide_principal",
    "provide_restricted_principal",
    "session_cookies",
]

logger = logging.getLogger(__name__)

SESSION_COOKIE: Final = "tc_session"
CSRF_COOKIE: Final = "tc_csrf"
CSRF_HEADER: Final = "x-csrf-token"
_UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Login opens a session, so it cannot need one's CSRF token; it takes JSON only instead
# (see api.auth), which another site cannot send without a CORS preflight.
LOGIN_PATHS: Final = frozenset({f"{API_PATH}/auth/login", f"{API_PATH}/auth/login/"})

# HTTP status of each domain error (the most specific class listed wins).
STATUS: Final[Mapping[type[errors.ConsultsError], int]] = {
    TransitionNotAllowed: 409,
    AttachmentTooLarge: 413,
    AttachmentType: 415,
    errors.InvalidInput: 400,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Forbidden: 403,
    errors.CsrfFailed: 403,
    errors.Throttled: 429,
    errors.AuthError: 401,
    errors.RepositoryError: 503,
    errors.ConsultsError: 400,
}


@dataclass(frozen=True, kw_only=True)
class SessionConfig:
    """How session cookies are set.

    Attributes
    ----------
    secure_cookies : bool | None
        ``True``: always ``Secure``; ``None``: ``Secure`` when the request came over
        https (the edge serving TLS itself); ``False`` never (plain-HTTP development).
    """

    secure_cookies: bool | None = None


def status_of(exc: errors.ConsultsError) -> int:
    """The HTTP status of a domain error."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def as_api_error(exc: errors.ConsultsError) -> ApiError:
    """The edge error for a domain error (``Retry-After`` for a throttled login)."""
    headers: dict[str, str] = {}
    if isinstance(exc, errors.Throttled):
        headers["retry-after"] = str(max(1, round(exc.retry_after_s)))
    if isinstance(exc, errors.AuthError) and not isinstance(
        exc, errors.CsrfFailed | errors.Throttled
    ):
        headers["www-authenticate"] = "Bearer"
    return ApiError(exc.code, exc.reason, status=status_of(exc), headers=headers)


def consults_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Exception handler: a domain error answered through the edge's one mapping."""
    assert isinstance(exc, errors.ConsultsError)
    if isinstance(exc, errors.RepositoryError):
        logger.warning("store failed for %s %s: %s", request.method, request.url.path, exc)
    return exception_handlers()[ApiError](request, as_api_error(exc))


def bearer(request: Request[Any, Any, Any]) -> str | None:
    """The token of ``Authorization: Bearer``, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _credential(request: Request[Any, Any, Any]) -> str:
    token = bearer(request) or request.cookies.get(SESSION_COOKIE)
    if not token:
        raise errors.SessionInvalid()
    return token


def provide_principal(
    request: Request[Any, Any, Any], accounts: NamedDependency[Accounts]
) -> Principal:
    """The caller, authenticated (``Provide(..., sync_to_thread=True)``).

    A session restricted to enrolling a second factor is refused here (403
    ``totp_enrolment_required``); the few handlers open to it use
    :func:`provide_restricted_principal`.
    """
    principal = accounts.authenticate(_credential(request))
    if principal.must_enrol_totp:
        raise ApiError(
            "totp_enrolment_required",
            "your role requires a second factor: enrol one with POST /api/v1/me/totp",
            status=403,
        )
    return principal


def provide_restricted_principal(
    request: Request[Any, Any, Any], accounts: NamedDependency[Accounts]
) -> Principal:
    """The caller, authenticated, even with a session restricted to enrolling TOTP."""
    return accounts.authenticate(_credential(request))


def _cookie_secure(request: Request[Any, Any, Any], config: SessionConfig) -> bool:
    if config.secure_cookies is not None:
        return config.secure_cookies
    return request.url.scheme == "https"


def session_cookies(
    request: Request[Any, Any, Any], config: SessionConfig, result: LoginResult
) -> list[Cookie]:
    """The session cookie (HttpOnly) and the CSRF cookie (readable) of a login."""
    secure = _cookie_secure(request, config)
    max_age = (
        max(1, int(result.principal.session.expires_at_s - result.principal.session.created_at_s))
        if result.principal.session
        else None
    )
    return [
        Cookie(
            key=SESSION_COOKIE,
            value=result.token,
            path="/",
            httponly=True,
            secure=secure,
            samesite="lax",
            max_age=max_age,
        ),
        Cookie(
            key=CSRF_COOKIE,
            value=result.csrf,
            path="/",
            httponly=False,
            secure=secure,
            samesite="lax",
            max_age=max_age,
        ),
    ]


def clear_cookies(request: Request[Any, Any, Any], config: SessionConfig) -> list[Cookie]:
    """Cookies that delete both session cookies."""
    secure = _cookie_secure(request, config)
    return [
        Cookie(
            key=name,
            value="",
            path="/",
            max_age=0,
            httponly=name == SESSION_COOKIE,
            secure=secure,
            samesite="lax",
        )
        for name in (SESSION_COOKIE, CSRF_COOKIE)
    ]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if raw is None:
        return None
    for part in raw.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip('"')
    return None


class CsrfMiddleware:
    """ASGI middleware of the API router: refuse a cookie-authenticated state-changing
    request without the session's CSRF token (403 ``csrf_failed``, audited).

    Parameters
    ----------
    app
        The next application.
    accounts
        Audits the refusal (in a worker thread: it writes to the store).
    """

    def __init__(
        self, app: ASGIApp, accounts: Accounts, exempt_paths: frozenset[str] = LOGIN_PATHS
    ) -> None:
        self.app = app
        self.accounts = accounts
        self.exempt_paths = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != ScopeType.HTTP
            or scope.get("method") not in _UNSAFE_METHODS
            or scope["path"] in self.exempt_paths
        ):
            await self.app(scope, receive, send)
            return
        session = _cookie(scope, SESSION_COOKIE)
        authorization = (_header(scope, b"authorization") or "").lower()
        if not session or authorization.startswith("bearer "):
            await self.app(scope, receive, send)
            return
        if check_csrf(session, _header(scope, CSRF_HEADER.encode())):
            await self.app(scope, receive, send)
            return
        await anyio.to_thread.run_sync(self.accounts.csrf_failed, session)
        refusal = errors.CsrfFailed()
        body = error_body(refusal.code, refusal.reason)
        start: Message = {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})


def csrf_middleware(accounts: Accounts) -> Callable[[ASGIApp], ASGIApp]:
    """The CSRF middleware for ``create_app(middleware=[...])``.

    A factory closing over ``accounts`` rather than ``DefineMiddleware(..., accounts=)``:
    Litestar deep-copies middleware arguments with the routes, which would give the
    middleware a copy of the services (and of an in-memory store) instead of them.
    """

    def wrap(app: ASGIApp) -> ASGIApp:
        return CsrfMiddleware(app, accounts)

    return wrap


def device_token_verifier(
    devices: DeviceVerifier,
    jwt_verify: Callable[[str], TokenClaims],
    *,
    clock: Callable[[], float] = time.time,
    lease_s: float = 24 * 3600.0,
) -> Callable[[str], TokenClaims]:
    """A ``verify(token) -> TokenClaims`` for the ``/device`` endpoint that takes both a
    registered cart's credential (``tcd_...``, checked by ``devices``) and, for the
    integrations and tests of today, a device JWT (checked by ``jwt_verify``).

    A cart's claims: ``identity`` its device id, ``name`` its name, ``role`` ``device``,
    ``room`` and ``institution`` its institution's code (what its streams belong to), ``jti``
    ``device:<id>`` (revoking the cart refuses it at once), valid for ``lease_s`` from
    now. An unknown or revoked credential raises
    :class:`sessions.errors.InvalidToken` (401 at the upgrade; the attempt is audited).

    It reads the store (one indexed lookup): call it off the event loop.
    """

    def verify(token: str) -> TokenClaims:
        if not DeviceCredentials.is_device_credential(token):
            return jwt_verify(token)
        try:
            device = devices.verify_device(token)
        except errors.TokenRevoked as exc:
            raise InvalidToken("this device has been revoked") from exc
        except errors.AuthError as exc:
            raise InvalidToken("unknown device credential") from exc
        now_s = clock()
        return TokenClaims(
            identity=device.id,
            name=device.name,
            role="device",
            room=device.institution,
            permissions=frozenset(),
            jti=f"device:{device.id}",
            expires_at_s=now_s + lease_s,
            not_before_s=now_s - 1.0,
            issued_at_s=now_s,
            institution=device.institution,
        )

    return verify
