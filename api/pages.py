"""The browser's pages and static files.

- ``/join``: the consult client ``index.html``; its query (``token``, ``autojoin``) is for
  the page's script, not for the server.
- ``/ecg``: the live ECG viewer ``ecg.html`` (its query, ``token``, is for the page).
- ``/consults``, ``/readings``: the consult pages and the ECG centre's reading pages.
- ``/``: a line saying where to go.
- ``/static/<path>``: files under the web folder: by default the package data of
  ``web`` (:func:`package_web_dir`), so that a non-editable install serves them too.

:func:`static_file` is a pure function of the folder and the requested path, so that
its refusals are tested without a socket: the path must stay inside the folder (no
``..``, no empty, hidden or NUL-carrying part, no backslash, no symlink out), name a
plain file under :data:`MAX_STATIC_BYTES`; anything else is a 404, never a 500.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from litestar import MediaType, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

__all__ = [
    "CONTENT_TYPES",
    "MAX_STATIC_BYTES",
    "StaticFile",
    "package_web_dir",
    "page_handlers",
    "static_file",
]

CONTENT_TYPES: Final[Mapping[str, str]] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
}
MAX_STATIC_BYTES: Final = 16 * 1024 * 1024
ROOT_TEXT: Final = "teleconsult: open /join?token=... (mint one with `teleconsult token`)\n"


def package_web_dir() -> Path:
    """The folder of the ``web`` package's assets, where it is installed (or checked out).

    Found by package name, not imported: ``web`` holds no code of ours to depend on.
    """
    return Path(str(importlib.resources.files("web")))


@dataclass(frozen=True)
class StaticFile:
    """What :func:`static_file` answers: a status, the body and its content type."""

    status: int
    body: bytes
    content_type: str


_NOT_FOUND: Final = StaticFile(404, b"not found\n", "text/plain; charset=utf-8")


def static_file(web_dir: Path, relative: str) -> StaticFile:
    """``relative`` from ``web_dir``, or a 404 if it is not a plain file inside it."""
    parts = relative.split("/")
    if any(
        part in ("", ".", "..") or part.startswith(".") or "\\" in part or "\x00" in part
        for part in parts
    ):
        return _NOT_FOUND
    root = web_dir.resolve()
    try:
        path = (root / relative).resolve(strict=True)
        if not path.is_relative_to(root) or not path.is_file():
            return _NOT_FOUND
        if path.stat().st_size > MAX_STATIC_BYTES:
            return _NOT_FOUND
        body = path.read_bytes()
    except (OSError, RuntimeError, ValueError):  # missing, a loop, a name the OS refuses
        return _NOT_FOUND
    content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return StaticFile(200, body, content_type)


def _respond(found: StaticFile) -> Response[bytes]:
    return Response(
        content=found.body,
        status_code=found.status,
        # Litestar adds the charset of text types itself.
        media_type=found.content_type.split(";")[0],
        headers={"cache-control": "no-cache"},
    )


def page_handlers(web_dir: Path) -> list[HTTPRouteHandler]:
    """The route handlers of the pages and static files served from ``web_dir``."""

    @get("/", include_in_schema=False, sync_to_thread=False)
    def root() -> Response[bytes]:
        found = static_file(web_dir, "home.html")
        if found.status == 404:  # a web folder without the home page (tests, old installs)
            return Response(content=ROOT_TEXT.encode(), media_type=MediaType.TEXT)
        return _respond(found)

    @get("/join", include_in_schema=False, sync_to_thread=False)
    def join() -> Response[bytes]:
        found = static_file(web_dir, "index.html")
        if found.status == 404:
            return Response(
                content=b"the browser client is not installed (web/index.html)\n",
                status_code=404,
                media_type=MediaType.TEXT,
            )
        return _respond(found)

    @get("/ecg", include_in_schema=False, sync_to_thread=False)
    def ecg() -> Response[bytes]:
        return _respond(static_file(web_dir, "ecg.html"))

    @get("/consults", include_in_schema=False, sync_to_thread=False)
    def consults() -> Response[bytes]:
        return _respond(static_file(web_dir, "consults.html"))

    @get("/readings", include_in_schema=False, sync_to_thread=False)
    def readings() -> Response[bytes]:
        return _respond(static_file(web_dir, "readings.html"))

    # Files are small (a few kB) and in the page cache: read on the loop, as before.
    @get("/static/{relative:path}", include_in_schema=False, sync_to_thread=False)
    def static(relative: FromPath[str]) -> Response[bytes]:
        return _respond(static_file(web_dir, relative.lstrip("/")))

    return [root, join, ecg, consults, readings, static]
