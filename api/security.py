"""Security headers on every HTTP response of the edge.

A ``before_send`` hook of the application (no per-request object is built) adds, unless
the handler set them itself:

- ``Content-Security-Policy``: scripts, styles, images and connections from our own
  origin only, no ``'unsafe-inline'`` (the pages in ``web/`` load every script and style
  from a file), no plugins, no ``<base>``, and ``frame-ancestors 'none'`` (no page of
  ours inside another site's frame: clickjacking). ``connect-src 'self'`` covers the
  page's own ``ws://``/``wss://`` origin in current browsers; camera and microphone
  streams are ``blob:``/``mediastream:`` for ``<video>``.
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` (a join link's
  token must not leak to another site through ``Referer``), ``X-Frame-Options: DENY``
  for browsers that predate ``frame-ancestors``.
- ``Strict-Transport-Security`` only when the edge serves TLS itself.

The WebSocket refusals of ``/ws`` and ``/device`` are answered by their own handlers and
carry no page, so nothing is added there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from litestar.types import Message, Scope

__all__ = ["CSP", "SecurityHeaders", "security_headers"]

CSP: Final = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def security_headers(*, tls: bool = False, csp: str = CSP) -> dict[str, str]:
    """The headers every response carries (``tls``: add HSTS)."""
    headers = {
        "content-security-policy": csp,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
        "cross-origin-opener-policy": "same-origin",
    }
    if tls:
        headers["strict-transport-security"] = "max-age=31536000"
    return headers


class SecurityHeaders:
    """A Litestar ``before_send`` hook: add the headers to every HTTP response start.

    It runs on every message the application sends, routing errors included (a route
    middleware would miss the 404 of an unknown path). A header the response already
    has is kept.

    Parameters
    ----------
    headers : mapping
        Lower-case names and their values.
    """

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = [(name.encode(), value.encode()) for name, value in headers.items()]

    async def __call__(self, message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        present = {name.lower() for name, _ in message.get("headers", ())}
        added = [item for item in self._headers if item[0] not in present]
        message["headers"] = [*message.get("headers", ()), *added]
