"""The edge application (create_app) served by real uvicorn on loopback: errors in one
shape, security headers, body limit, pages and static refusals, health and OpenAPI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import msgspec
import pytest
from litestar import get, post
from litestar.params import FromPath, JSONBody

from api.app import ApiConfig, create_app, openapi_gaps
from api.edge import Edge, EdgeConfig
from api.errors import NotFound, error_responses
from api.security import CSP


class Greeting(msgspec.Struct):
    """A request body for the test endpoint."""

    name: Annotated[str, msgspec.Meta(examples=["li"])]
    times: int = 1


class Greeted(msgspec.Struct):
    """Its answer."""

    text: str


@post("/greet", responses=error_responses((404, "no_such_name", "nobody of that name")))
async def greet(data: JSONBody[Greeting]) -> Greeted:
    """Greet, refuse one name with a 404, fail on another."""
    if data.name == "nobody":
        raise NotFound("no_such_name", "nobody of that name")
    if data.name == "crash":
        raise RuntimeError("/var/secret/path failed at SELECT * FROM people")
    return Greeted(text=" ".join([f"hello {data.name}"] * data.times))


@get("/items/{item_id:int}")
async def item(item_id: FromPath[int]) -> Greeted:
    """A GET with a path parameter."""
    return Greeted(text=str(item_id))


class Flaky:
    """A health check whose failure the test switches."""

    def __init__(self) -> None:
        self.failing = False

    def __call__(self) -> None:
        if self.failing:
            raise OSError("disk full at /var/lib/teleconsult")


@pytest.fixture
def flaky() -> Flaky:
    """The switchable health check."""
    return Flaky()


@pytest.fixture
async def base(tmp_path: Path, flaky: Flaky) -> AsyncIterator[str]:
    """The app on a free loopback port; its base URL."""
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>t</title>")
    (web / "app.js").write_text("export const x = 1;\n")
    (tmp_path / "outside.txt").write_text("secret")
    app = create_app(
        route_handlers=[greet, item],
        config=ApiConfig(max_body_bytes=4096),
        web_dir=web,
        health=lambda: {"rooms": 0},
        health_checks={"store": flaky},
        metrics=lambda: (b"teleconsult_rooms 0\n", "text/plain; version=0.0.4"),
    )
    edge = Edge(app, EdgeConfig(port=0), ws_max_size_bytes=1 << 20)
    await edge.start()
    yield edge.url
    await edge.close()


async def fetch(base: str, method: str, path: str, **kw: Any) -> httpx.Response:
    """One request on a fresh client."""
    async with httpx.AsyncClient(base_url=base) as client:
        return await client.request(method, path, **kw)


def error_of(response: httpx.Response) -> tuple[int, str]:
    """The status and the stable code of an error answer (checks its shape)."""
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "reason"}
    assert body["error"]["reason"]
    return response.status_code, body["error"]["code"]


async def test_api_errors_have_one_shape_and_no_internals(base: str) -> None:
    """Wrong schema 400, bad JSON 400, raised 404, unknown path 404, crash 500: one shape."""
    good = await fetch(base, "POST", "/api/v1/greet", json={"name": "li", "times": 2})
    assert good.json() == {"text": "hello li hello li"}
    wrong = await fetch(base, "POST", "/api/v1/greet", json={"name": 3})
    assert error_of(wrong) == (400, "invalid_body")
    assert "name" in wrong.json()["error"]["reason"]
    broken = await fetch(
        base,
        "POST",
        "/api/v1/greet",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert error_of(broken) == (400, "invalid_json")
    assert error_of(await fetch(base, "POST", "/api/v1/greet", json={"name": "nobody"})) == (
        404,
        "no_such_name",
    )
    assert error_of(await fetch(base, "GET", "/api/v1/nowhere")) == (404, "not_found")
    assert error_of(await fetch(base, "GET", "/api/v1/items/abc")) == (404, "not_found")
    assert error_of(await fetch(base, "DELETE", "/api/v1/greet")) == (405, "method_not_allowed")
    crash = await fetch(base, "POST", "/api/v1/greet", json={"name": "crash"})
    assert error_of(crash) == (500, "internal")
    assert "secret" not in crash.text
    assert "SELECT" not in crash.text


async def test_body_over_the_limit_is_413(base: str) -> None:
    """A body over max_body_bytes answers 413 too_large, with or without Content-Length."""
    big = {"name": "x" * 10_000}
    assert error_of(await fetch(base, "POST", "/api/v1/greet", json=big)) == (413, "too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    streamed = await fetch(
        base,
        "POST",
        "/api/v1/greet",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert error_of(streamed) == (413, "too_large")


async def test_security_headers_on_every_response(base: str) -> None:
    """Pages, API answers, errors and 404s all carry CSP, nosniff and no-referrer."""
    for method, path in [
        ("GET", "/join"),
        ("GET", "/static/app.js"),
        ("GET", "/nowhere"),
        ("GET", "/api/v1/nowhere"),
        ("GET", "/healthz"),
        ("GET", "/api/v1/items/7"),
    ]:
        headers = (await fetch(base, method, path)).headers
        assert headers["content-security-policy"] == CSP, path
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


async def test_pages_and_static_refusals(base: str) -> None:
    """Pages serve; NUL, traversal (raw and encoded), hidden and unknown paths are 4xx text."""
    page = await fetch(base, "GET", "/join?token=abc&autojoin=1")
    assert page.status_code == 200
    assert page.text.startswith("<!doctype html>")
    script = await fetch(base, "GET", "/static/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    for path in [
        "/static/app.js%00.html",
        "/static/..%2foutside.txt",
        "/static/%2e%2e/outside.txt",
        "/static/.hidden",
        "/static/",
        "/static/nothing.js",
        "/nowhere",
    ]:
        answer = await fetch(base, "GET", path)
        assert 400 <= answer.status_code < 500, path
        assert "secret" not in answer.text
        assert answer.headers["content-type"].startswith("text/plain"), path
    # A raw '..' that no client normalised away.
    reader, writer = await asyncio.open_connection(*base.removeprefix("http://").split(":"))
    writer.write(b"GET /static/../outside.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    assert raw.startswith(b"HTTP/1.1 404")
    assert b"secret" not in raw


async def test_healthz_degraded_while_a_check_fails(base: str, flaky: Flaky) -> None:
    """/healthz is ok (200), degraded (503) while the store check fails, ok again after."""
    ok = await fetch(base, "GET", "/healthz")
    assert (ok.status_code, ok.json()["status"], ok.json()["rooms"]) == (200, "ok", 0)
    flaky.failing = True
    degraded = await fetch(base, "GET", "/healthz")
    assert degraded.status_code == 503
    assert degraded.json()["status"] == "degraded"
    assert degraded.json()["checks"] == {"store": "failed"}
    assert "disk" not in degraded.text
    flaky.failing = False
    assert (await fetch(base, "GET", "/healthz")).status_code == 200


async def test_openapi_documents_schemas_errors_and_examples(base: str) -> None:
    """GET /api/v1/openapi.json: 3.1, the endpoint's request/response schemas and errors."""
    document = (await fetch(base, "GET", "/api/v1/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    operation = document["paths"]["/api/v1/greet"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Greeting"
    )
    responses = operation["responses"]
    assert {"201", "400", "404", "500"} <= set(responses)
    example = next(iter(responses["404"]["content"]["application/json"]["examples"].values()))
    assert example["value"]["error"]["code"] == "no_such_name"
    assert "ErrorBody" in document["components"]["schemas"]
    assert "/healthz" not in document["paths"]
    assert "/join" not in document["paths"]


async def test_metrics_text(base: str) -> None:
    """/metrics answers the registry's text."""
    metrics = await fetch(base, "GET", "/metrics")
    assert metrics.status_code == 200
    assert "teleconsult_rooms 0" in metrics.text


def test_openapi_gaps_names_what_an_endpoint_leaves_out() -> None:
    """openapi_gaps: the documented endpoint passes; one without errors or example is named."""

    @get("/bare")
    async def bare() -> Greeted:
        """No errors documented, no example."""
        return Greeted(text="")

    complete = create_app(route_handlers=[greet]).openapi_schema.to_schema()
    assert openapi_gaps(complete) == []
    lacking = create_app(route_handlers=[greet, bare]).openapi_schema.to_schema()
    assert openapi_gaps(lacking) == [
        "GET /api/v1/bare: no 4xx error documented (use error_responses)",
        "GET /api/v1/bare: no example (msgspec.Meta(examples=[...]) on a field)",
    ]
