"""Fixtures of the accounts API tests: the edge app with the accounts controllers, served
by real uvicorn on 127.0.0.1 over the store (no test here)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.auth import account_api
from api.edge import Edge, EdgeConfig
from api.session import CSRF_COOKIE
from consults.accounts import AccountPolicy, Accounts, DirectoryAdmin
from tests.consults.memory import MemoryStore

FAST_POLICY = AccountPolicy(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
ADMIN_PASSWORD = "deployment passphrase 1"
PASSWORD = "a long passphrase"


@dataclass
class Stack:
    """The running API and what the tests look into."""

    url: str
    store: MemoryStore
    accounts: Accounts
    directory: DirectoryAdmin

    def audited(self) -> list[str]:
        """The actions audited so far."""
        return self.store.actions()


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[MemoryStore]:
    """The store the API runs on."""
    yield MemoryStore()


@pytest.fixture
def policy() -> AccountPolicy:
    """The accounts policy of the API under test (a cheap hasher); tests override it."""
    return FAST_POLICY


@pytest.fixture
async def stack(backend: MemoryStore, policy: AccountPolicy) -> AsyncIterator[Stack]:
    """The app on a free loopback port, with a first deployment admin ``root``."""
    accounts = Accounts(
        directory=backend,
        credentials=backend,
        sessions=backend,
        audit=backend,
        policy=policy,
    )
    directory = DirectoryAdmin(accounts)
    directory.create_first_admin(username="root", display_name="Root", password=ADMIN_PASSWORD)
    wiring = account_api(accounts, directory)
    app = create_app(
        route_handlers=wiring.route_handlers,
        dependencies=wiring.dependencies,
        middleware=wiring.middleware,
    )
    edge = Edge(app, EdgeConfig(port=0), ws_max_size_bytes=1 << 20)
    await edge.start()
    try:
        yield Stack(edge.url, backend, accounts, directory)
    finally:
        await edge.close()


async def login(
    client: httpx.AsyncClient, username: str, password: str, **extra: Any
) -> dict[str, Any]:
    """Log in with the client (its cookie jar keeps the session); the answer's JSON."""
    answer = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password, **extra}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def csrf(client: httpx.AsyncClient) -> dict[str, str]:
    """The CSRF header for a cookie session, read from the readable cookie like the page."""
    return {"x-csrf-token": client.cookies[CSRF_COOKIE]}


def error_of(response: httpx.Response) -> tuple[int, str]:
    """The status and stable code of an error answer, checking its shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "reason"}
    assert body["error"]["reason"]
    assert "Traceback" not in response.text
    return response.status_code, body["error"]["code"]
