"""Room tokens for logged-in people: the part follows from directory roles, the token
carries the person's institution, every mint is audited; under real uvicorn and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from litestar.di import Provide

from api.app import create_app
from api.auth import account_api
from api.edge import Edge, EdgeConfig
from api.rooms import RoomTokenController, RoomTokens
from consults.accounts import AccountPolicy, Accounts, DirectoryAdmin, NewPerson
from consults.directory import Level, Role
from sessions.tokens import verify_token
from store.stores import Stores
from tests.api.test_auth_fixtures import (
    ADMIN_PASSWORD,
    PASSWORD,
    Stack,
    backend,
    csrf,
    error_of,
    login,
    policy,
)

__all__ = ["backend", "policy"]  # fixtures used by name

SECRET = "r" * 40


@pytest.fixture
async def stack(backend: Stores, policy: AccountPolicy) -> AsyncIterator[Stack]:
    """The accounts API and the room-token controller, with people of three kinds."""
    accounts = Accounts(
        directory=backend.directory,
        credentials=backend.credentials,
        sessions=backend.sessions,
        audit=backend.audit,
        policy=policy,
    )
    directory = DirectoryAdmin(accounts)
    root = directory.create_first_admin(
        username="root", display_name="Root", password=ADMIN_PASSWORD
    )
    directory.create_institution(root, code="CH01", name="县医院", level=Level.COUNTY, parent=None)
    for username, role in (("ex-chen", Role.EXPERT), ("dr-wang", Role.DOCTOR)):
        directory.create_person(
            root,
            NewPerson(
                username=username,
                display_name=username,
                password=PASSWORD,
                roles=frozenset({role}),
                institution="CH01",
            ),
        )
    wiring = account_api(accounts, directory)
    tokens = RoomTokens(ring=SECRET, audit=backend.audit)
    app = create_app(
        route_handlers=[*wiring.route_handlers, RoomTokenController],
        dependencies={
            **wiring.dependencies,
            "room_tokens": Provide(lambda: tokens, use_cache=True, sync_to_thread=False),
        },
        middleware=wiring.middleware,
    )
    edge = Edge(app, EdgeConfig(port=0), ws_max_size_bytes=1 << 20)
    await edge.start()
    try:
        yield Stack(edge.url, backend, accounts, directory)
    finally:
        await edge.close()


async def test_expert_gets_a_moderating_token_with_institution(stack: Stack) -> None:
    """An expert's token moderates, names the person and carries their institution."""
    async with httpx.AsyncClient(base_url=stack.url) as client:
        await login(client, "ex-chen", PASSWORD)
        answer = await client.post("/api/v1/rooms/consult-42/token", headers=csrf(client))
        assert answer.status_code == 200, answer.text
        body = answer.json()
    claims = verify_token(SECRET, body["token"])
    assert (claims.identity, claims.room, claims.role) == ("ex-chen", "consult-42", "expert")
    assert claims.moderator
    assert claims.institution == "CH01"
    assert claims.person_roles == {"expert"}
    assert "room.token_minted" in stack.audited()


async def test_doctor_waits_as_applicant(stack: Stack) -> None:
    """A doctor's token is an applicant's, without moderation."""
    async with httpx.AsyncClient(base_url=stack.url) as client:
        await login(client, "dr-wang", PASSWORD)
        body = (await client.post("/api/v1/rooms/consult-42/token", headers=csrf(client))).json()
    assert body["role"] == "applicant"
    assert body["moderator"] is False


async def test_refusals(stack: Stack) -> None:
    """No session is 401, no CSRF header 403, an admin alone 403, a bad room id 400."""
    async with httpx.AsyncClient(base_url=stack.url) as client:
        assert error_of(await client.post("/api/v1/rooms/r1/token"))[0] == 401
        await login(client, "root", ADMIN_PASSWORD)
        assert error_of(await client.post("/api/v1/rooms/r1/token")) == (403, "csrf_failed")
        refused = await client.post("/api/v1/rooms/r1/token", headers=csrf(client))
        assert error_of(refused) == (403, "no_clinical_role")
        await login(client, "ex-chen", PASSWORD)
        bad = await client.post("/api/v1/rooms/-x'%3B--/token", headers=csrf(client))
        assert error_of(bad) == (400, "bad_room")
