"""The real server (signaling + the aiortc SFU) and a real coturn, for browser tests.

The server runs in the test's event loop, assembled by ``teleconsult.app.build_server``
exactly as ``teleconsult serve`` does (real ``media.sfu.Sfu``, SQLite Store in a tmp
data dir); coturn runs as a subprocess on loopback with the TURN REST-API shared
secret (``use-auth-secret``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.edge import EdgeConfig, EdgeServer
from media.sfu import Sfu
from sessions.tokens import mint_token
from sessions.turn import IceConfig
from teleconsult.app import build_server
from teleconsult.config import Config, DataSection, MediaSection
from tests.media.turn import Turn, coturn

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
SECRET = "e2e-secret-" + "x" * 32


@dataclass
class Consult:
    """A running server and how to open its client."""

    server: EdgeServer
    sfu: Sfu

    def token(self, identity: str, *, moderator: bool = False, room: str = "consult") -> str:
        permissions = {"publish", "subscribe"} | ({"moderate"} if moderator else set())
        return mint_token(
            SECRET,
            identity=identity,
            name=identity.replace("-", " ").title(),
            role="expert" if moderator else "applicant",
            room=room,
            permissions=frozenset(permissions),
        )

    def join_url(self, identity: str, *, moderator: bool = True, extra: str = "") -> str:
        """The client URL that joins at once, with a small camera to spare the CPU."""
        token = self.token(identity, moderator=moderator)
        return f"{self.server.url}/join?token={token}&autojoin=1&lang=en&w=320&h=180&fps=15{extra}"


@asynccontextmanager
async def running_consult(
    data_dir: Path,
    *,
    turn: Turn | None = None,
    relay: bool = False,
) -> AsyncIterator[Consult]:
    """Start the server as ``teleconsult serve`` assembles it, on a free 127.0.0.1 port."""
    config = Config(
        server=EdgeConfig(port=0),
        data=DataSection(data_dir=data_dir, secret=SECRET, web_dir=WEB_DIR),
        ice=IceConfig(
            turn_urls=(turn.url,) if turn else (), turn_secret=turn.secret if turn else None
        ),
        media=MediaSection(ice_transport_policy="relay" if relay else "all"),
    )
    server = build_server(config)
    assert isinstance(server.media, Sfu)
    await server.start()
    try:
        yield Consult(server, server.media)
    finally:
        await server.close()


@pytest.fixture
async def consult(tmp_path: Path) -> AsyncIterator[Consult]:
    """The server with embedded defaults (no STUN, no TURN)."""
    async with running_consult(tmp_path / "var") as running:
        yield running


__all__ = ["Consult", "Turn", "consult", "coturn", "running_consult"]
