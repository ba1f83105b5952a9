"""Fixtures of the accounts API tests: the edge app with the accounts controllers, served
by real uvicorn on 127.0.0.1 over the real SQL store on SQLite (no test here)."""

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
from consults.directory import Institution
from store.audit import AuditQuery, query
from store.stores import Stores, open_store

FAST_POLICY = AccountPolicy(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
ADMIN_PASSWORD = "deployment passphrase 1"
WEB_DIR = Path(__file__).resolve().parents[2] / "web"
PASSWORD = "a long passphrase"


@dataclass
class Stack:
    """The running API and the store it runs on, for the tests to look into."""

    url: str
    stores: Stores
    accounts: Accounts
    directory: DirectoryAdmin

    def audited(self) -> list[str]:
        """The actions of the audit table so far, in order."""
        with self.stores.engine.connect() as conn:
            return [row.action for row in query(conn, AuditQuery(), limit=100_000)]

    def institutions(self) -> list[Institution]:
        """Every institution stored."""
        return list(self.stores.directory.all_institutions())


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Stores]:
    """The SQL store on SQLite in a temporary data directory, migrated to head."""
    stores = open_store(data_dir=tmp_path / "data")
    try:
        yield stores
    finally:
        stores.close()


@pytest.fixture
def policy() -> AccountPolicy:
    """The accounts policy of the API under test (a cheap hasher); tests override it."""
    return FAST_POLICY


@pytest.fixture
async def stack(backend: Stores, policy: AccountPolicy) -> AsyncIterator[Stack]:
    """The app on a free loopback port, with a first deployment admin ``root``."""
    accounts = Accounts(
        directory=backend.directory,
        credentials=backend.credentials,
        sessions=backend.sessions,
        audit=backend.audit,
        policy=policy,
    )
    directory = DirectoryAdmin(accounts)
    directory.create_first_admin(username="root", display_name="Root", password=ADMIN_PASSWORD)
    wiring = account_api(accounts, directory)
    app = create_app(
        route_handlers=wiring.route_handlers,
        dependencies=wiring.dependencies,
        middleware=wiring.middleware,
        web_dir=WEB_DIR,
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
