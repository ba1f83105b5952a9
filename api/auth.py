"""``/api/v1/auth`` and ``/api/v1/me``: login, logout, password change, the caller, their
second factor and their API tokens; and :func:`account_api`, everything the lead wires.

Design notes
------------
- Handlers are synchronous and run in a worker thread (``sync_to_thread=True``): they
  hash passwords and read the store, and the event loop must wait on neither.
- Login refuses a body that is not ``application/json``: a cross-site page can post a
  form or ``text/plain`` without a CORS preflight, never JSON, so nobody can be logged
  in to someone else's account by another site (login CSRF), without a token the
  login page would first have to fetch.
- Every error is a :class:`consults.errors.ConsultsError` answered by
  :func:`api.session.consults_error` through the edge's mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler, Middleware

from api.directory import directory_handlers
from api.errors import ApiError
from api.schemas import (
    LoginAnswer,
    LoginRequest,
    MeAnswer,
    PasswordChange,
    TokenAnswer,
    TokenCreate,
    TokenCreated,
    TotpAnswer,
    TotpEnrol,
    body,
    documented,
    utc,
)
from api.session import (
    SessionConfig,
    clear_cookies,
    consults_error,
    csrf_middleware,
    provide_principal,
    provide_restricted_principal,
    session_cookies,
)
from consults.accounts import Accounts, DirectoryAdmin, LoginResult, Principal
from consults.directory import Role
from consults.errors import ConsultsError, Forbidden

__all__ = ["AccountApi", "AuthController", "MeController", "account_api"]

_RESTRICTED = {"principal": Provide(provide_restricted_principal, sync_to_thread=True)}
_NO_STORE = {"cache-control": "no-store"}
_ME = MeAnswer(
    id="3f2b9c1e7d4a4f0e9a1b2c3d4e5f6a7b",
    username="li.doctor",
    display_name="李医生",
    roles=[Role.DOCTOR],
    institution="town-1",
    admin_scope=None,
    department=None,
    specialty=None,
    title="主治医师",
)
_SESSION_EXAMPLE = "tcs_q3Zk1n0d2y8XyP4vT5uW6rS7tQ8pO9nM0lK1jI2hG3f"
_LOGIN = LoginAnswer(
    token=_SESSION_EXAMPLE,
    csrf_token="mC3hTqz1b9V1yF0r2nK8s7JQbq4N0hxO6vC0aQeQ5mM",
    expires_at=utc(1_800_043_200),
    me=_ME,
)
_AUTH_ERRORS = (
    (401, "session_invalid", "not logged in or the session has expired"),
    (401, "token_revoked", "this token has been revoked"),
    (403, "csrf_failed", "missing or wrong CSRF token: send the X-CSRF-Token header"),
)


def _answer_login(
    request: Request[Any, Any, Any], config: SessionConfig, result: LoginResult
) -> Response[LoginAnswer]:
    answer = LoginAnswer(
        token=result.token,
        csrf_token=result.csrf,
        expires_at=utc(result.expires_at_s),
        me=MeAnswer.of_caller(
            result.principal.person, must_enrol_totp=result.principal.must_enrol_totp
        ),
    )
    cookies: list[Cookie] = session_cookies(request, config, result)
    return Response(answer, cookies=cookies, headers=_NO_STORE)


class AuthController(Controller):
    """Login, logout and password change."""

    path = "/auth"
    tags = ["auth"]  # noqa: RUF012 - Litestar's own class attribute
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @post(
        "/login",
        status_code=200,
        sync_to_thread=True,
        summary="Log in: a bearer token and the session cookie",
        responses=documented(
            200,
            LoginAnswer,
            _LOGIN,
            (401, "login_failed", "username or password is wrong"),
            (401, "account_locked", "the account is locked after repeated failed logins"),
            (401, "totp_required", "a one-time code (totp) is required for this account"),
            (415, "unsupported_media_type", "send the login as application/json"),
            (429, "throttled", "too many login attempts: try again later"),
        ),
    )
    def login(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[
            LoginRequest, body(LoginRequest(username="li.doctor", password="s3cret passphrase"))
        ],
        accounts: NamedDependency[Accounts],
        session_config: NamedDependency[SessionConfig],
    ) -> Response[LoginAnswer]:
        """Check the password (and ``totp`` once enrolled) and open a session.

        The answer's ``token`` works as ``Authorization: Bearer``; the same session is
        set in the HttpOnly ``tc_session`` cookie. Unknown user and wrong password are
        the same error; a locked account says so whatever the password.
        """
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise ApiError(
                "unsupported_media_type", "send the login as application/json", status=415
            )
        address = request.client.host if request.client else ""
        result = accounts.login(data.username, data.password, totp=data.totp, address=address)
        return _answer_login(request, session_config, result)

    @post(
        "/logout",
        status_code=204,
        sync_to_thread=True,
        dependencies=_RESTRICTED,
        summary="End the session",
        responses=documented(204, None, None, *_AUTH_ERRORS),
    )
    def logout(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        accounts: NamedDependency[Accounts],
        session_config: NamedDependency[SessionConfig],
    ) -> Response[None]:
        """End the caller's session and clear its cookies."""
        accounts.logout(principal)
        return Response(None, status_code=204, cookies=clear_cookies(request, session_config))

    @post(
        "/password",
        status_code=200,
        sync_to_thread=True,
        summary="Change the password",
        responses=documented(
            200,
            LoginAnswer,
            _LOGIN,
            *_AUTH_ERRORS,
            (400, "password_rejected", "password: at least 8 characters"),
            (401, "login_failed", "username or password is wrong"),
            (403, "forbidden", "change your password from a login session"),
        ),
    )
    def change_password(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[
            PasswordChange,
            body(PasswordChange(old_password="old passphrase", new_password="new passphrase")),
        ],
        principal: NamedDependency[Principal],
        accounts: NamedDependency[Accounts],
        session_config: NamedDependency[SessionConfig],
    ) -> Response[LoginAnswer]:
        """Replace the caller's password: every session of theirs ends, and a new one
        (token and cookies) is answered in place of this one."""
        if principal.session is None:
            raise Forbidden("change your password from a login session")
        result = accounts.change_password(principal, data.old_password, data.new_password)
        assert result is not None  # a session's caller always gets a new session
        return _answer_login(request, session_config, result)


class MeController(Controller):
    """The caller: who they are, their second factor, their API tokens."""

    path = "/me"
    tags = ["me"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @get(
        "/",
        sync_to_thread=True,
        dependencies=_RESTRICTED,
        summary="Who is logged in",
        responses=documented(200, MeAnswer, _ME, *_AUTH_ERRORS),
    )
    def me(self, principal: NamedDependency[Principal]) -> MeAnswer:
        """The caller's person: ``username``, ``display_name``, ``roles``, ``institution``."""
        return MeAnswer.of_caller(principal.person, must_enrol_totp=principal.must_enrol_totp)

    @post(
        "/totp",
        status_code=200,
        sync_to_thread=True,
        dependencies=_RESTRICTED,
        summary="Enrol a second factor (TOTP)",
        responses=documented(
            200,
            TotpAnswer,
            TotpAnswer(
                secret="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
                uri="otpauth://totp/teleconsult:li.doctor?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=teleconsult",
            ),
            *_AUTH_ERRORS,
            (401, "totp_required", "a one-time code (totp) is required for this account"),
        ),
    )
    def enrol_totp(
        self,
        principal: NamedDependency[Principal],
        accounts: NamedDependency[Accounts],
        data: Annotated[TotpEnrol | None, body(TotpEnrol(totp=None))] = None,
    ) -> Response[TotpAnswer]:
        """A new TOTP secret (RFC 6238, 30 s, 6 digits), shown once; from now on login
        takes ``totp``. Replacing an enrolled one needs its current code in ``totp``."""
        secret = accounts.enrol_totp(principal, data.totp if data else None)
        uri = (
            f"otpauth://totp/teleconsult:{quote(principal.person.username)}"
            f"?secret={secret}&issuer=teleconsult&digits=6&period=30"
        )
        return Response(TotpAnswer(secret=secret, uri=uri), headers=_NO_STORE)

    @get(
        "/tokens",
        sync_to_thread=True,
        summary="The caller's API tokens",
        responses=documented(
            200,
            TokenAnswer,
            [
                TokenAnswer(
                    id="9c1e7d4a4f0e9a1b2c3d4e5f6a7b3f2b",
                    name="HIS link",
                    created_at=utc(1_800_000_000),
                    expires_at=None,
                    revoked_at=None,
                )
            ],
            *_AUTH_ERRORS,
        ),
    )
    def list_tokens(
        self, principal: NamedDependency[Principal], accounts: NamedDependency[Accounts]
    ) -> list[TokenAnswer]:
        """The caller's API tokens, revoked ones too, newest first (never their secret)."""
        return [TokenAnswer.of(t) for t in accounts.list_tokens(principal)]

    @post(
        "/tokens",
        status_code=201,
        sync_to_thread=True,
        summary="Create an API token for an integration",
        responses=documented(
            201,
            TokenCreated,
            TokenCreated(
                token="tca_Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYg",
                info=TokenAnswer(
                    id="9c1e7d4a4f0e9a1b2c3d4e5f6a7b3f2b",
                    name="HIS link",
                    created_at=utc(1_800_000_000),
                    expires_at=None,
                    revoked_at=None,
                ),
            ),
            *_AUTH_ERRORS,
            (403, "forbidden", "API tokens are created from a login session"),
        ),
    )
    def create_token(
        self,
        data: Annotated[TokenCreate, body(TokenCreate(name="HIS link", lifetime_s=None))],
        principal: NamedDependency[Principal],
        accounts: NamedDependency[Accounts],
    ) -> Response[TokenCreated]:
        """Mint an API token (``Authorization: Bearer``), shown this once."""
        minted = accounts.create_token(principal, data.name, lifetime_s=data.lifetime_s)
        return Response(
            TokenCreated(token=minted.secret, info=TokenAnswer.of(minted.record)),
            status_code=201,
            headers=_NO_STORE,
        )

    @delete(
        "/tokens/{token_id:str}",
        status_code=204,
        sync_to_thread=True,
        summary="Revoke one of the caller's API tokens",
        responses=documented(
            204, None, None, *_AUTH_ERRORS, (404, "not_found", "no api token 'x'")
        ),
    )
    def revoke_token(
        self,
        token_id: Annotated[str, Parameter(max_length=64)],
        principal: NamedDependency[Principal],
        accounts: NamedDependency[Accounts],
    ) -> None:
        """Revoke the token at once; another person's token is "not found"."""
        accounts.revoke_token(principal, token_id)


@dataclass(frozen=True)
class AccountApi:
    """What the server wires for accounts and the directory: pass each to
    :func:`api.app.create_app` (``route_handlers``, ``dependencies``, ``middleware``)."""

    route_handlers: Sequence[ControllerRouterHandler]
    dependencies: dict[str, Provide]
    middleware: Sequence[Middleware]


def account_api(
    accounts: NamedDependency[Accounts],
    directory: NamedDependency[DirectoryAdmin],
    session_config: SessionConfig | None = None,
) -> AccountApi:
    """The controllers, their dependencies (``Provide``) and the CSRF middleware."""
    config = session_config or SessionConfig()
    return AccountApi(
        route_handlers=[AuthController, MeController, *directory_handlers()],
        dependencies={
            "accounts": Provide(lambda: accounts, use_cache=True, sync_to_thread=False),
            "directory": Provide(lambda: directory, use_cache=True, sync_to_thread=False),
            "session_config": Provide(lambda: config, use_cache=True, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=True),
        },
        middleware=[csrf_middleware(accounts)],
    )
