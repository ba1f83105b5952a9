"""Every state-changing endpoint of the served OpenAPI document refuses bad input cleanly.

The server is the one ``teleconsult serve`` assembles (``teleconsult.app.assemble``) on a
temporary data dir, over uvicorn on 127.0.0.1. The test walks ``/api/v1/openapi.json``
and, signed in as the deployment's admin (so that bodies get past authorization to the
decoder and the handlers), sends each POST/PUT/PATCH/DELETE what it must refuse: bodies
of the wrong schema, nested 10,000 levels, invalid UTF-8 (overlong forms, encoded
surrogates), escaped lone surrogates and null bytes, numbers out of range, huge strings,
and path and query parameters made of the same (of the GET endpoints too: a listing's
``offset`` past 64 bits was a 500). Every wrong body must be answered a 4xx with the
error body's stable ``code`` and a ``reason``; no answer may be a 5xx or hold a
traceback, nothing may be logged at ERROR, and afterwards the server still answers
``/healthz`` and a legitimate write.

Hypothesis drives the requests from a worker thread with a blocking client, while the
server runs on the test's event loop: the two meet only over the loopback socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teleconsult.app import Assembly
from tests.teleconsult.test_platform_server import ADMIN_PASSWORD, assembled, server_config

pytestmark = pytest.mark.slow

STATE_CHANGING = ("post", "put", "patch", "delete")
# Logging out ends the very session the test signs its requests with (and takes no
# body nor parameter to fuzz).
SKIPPED = {("post", "/api/v1/auth/logout")}
CODE = re.compile(r"^[a-z][a-z0-9_]*$")
DEPTH = 10_000
NULL = {"type": "null"}

# Values no field of any schema accepts.
DEEP_ARRAY = "[" * DEPTH + "]" * DEPTH
DEEP_OBJECT = '{"a":' * DEPTH + "1" + "}" * DEPTH
OUT_OF_RANGE = [2**64, -(2**70), 10**400]
NASTY_TEXT = [
    "\x00",
    "a\x00b",
    "\ud800",  # a lone surrogate: JSON may escape it, UTF-8 cannot hold it
    "x\udfffy",
    "' OR 1=1 --",
    '"; DROP TABLE people; --',
    "%00",
    "../../etc/passwd",
    "\u202e\ufeff",
    "x" * 100_000,
]
# Raw bodies no JSON decoder accepts: overlong '/', an encoded surrogate, a raw NUL in a
# string, a truncated document, a lone continuation byte, nesting, a body over the limit.
RAW_BODIES = [
    b'{"code": "\xc0\xaf"}',
    b'{"code": "\xed\xa0\x80"}',
    b'{"code": "a\x00b"}',
    b'{"code": ',
    b"\x80",
    DEEP_ARRAY.encode(),
    DEEP_OBJECT.encode(),
    b"[" * 200_000,
    b'"' + b"x" * (2 * 1024 * 1024) + b'"',  # over the 1 MiB body limit: 413
]
# Path segments no identifier is made of (sent percent-encoded where they must be).
NASTY_SEGMENTS = [
    "%00",
    "a%00b",
    "%C0%AF",
    "%ED%A0%80",
    "%FF",
    "x" * 5_000,
    "%27%20OR%201%3D1%20--",
    "99999999999999999999999999",
    "-1",
    "%2E%2E",
    "%5C",
]


@dataclass(frozen=True)
class Operation:
    """One state-changing endpoint of the document."""

    method: str
    path: str
    schema: Mapping[str, Any] | None  # the request body's, resolved; None: no JSON body
    body_required: bool  # else ``null`` (no body) is a valid body
    example: Mapping[str, Any] | None
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]

    def url(self, segments: Mapping[str, str] | None = None) -> str:
        """The path with each parameter ``x`` (or the given raw, already encoded value)."""
        path = self.path
        for name in self.path_params:
            path = path.replace("{" + name + "}", (segments or {}).get(name, "x"))
        return path


def operations(
    document: Mapping[str, Any], methods: tuple[str, ...] = STATE_CHANGING
) -> list[Operation]:
    """The endpoints of ``document`` answering ``methods`` (by default the state-changing
    ones) with their body schema and example."""
    schemas: Mapping[str, Any] = document["components"]["schemas"]

    def resolve(node: Any) -> Any:
        while isinstance(node, dict):
            if "$ref" in node:
                node = schemas[str(node["$ref"]).rsplit("/", 1)[-1]]
            elif len(node.get("allOf", ())) == 1:
                node = node["allOf"][0]
            elif len(options := [o for o in node.get("oneOf", ()) if o != NULL]) == 1:
                node = options[0]  # "X or null": X (the null is in body_required)
            else:
                break
        return node

    found: list[Operation] = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in methods or (method, path) in SKIPPED:
                continue
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema")
            examples = (body or {}).get("examples") or [None]
            parameters = operation.get("parameters", [])
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    schema=resolve(body) if body is not None else None,
                    body_required=bool(operation.get("requestBody", {}).get("required"))
                    and NULL not in (body or {}).get("oneOf", ()),
                    example=examples[0] if isinstance(examples[0], dict) else None,
                    path_params=tuple(p["name"] for p in parameters if p["in"] == "path"),
                    query_params=tuple(p["name"] for p in parameters if p["in"] == "query"),
                )
            )
    return found


def json_types(schema: Any) -> set[str]:
    """The JSON types a property schema allows (empty: unknown, anything may fit)."""
    if not isinstance(schema, dict):
        return set()
    if "$ref" in schema:
        return {"object", "string"}  # a struct, or an enum (named schemas are either)
    kinds = schema.get("type")
    types = {kinds} if isinstance(kinds, str) else set(kinds or ())
    if "enum" in schema or "const" in schema:
        types.add("string")
    for part in (*schema.get("oneOf", ()), *schema.get("anyOf", ()), *schema.get("allOf", ())):
        inner = json_types(part)
        if not inner:
            return set()
        types |= inner
    if "integer" in types:
        types.add("number")  # 1.0 is an integer to some decoders: never offered as wrong
    return types


def wrong_for(types: set[str]) -> list[Any]:
    """JSON values of none of ``types``."""
    pool: dict[str, list[Any]] = {
        "string": ["\x00", "\ud800"],
        "integer": OUT_OF_RANGE,
        "number": [1.5],
        "boolean": [True],
        "null": [None],
        "array": [[[[]]], ["\x00"]],
        "object": [{"\x00": "\ud800"}],
    }
    return [value for kind, values in pool.items() if kind not in types for value in values]


def wrong_bodies(operation: Operation) -> list[tuple[bytes, bool]]:
    """Bodies for ``operation``, each with whether it must be refused: every body no
    schema accepts must be; a value of the right type (a lone surrogate or a null byte
    in a string, a huge string, an integer past 64 bits) may be taken, never fail."""
    bodies = [*RAW_BODIES, b"[]", b'"\\u0000"', b"1e400", str(2**64).encode()]
    if operation.body_required:
        bodies.append(b"null")
    cases = [(body, True) for body in bodies]
    schema = operation.schema or {}
    properties: Mapping[str, Any] = schema.get("properties", {})
    example = operation.example or {}
    # Every property of the wrong type at once, and each in turn in the example (one
    # wrong value each, taken in turn from its pool: the sweep stays a few seconds).
    wrong = {name: wrong_for(json_types(prop)) for name, prop in properties.items()}
    if wrong and all(wrong.values()):
        cases.append((dumps({name: values[0] for name, values in wrong.items()}), True))
        cases.append((dumps({name: values[-1] for name, values in wrong.items()}), True))
    for turn, (name, values) in enumerate(wrong.items()):
        if values:
            cases.append((dumps({**example, name: values[turn % len(values)]}), True))
    for name, prop in properties.items():
        types = json_types(prop)
        right: list[Any] = []
        if "string" in types:
            right += ["\ud800", "a\x00b", "' OR 1=1 --", "x" * 100_000]
        if "integer" in types:
            right += OUT_OF_RANGE[:2]
        cases += [(dumps({**example, name: value}), False) for value in right]
    return cases


def dumps(value: Any) -> bytes:
    """JSON as a client would send it (surrogates escaped, so that it stays ASCII)."""
    return json.dumps(value).encode()


def refused(answer: httpx.Response, what: str) -> None:
    """A 4xx with ``{"error": {"code", "reason"}}`` and nothing internal in it."""
    assert 400 <= answer.status_code < 500, (what, answer.status_code, answer.text[:300])
    assert "Traceback" not in answer.text, what
    error = answer.json()["error"]
    assert CODE.match(error["code"]), (what, error)
    assert isinstance(error["reason"], str), (what, error)
    assert error["reason"], (what, error)


def not_failed(answer: httpx.Response, what: str) -> None:
    """Never a 5xx; a 4xx in the error shape."""
    assert answer.status_code < 500, (what, answer.status_code, answer.text[:300])
    if answer.status_code >= 400:
        refused(answer, what)


@dataclass
class Served:
    """The assembled server, the admin's bearer and the document's operations."""

    assembly: Assembly
    bearer: str
    operations: list[Operation]
    reads: list[Operation]  # the GET endpoints that take parameters

    @property
    def url(self) -> str:
        return self.assembly.server.url

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            timeout=30,
            headers={"authorization": f"Bearer {self.bearer}", "content-type": "application/json"},
        )


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """The server of ``teleconsult serve`` with its first admin signed in."""
    assembly = assembled(server_config(tmp_path))
    await assembly.server.start()
    try:
        async with httpx.AsyncClient(base_url=assembly.server.url, timeout=30) as http:
            login = await http.post(
                "/api/v1/auth/login", json={"username": "root", "password": ADMIN_PASSWORD}
            )
            assert login.status_code == 200, login.text
            document = (await http.get("/api/v1/openapi.json")).json()
        found = operations(document)
        reads = [r for r in operations(document, ("get",)) if r.path_params or r.query_params]
        assert len(found) > 20  # the whole API is mounted
        yield Served(assembly, login.json()["token"], found, reads)
    finally:
        await assembly.server.close()


CLIENT_LOGGERS = ("httpx", "httpcore", "hypothesis")


@pytest.fixture
def errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """The server's records at ERROR and above, read after the test (the client's own
    loggers aside)."""
    caplog.set_level(logging.INFO)
    seen: list[logging.LogRecord] = []
    yield seen
    seen += [
        r
        for r in caplog.get_records("call")
        if r.levelno >= logging.ERROR and not r.name.startswith(CLIENT_LOGGERS)
    ]
    assert seen == [], [f"{r.name}: {r.getMessage()}" for r in seen[:5]]


async def still_serves(served: Served) -> None:
    """``/healthz`` answers and a legitimate write succeeds."""
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        health = await http.get("/healthz")
        assert health.status_code == 200, health.text
        answer = await http.post(
            "/api/v1/institutions",
            json={"code": "county-ok", "name": "某县医院", "level": "county", "parent": None},
            headers={"authorization": f"Bearer {served.bearer}"},
        )
        assert answer.status_code == 201, answer.text


def sweep(served: Served) -> int:
    """Every wrong body to every endpoint that takes one, every nasty segment in every
    path parameter; the number of requests sent."""
    sent = 0
    with served.client() as http:
        for operation in served.operations + served.reads:
            content = None if operation.method == "GET" else b"{}"
            if operation.schema is not None:
                for body, wrong in wrong_bodies(operation):
                    answer = http.request(operation.method, operation.url(), content=body)
                    what = f"{operation.method} {operation.path} {body[:80]!r}"
                    (refused if wrong else not_failed)(answer, what)
                    sent += 1
            for name in operation.path_params:
                for segment in NASTY_SEGMENTS:
                    url = operation.url({name: segment})
                    answer = http.request(operation.method, url, content=content)
                    not_failed(answer, f"{operation.method} {url[:120]}")
                    sent += 1
            for name in operation.query_params:
                for text in [*NASTY_TEXT, "-1", "1e400", str(10**23), str(-(10**23))]:
                    # 10,000 characters at most: a client refuses a URL over 64 KiB
                    query = urllib.parse.urlencode({name: text[:10_000]}, errors="surrogatepass")
                    answer = http.request(
                        operation.method, f"{operation.url()}?{query}", content=content
                    )
                    not_failed(answer, f"{operation.method} {operation.path} ?{query[:60]}")
                    sent += 1
    return sent


async def test_every_endpoint_refuses_the_known_bad_inputs(
    served: Served, errors_logged: list[logging.LogRecord]
) -> None:
    """Each wrong body (schema, nesting, encoding, range) to each state-changing endpoint
    is a clean 4xx, and a bad path or query parameter (GET endpoints' too) never fails
    the server; it still serves afterwards."""
    sent = await asyncio.to_thread(sweep, served)
    assert sent > 500
    await still_serves(served)


def json_values() -> st.SearchStrategy[Any]:
    """Arbitrary JSON, with the nasty strings and numbers among its leaves."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(NASTY_TEXT),
        st.text(max_size=20),
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )


def probe(served: Served) -> None:
    """Random wrong bodies: the example with one property replaced by any JSON value,
    or any JSON (or raw bytes) at all; a wrong type must be refused, any value must
    never fail the server."""
    with_body = [op for op in served.operations if op.schema is not None]

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        operation=st.sampled_from(with_body),
        value=json_values(),
        raw=st.one_of(st.none(), st.binary(max_size=64)),
        data=st.data(),
    )
    def case(operation: Operation, value: Any, raw: bytes | None, data: st.DataObject) -> None:
        properties = list((operation.schema or {}).get("properties", {}))
        what = f"{operation.method} {operation.path}"
        with served.client() as http:
            if raw is not None:
                answer = http.request(operation.method, operation.url(), content=raw)
                not_failed(answer, f"{what} {raw!r}")
                return
            if properties and operation.example is not None:
                name = data.draw(st.sampled_from(properties))
                body = {**operation.example, name: value}
            else:
                body = value
            answer = http.request(operation.method, operation.url(), content=dumps(body))
            not_failed(answer, f"{what} {dumps(body)[:120]!r}")

    case()


async def test_random_bodies_never_fail_the_server(
    served: Served, errors_logged: list[logging.LogRecord]
) -> None:
    """Hypothesis: any JSON in any property of each endpoint's example, or any bytes, is
    answered without a 5xx or an ERROR line; the server still serves afterwards."""
    await asyncio.to_thread(probe, served)
    await still_serves(served)
