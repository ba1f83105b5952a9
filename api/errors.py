"""Every error the edge answers, mapped to a response in one place.

Every error is JSON ``{"error": {"code": CODE, "reason": "..."}}`` with a 4xx or 5xx
status: ``code`` is stable (clients and tests branch on it), ``reason`` is for a person.
Handlers raise :class:`ApiError` (or one of its status-named subclasses); Litestar's own
exceptions (validation, unknown route, wrong method, body too large) are translated by
:func:`exception_handlers`. Anything else is an internal error: it is logged with its
traceback and answered with the generic code ``internal`` and no detail, as
websockets does ("Don't include exception details, which may be security-sensitive").

Outside ``/api`` (pages, static files) an error answers plain text, not JSON: a person
reads it in a browser.

The exception tree::

    ApiError(status, code, reason)
    ├── BadRequest      400
    ├── Unauthorized    401
    ├── Forbidden       403
    ├── NotFound        404
    ├── Conflict        409
    └── Unavailable     503

:func:`error_responses` documents a handler's errors in the OpenAPI document with the
same schema and an example for each, so that every endpoint lists what it can answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.types import ExceptionHandlersMap

__all__ = [
    "API_PREFIX",
    "ApiError",
    "BadRequest",
    "Conflict",
    "ErrorBody",
    "ErrorDetail",
    "Forbidden",
    "JsonRequest",
    "NotFound",
    "Unauthorized",
    "Unavailable",
    "error_body",
    "error_responses",
    "exception_handlers",
]

logger = logging.getLogger(__name__)

API_PREFIX: Final = "/api/"

# The code a status answers with when nothing more precise was raised.
STATUS_CODES: Final[Mapping[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_body",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}
INTERNAL_REASON: Final = "the server failed to handle this request"


class ErrorDetail(msgspec.Struct, frozen=True):
    """What went wrong: a stable ``code`` and a ``reason`` for a person."""

    code: str
    reason: str


class ErrorBody(msgspec.Struct, frozen=True):
    """The body of every error response."""

    error: ErrorDetail


class ApiError(Exception):
    """An error answered to the client as it is (status, stable code, reason).

    Parameters
    ----------
    status : int
        HTTP status, 4xx or 5xx.
    code : str
        Stable machine-readable code, ``snake_case`` (``bad_credentials``).
    reason : str
        For a person; never internal detail (paths, SQL, tracebacks).
    headers : mapping, optional
        Extra response headers (``WWW-Authenticate``, ``Retry-After``).
    """

    status: int = 400

    def __init__(
        self,
        code: str,
        reason: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        if status is not None:
            self.status = status
        if not 400 <= self.status <= 599:
            raise ValueError(f"an error status is 4xx or 5xx, not {self.status}")
        self.code = code
        self.reason = reason
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    """400: the request is malformed or its values are invalid."""

    status = 400


class Unauthorized(ApiError):
    """401: no, or no valid, credentials."""

    status = 401


class Forbidden(ApiError):
    """403: authenticated, but not allowed."""

    status = 403


class NotFound(ApiError):
    """404: no such thing (also for another institution's record)."""

    status = 404


class Conflict(ApiError):
    """409: the request conflicts with the current state (a duplicate code)."""

    status = 409


class Unavailable(ApiError):
    """503: a dependency (the store) is failing; try again later."""

    status = 503


class JsonRequest(Request[Any, Any, Any]):
    """Litestar's request, whose JSON body nested past the decoder's depth is malformed
    (400 ``invalid_json``), not a ``RecursionError`` answered 500 with a traceback."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            # msgspec recurses per level: 10,000 levels (40 KB) exhaust the stack.
            raise SerializationException("JSON is malformed: nested too deeply") from None


def error_body(code: str, reason: str) -> bytes:
    """The JSON body of an error."""
    return msgspec.json.encode(ErrorBody(ErrorDetail(code=code, reason=reason)))


def _answer(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    reason: str,
    headers: Mapping[str, str] | None = None,
) -> Response[Any]:
    if request.url.path.startswith(API_PREFIX):
        return Response(
            content=error_body(code, reason),
            status_code=status,
            media_type=MediaType.JSON,
            headers=dict(headers or {}),
        )
    return Response(
        content=reason + "\n",
        status_code=status,
        media_type=MediaType.TEXT,
        headers=dict(headers or {}),
    )


def _api_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, ApiError)
    return _answer(request, exc.status, exc.code, exc.reason, exc.headers)


def _validation(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """400 ``invalid_body``: the reason names the field (msgspec's own words)."""
    assert isinstance(exc, ValidationException)
    reasons = [
        f"{item.get('message', '')} at {item['key']}" if item.get("key") else str(item["message"])
        for item in (exc.extra or [])
        if isinstance(item, dict) and item.get("message")
    ]
    reason = "; ".join(r for r in reasons if r) or "the request does not match the schema"
    # msgspec's messages name the field and the type expected, never our internals; the
    # bounded length keeps a huge wrong value out of the answer.
    return _answer(request, 400, "invalid_body", reason[:500])


def _http(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc.detail)
        return _answer(request, status, STATUS_CODES.get(status, "internal"), INTERNAL_REASON)
    code = STATUS_CODES.get(status, "bad_request")
    detail = str(exc.detail or "")
    if status == 400 and detail.startswith("JSON is malformed"):
        code = "invalid_json"
    # Litestar's own 4xx details describe the request ("JSON is malformed: ..."), never
    # our state; the phrase stands in when there is none.
    phrase = HTTPStatus(status).phrase
    reason = _REASONS.get(status) or (detail if detail and detail != phrase else phrase.lower())
    headers = exc.headers or {}
    return _answer(request, status, code, reason, headers)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _answer(request, 500, "internal", INTERNAL_REASON)


_REASONS: Final[Mapping[int, str]] = {
    404: "not found",
    405: "this method is not allowed here",
    413: "the request body is over the size limit",
}


def exception_handlers() -> ExceptionHandlersMap:
    """The one mapping of exceptions to responses, for :class:`litestar.Litestar`."""
    return {
        ApiError: _api_error,
        ValidationException: _validation,
        NotFoundException: _http,
        MethodNotAllowedException: _http,
        HTTPException: _http,
        Exception: _internal,
    }


def error_responses(*errors: tuple[int, str, str]) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses`` for a handler's errors, each with the schema and an example.

    Parameters
    ----------
    *errors : (status, code, reason)
        What the handler may answer; several codes of one status are listed as
        several examples of that status. ``400 invalid_body`` and ``500 internal``
        are always added.

    Examples
    --------
    >>> spec = error_responses((401, "bad_credentials", "wrong username or password"))
    >>> sorted(spec)
    [400, 401, 500]
    """
    by_status: dict[int, list[tuple[str, str]]] = {}
    for status, code, reason in (
        (400, "invalid_body", "Expected `str`, got `int` at username"),
        *errors,
        (500, "internal", INTERNAL_REASON),
    ):
        by_status.setdefault(status, []).append((code, reason))
    specs: dict[int, ResponseSpec] = {}
    for status, listed in sorted(by_status.items()):
        specs[status] = ResponseSpec(
            data_container=ErrorBody,
            description=", ".join(code for code, _ in listed),
            examples=[
                Example(
                    summary=code,
                    value={"error": {"code": code, "reason": reason}},
                )
                for code, reason in listed
            ],
        )
    return specs
