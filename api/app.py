"""The ASGI application of the edge: one Litestar app for everything on the one port.

:func:`create_app` assembles it from parts that other packages hand in, so that this
module imports none of them:

- ``route_handlers``: the REST API's controllers and handlers, mounted under
  :data:`API_PATH` (``/api/v1``), with ``dependencies`` (``Provide``) injected, never
  imported as globals. Their OpenAPI 3.1 document, generated from the msgspec Structs the
  handlers take and return, is at ``GET /api/v1/openapi.json``.
- ``websockets``: raw ASGI applications for WebSocket paths (``/ws``, ``/device``). They
  get uvicorn's ``receive``/``send`` directly: per message, nothing of Litestar runs
  (see :mod:`api.ws`).
- ``web_dir``: the pages and static files (:mod:`api.pages`).
- ``health`` and ``health_checks``: ``/healthz`` (:class:`HealthCheck`); ``metrics``:
  ``/metrics`` (Prometheus text).

Conventions for an API handler (so that every endpoint documents its request and
response schemas, its errors and an example):

- take and return msgspec Structs (``data: JSONBody[LoginRequest]`` → ``LoginAnswer``;
  path parameters as ``FromPath[int]``: the markers Litestar 3 requires), with the
  errors documented by ``@post(..., responses=error_responses(...))`` and an example
  on every field: ``username: Annotated[str, msgspec.Meta(examples=["li.wei"])]``;
- raise :class:`api.errors.ApiError` subclasses with a stable code; never return an error
  body by hand; list them with :func:`api.errors.error_responses`.

Errors are mapped in one place (:func:`api.errors.exception_handlers`); every response
carries the security headers (:mod:`api.security`); a request body over
:attr:`ApiConfig.max_body_bytes` answers 413 ``too_large``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec
from litestar import Litestar, MediaType, Response, Router, asgi, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.types import (
    ControllerRouterHandler,
    LifespanHook,
    Middleware,
    Receive,
    Scope,
    Send,
)

from api.edge_config import ApiConfig
from api.errors import JsonRequest, exception_handlers
from api.pages import page_handlers
from api.security import SecurityHeaders, security_headers

__all__ = ["API_PATH", "ApiConfig", "HealthCheck", "create_app", "openapi_gaps"]

logger = logging.getLogger(__name__)

API_PATH: Final = "/api/v1"
# A raw ASGI application (scope, receive, send) for a WebSocket path.
RawEndpoint = Callable[[Any, Any, Any], Awaitable[None]]


class HealthCheck(Protocol):
    """One check behind ``/healthz`` (the store answers, the disk is writable).

    Called in a worker thread (it may block on the database); it returns when the
    dependency is healthy and raises when not. Its exception goes to the log, never to
    the client.
    """

    def __call__(self) -> None: ...


class HealthDocument(msgspec.Struct):
    """``/healthz``: ``ok``, or ``degraded`` (HTTP 503) when a check fails."""

    status: str
    checks: dict[str, str]


def create_app(
    *,
    route_handlers: Sequence[ControllerRouterHandler] = (),
    dependencies: Mapping[str, Provide] | None = None,
    config: ApiConfig | None = None,
    middleware: Sequence[Middleware] = (),
    web_dir: Path | None = None,
    websockets: Mapping[str, RawEndpoint] | None = None,
    health: Callable[[], Mapping[str, object]] | None = None,
    health_checks: Mapping[str, HealthCheck] | None = None,
    metrics: Callable[[], tuple[bytes, str]] | None = None,
    on_startup: Sequence[LifespanHook] = (),
    on_shutdown: Sequence[LifespanHook] = (),
) -> Litestar:
    """The edge's ASGI application.

    Parameters
    ----------
    route_handlers : sequence
        Controllers, routers and handlers of the REST API, mounted under ``/api/v1``.
    dependencies : mapping, optional
        ``Provide`` dependencies for every handler (by parameter name).
    config : ApiConfig, optional
        Limits and OpenAPI metadata; defaults to ``ApiConfig()``.
    middleware : sequence
        Middleware for the API's routes (sessions, CSRF).
    web_dir : Path, optional
        The browser assets; without it no page is served.
    websockets : mapping, optional
        Path → raw ASGI application for a WebSocket endpoint (``/ws``, ``/device``).
    health : callable, optional
        The body of ``/healthz`` (counts, version); ``status`` and ``checks`` are added.
    health_checks : mapping, optional
        Name → :class:`HealthCheck`; one failing makes ``/healthz`` ``degraded`` (503).
    metrics : callable, optional
        ``() -> (body, content_type)`` for ``/metrics``.
    on_startup, on_shutdown : sequence
        Lifespan hooks (run by uvicorn when the server starts and stops).
    """
    config = config or ApiConfig()
    checks = dict(health_checks or {})
    handlers: list[ControllerRouterHandler] = [
        Router(
            path=API_PATH,
            route_handlers=list(route_handlers),
            middleware=list(middleware),
        ),
        _healthz(health, checks, config.health_timeout_s),
    ]
    if metrics is not None:
        handlers.append(_metrics(metrics))
    if web_dir is not None:
        handlers.extend(page_handlers(web_dir))
    for path, endpoint in (websockets or {}).items():
        handlers.append(_mount(path, endpoint))
    return Litestar(
        route_handlers=handlers,
        dependencies=dict(dependencies or {}),
        exception_handlers=exception_handlers(),
        request_class=JsonRequest,
        before_send=[SecurityHeaders(security_headers(tls=config.tls))],
        request_max_body_size=config.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title=config.title,
            version=config.version,
            # The document alone, at /api/v1/openapi.json: the plugin serves the root
            # of its router, and the router's catch-all 404 (an HTML page) then sits
            # under the document's own path, not over the API's unknown paths.
            path=f"{API_PATH}/openapi.json",
            render_plugins=[JsonRenderPlugin(path="/")],
        ),
        on_startup=list(on_startup),
        on_shutdown=list(on_shutdown),
        # Our own logging: no traceback or request detail printed by the framework.
        logging_config=None,
        debug=False,
    )


def _mount(path: str, endpoint: RawEndpoint) -> Any:
    async def websocket_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await endpoint(scope, receive, send)

    websocket_endpoint.__name__ = f"ws_{path.strip('/').replace('/', '_')}"
    return asgi(path, copy_scope=False)(websocket_endpoint)


def _healthz(
    health: Callable[[], Mapping[str, object]] | None,
    checks: Mapping[str, HealthCheck],
    timeout_s: float,
) -> Any:
    async def run_check(name: str, check: HealthCheck) -> str:
        try:
            await asyncio.wait_for(asyncio.to_thread(check), timeout_s)
        except Exception as exc:  # any failure of a dependency is "failed"
            logger.warning("health check %s failed: %s", name, type(exc).__name__)
            return "failed"
        return "ok"

    @get("/healthz", include_in_schema=False)
    async def healthz() -> Response[bytes]:
        results = await asyncio.gather(*(run_check(n, c) for n, c in checks.items()))
        states = dict(zip(checks, results, strict=True))
        degraded = any(state != "ok" for state in states.values())
        document: dict[str, object] = dict(health() if health is not None else {})
        document["status"] = "degraded" if degraded else "ok"
        document["checks"] = states
        return Response(
            content=msgspec.json.encode(document),
            status_code=503 if degraded else 200,
            media_type=MediaType.JSON,
            headers={"cache-control": "no-store"},
        )

    return healthz


def _metrics(render: Callable[[], tuple[bytes, str]]) -> Any:
    @get("/metrics", include_in_schema=False, sync_to_thread=False)
    def metrics() -> Response[bytes]:
        body, content_type = render()
        return Response(content=body, media_type=content_type)

    return metrics


# Methods that always carry a body (a POST may be an action that takes none: logout).
_BODY_METHODS: Final = frozenset({"put", "patch"})
# Success answers that are files, not JSON documents.
_FILE_MEDIA: Final = (
    "application/pdf",
    "application/fhir+json",
    "application/dicom",
    "application/octet-stream",
    "text/csv",
    "image/png",
    "image/jpeg",
)


def openapi_gaps(document: Mapping[str, Any]) -> list[str]:
    """What the OpenAPI document fails to say, one line per gap (empty: complete).

    The convention every API endpoint follows: a success response with a schema (or a
    204), a request body with a schema where the method takes one, at least one
    documented 4xx error in the ``ErrorBody`` shape, and an example (in the request or
    response schema, or among the response's examples). Tests of the composed app
    assert that this returns ``[]``.
    """
    schemas: Mapping[str, Any] = document.get("components", {}).get("schemas", {})

    def resolve(node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = schemas.get(str(node["$ref"]).rsplit("/", 1)[-1], {})
        return node

    def has_example(node: Any, depth: int = 0) -> bool:
        node = resolve(node)
        if depth > 6 or not isinstance(node, dict):
            return False
        if node.get("examples") or "example" in node:
            return True
        children = [*node.get("properties", {}).values(), node.get("items")]
        children += [*node.get("oneOf", []), *node.get("anyOf", []), *node.get("allOf", [])]
        return any(has_example(child, depth + 1) for child in children if child)

    gaps: list[str] = []
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            where = f"{method.upper()} {path}"
            responses: Mapping[str, Any] = operation["responses"]
            ok = [code for code in responses if code.startswith("2")]
            errors = [code for code in responses if code.startswith("4")]
            examples = False
            # What there is to show an example of: a JSON body in or out. An action
            # without a body (logout, revoke) answering 204 or a file (a PDF, a CSV, a
            # FHIR Bundle, an attachment's bytes) has none to give.
            exemplary = False
            for code in ok:
                content: Mapping[str, Any] = responses[code].get("content", {})
                json_content = content.get("application/json")
                if code == "204":
                    continue
                if not content:
                    gaps.append(f"{where}: {code} has no schema")
                elif json_content is not None:
                    exemplary = True
                    examples |= bool(json_content.get("examples")) or has_example(
                        json_content["schema"]
                    )
                elif not any(media in content for media in _FILE_MEDIA):
                    gaps.append(f"{where}: {code} answers {sorted(content)}, not JSON or a file")
            if not ok:
                gaps.append(f"{where}: no success response")
            if not errors:
                gaps.append(f"{where}: no 4xx error documented (use error_responses)")
            request: Mapping[str, Any] = operation.get("requestBody", {}).get("content", {})
            body = request.get("application/json")
            if method in _BODY_METHODS and not request:
                gaps.append(f"{where}: no request body schema")
            if body is not None:
                exemplary = True
                examples |= has_example(body.get("schema"))
            if exemplary and not examples:
                gaps.append(f"{where}: no example (msgspec.Meta(examples=[...]) on a field)")
    return gaps
