"""Outgoing webhooks on the real store (SQLite and PostgreSQL) to a real HTTP receiver on
127.0.0.1: an institution admin registers an endpoint, a consult's notices are queued
for it by kind, the sender signs each attempt (the receiver checks the HMAC as a
hospital would), a 500 is retried after the backoff and logged, a dead address is
logged too, revoking gives up what is pending; and the same over the REST API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from api.app import create_app
from api.auth import account_api
from api.consults import consult_api
from api.edge import Edge, EdgeConfig
from api.session import CSRF_COOKIE
from api.webhooks import WebhookSender
from consults.directory import Person, Role
from consults.errors import Forbidden, InvalidInput, NotFound
from consults.lifecycle import ConsultEvent
from consults.service import WebhookOutbox, Webhooks
from consults.webhooks import RetryPolicy, verify_signature
from store.consult_webhooks import SqlWebhookRepository
from store.secrets import SecretBox
from tests.consults.test_service_world import FIELD_KEY, PASSWORD, World, make_world, world
from tests.pg import Database, _free_port, database

__all__ = ["database", "world"]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A hospital's endpoint: answers the scripted statuses in turn, then 200."""

    url: str
    statuses: list[int]
    got: list[Received] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP server on 127.0.0.1 in a thread, stopped by the test."""
    state = Receiver(url="", statuses=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            state.got.append(
                Received({k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
            )
            self.send_response(state.statuses.pop(0) if state.statuses else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def county_admin(world: World) -> Person:
    return world.add_person("county.admin", "county-1", Role.ADMIN)


def test_notices_are_delivered_signed_retried_and_logged(world: World, receiver: Receiver) -> None:
    """submit and assign reach the endpoint that asked for them (accept does not); the
    first attempt meets a 500 and is retried after the backoff, the second is delivered
    with a signature the receiver verifies; a dead address is logged; revoking gives up."""
    repo = SqlWebhookRepository(world.stores.engine, secrets=SecretBox(FIELD_KEY))
    webhooks = Webhooks(repo, random_bytes=lambda n: bytes(range(n)), clock=world.clock)
    admin = county_admin(world)
    with pytest.raises(Forbidden):
        webhooks.register(world["zhao.coord"], receiver.url, frozenset())
    with pytest.raises(InvalidInput):
        webhooks.register(admin, "ftp://his.example/x", frozenset())
    with pytest.raises(InvalidInput):
        webhooks.register(admin, "http://user:pw@his.example/x", frozenset())
    with pytest.raises(InvalidInput):
        webhooks.register(admin, receiver.url, frozenset({"consult.sneeze"}))
    endpoint, secret = webhooks.register(
        admin, receiver.url, frozenset({"consult.submit", "consult.assign"})
    )
    outbox = WebhookOutbox(repo)
    made = world.service.create(world["li.doctor"], world.request())
    consult_id = made.record.consult.id
    world.service.step(
        world["zhao.coord"], consult_id, ConsultEvent.ASSIGN, experts=["wang.expert"]
    )
    world.service.step(world["wang.expert"], consult_id, ConsultEvent.ACCEPT)
    for notice in world.notices.sent:
        outbox.notify(notice)
    receiver.statuses = [500]
    sender = WebhookSender(repo, policy=RetryPolicy(first_delay_s=10), clock=world.clock)
    assert sender.deliver_due() == 1  # one met the 500, the other was delivered
    log = webhooks.deliveries(admin, endpoint.id)
    assert {d.event for d in log} == {"consult.submit", "consult.assign"}
    [first] = [d for d in log if d.last_status == 500]
    assert first.attempts == 1
    assert first.last_error == "HTTP 500"
    assert first.next_attempt_at == world.clock.now + timedelta(seconds=10)
    assert sender.deliver_due() == 0  # not due yet
    world.clock.advance(11)
    assert sender.deliver_due() == 1
    assert all(d.delivered_at is not None for d in webhooks.deliveries(admin, endpoint.id))
    assert len(receiver.got) == 3
    for got in receiver.got:
        timestamp = int(got.headers["x-teleconsult-timestamp"])
        assert verify_signature(
            secret.encode(),
            timestamp,
            got.body,
            got.headers["x-teleconsult-signature"],
            now_s=world.clock.epoch(),
        )
        body = json.loads(got.body)
        assert body["consult"] == consult_id
        assert body["delivery"] == got.headers["x-teleconsult-delivery"]
        assert "张三" not in got.body.decode()
    # A dead address: the attempt is logged with our reason, retried later.
    dead, _ = webhooks.register(admin, f"http://127.0.0.1:{_free_port()}/x", frozenset())
    world.service.step(
        world["wang.expert"],
        consult_id,
        ConsultEvent.SCHEDULE,
        start=world.clock.now + timedelta(hours=1),
    )
    outbox.notify(world.notices.sent[-1])
    assert sender.deliver_due() == 0
    [failed] = webhooks.deliveries(admin, dead.id)
    assert failed.last_status is None
    assert failed.last_error is not None
    assert failed.last_error.startswith("not delivered")
    assert failed.next_attempt_at is not None
    webhooks.revoke(admin, dead.id)
    [given_up] = webhooks.deliveries(admin, dead.id)
    assert given_up.next_attempt_at is None
    with pytest.raises(NotFound):
        webhooks.revoke(admin, dead.id)
    with pytest.raises(Forbidden):  # a deployment admin has no institution's endpoints
        webhooks.deliveries(world["root"], endpoint.id)
    other = world.add_person("other.admin", "county-2", Role.ADMIN)
    with pytest.raises(NotFound):  # another institution's endpoint does not exist for them
        webhooks.deliveries(other, endpoint.id)
    rows = [r.action for r in world.audit() if r.action.startswith("webhook.")]
    assert rows == ["webhook.created", "webhook.created", "webhook.revoked"]


async def test_webhook_endpoints_over_http(database: Database, receiver: Receiver) -> None:
    """The admin registers (201, the secret once), lists, reads the log and revokes (204);
    a doctor is 403."""
    made = make_world(database)
    repo = SqlWebhookRepository(made.stores.engine, secrets=SecretBox(FIELD_KEY))
    webhooks = Webhooks(repo, random_bytes=lambda n: b"\x01" * n, clock=made.clock)
    county_admin(made)
    accounts_wiring = account_api(made.accounts, made.directory)
    consults_wiring = consult_api(made.service, webhooks)
    app = create_app(
        route_handlers=[*accounts_wiring.route_handlers, *consults_wiring.route_handlers],
        dependencies={**accounts_wiring.dependencies, **consults_wiring.dependencies},
        middleware=[*accounts_wiring.middleware],
    )
    edge = Edge(app, EdgeConfig(port=0), ws_max_size_bytes=1 << 20)
    await edge.start()
    try:
        async with httpx.AsyncClient(base_url=edge.url) as client:
            login = {"username": "county.admin", "password": PASSWORD}
            assert (await client.post("/api/v1/auth/login", json=login)).status_code == 200
            client.headers["x-csrf-token"] = client.cookies[CSRF_COOKIE]
            created = await client.post(
                "/api/v1/webhooks", json={"url": receiver.url, "events": ["consult.submit"]}
            )
            assert created.status_code == 201, created.text
            endpoint_id = created.json()["endpoint"]["id"]
            assert created.json()["secret"] == "01" * 32
            listed = await client.get("/api/v1/webhooks")
            assert [e["id"] for e in listed.json()] == [endpoint_id]
            assert "secret" not in listed.text
            log = await client.get(f"/api/v1/webhooks/{endpoint_id}/deliveries")
            assert log.json() == []
            assert (await client.delete(f"/api/v1/webhooks/{endpoint_id}")).status_code == 204
        async with httpx.AsyncClient(base_url=edge.url) as doctor:
            login = {"username": "li.doctor", "password": PASSWORD}
            await doctor.post("/api/v1/auth/login", json=login)
            doctor.headers["x-csrf-token"] = doctor.cookies[CSRF_COOKIE]
            refused = await doctor.post("/api/v1/webhooks", json={"url": receiver.url})
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "forbidden"
    finally:
        await edge.close()
        made.stores.close()
