"""The directory API under real uvicorn on the SQL store: institutions, people, devices,
relations; another branch's records answer 404; SQL metacharacters and wrong schemas are
refused with nothing changed; every endpoint is documented in the OpenAPI document."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from consults.accounts import DeviceCredentials
from consults.errors import SessionInvalid, TokenRevoked
from tests.api.test_auth_fixtures import (
    ADMIN_PASSWORD,
    PASSWORD,
    Stack,
    backend,
    error_of,
    login,
    policy,
    stack,
)

__all__ = ["backend", "policy", "stack"]  # fixtures

SQL_METACHARACTERS = [
    "x'; DROP TABLE people; --",
    "' OR '1'='1",
    'a"b',
    "a%_\\",
    "x; SELECT 1",
    "\x00",
]


async def bearer_of(stack: Stack, username: str, password: str) -> dict[str, str]:
    """The Authorization header of a fresh login."""
    async with httpx.AsyncClient(base_url=stack.url) as client:
        token = (await login(client, username, password))["token"]
    return {"authorization": f"Bearer {token}"}


async def post(stack: Stack, path: str, body: Any, auth: dict[str, str]) -> httpx.Response:
    """One POST by bearer."""
    async with httpx.AsyncClient(base_url=stack.url) as client:
        return await client.post(f"/api/v1{path}", json=body, headers=auth)


async def get(stack: Stack, path: str, auth: dict[str, str], **params: Any) -> httpx.Response:
    """One GET by bearer."""
    async with httpx.AsyncClient(base_url=stack.url) as client:
        return await client.get(f"/api/v1{path}", params=params, headers=auth)


def person_body(username: str, institution: str, *roles: str, **extra: Any) -> dict[str, Any]:
    """The body of POST /people."""
    return {
        "username": username,
        "display_name": extra.pop("display_name", "张三"),
        "password": PASSWORD,
        "roles": list(roles),
        "institution": institution,
        "specialty": extra.pop("specialty", None),
        "title": extra.pop("title", None),
        **extra,
    }


async def two_counties(stack: Stack) -> dict[str, str]:
    """Counties A (with township A1) and B (with township B1), an admin of each; root's
    bearer header."""
    root = await bearer_of(stack, "root", ADMIN_PASSWORD)
    for code, level, parent in [
        ("county-a", "county", None),
        ("town-a1", "township", "county-a"),
        ("county-b", "county", None),
        ("town-b1", "township", "county-b"),
    ]:
        made = await post(
            stack,
            "/institutions",
            {"code": code, "name": f"{code} 医院", "level": level, "parent": parent},
            root,
        )
        assert made.status_code == 201, made.text
    for who, where in [("admin.a", "county-a"), ("admin.b", "county-b")]:
        made = await post(stack, "/people", person_body(who, where, "admin"), root)
        assert made.status_code == 201, made.text
        assert made.json()["admin_scope"] == "institution"
    return root


async def test_admin_creates_the_tree_and_people(stack: Stack) -> None:
    """Root creates a county hospital, a township clinic, a doctor and an expert; each
    logs in and /me names their institution; listing is paginated and searchable."""
    root = await bearer_of(stack, "root", ADMIN_PASSWORD)
    assert (
        await post(
            stack,
            "/institutions",
            {"code": "county-1", "name": "某县人民医院", "level": "county", "parent": None},
            root,
        )
    ).status_code == 201
    town = await post(
        stack,
        "/institutions",
        {"code": "town-1", "name": "某镇卫生院", "level": "township", "parent": "county-1"},
        root,
    )
    assert town.json() == {
        "code": "town-1",
        "name": "某镇卫生院",
        "level": "township",
        "parent": "county-1",
    }
    dept = await post(
        stack, "/institutions/county-1/departments", {"code": "cardio", "name": "心内科"}, root
    )
    assert dept.status_code == 201
    doctor = await post(
        stack, "/people", person_body("li.doctor", "town-1", "doctor", display_name="李医生"), root
    )
    assert doctor.status_code == 201, doctor.text
    expert = await post(
        stack,
        "/people",
        person_body(
            "wang.expert",
            "county-1",
            "expert",
            display_name="王主任",
            specialty="心内科",
            title="主任医师",
            department="cardio",
        ),
        root,
    )
    assert expert.status_code == 201, expert.text
    assert expert.json()["title"] == "主任医师"
    for username, institution in [("li.doctor", "town-1"), ("wang.expert", "county-1")]:
        me = await get(stack, "/me", await bearer_of(stack, username, PASSWORD))
        assert me.json()["institution"] == institution
    page = (await get(stack, "/people", root, limit=1, offset=1)).json()
    assert page["total"] == 3
    assert len(page["items"]) == 1
    found = (await get(stack, "/people", root, search="王")).json()
    assert [p["username"] for p in found["items"]] == ["wang.expert"]
    experts = (await get(stack, "/people", root, role="expert")).json()
    assert [p["username"] for p in experts["items"]] == ["wang.expert"]
    towns = (await get(stack, "/institutions", root, level="township")).json()
    assert [i["code"] for i in towns["items"]] == ["town-1"]
    depts = (await get(stack, "/institutions/county-1/departments", root)).json()
    assert depts == [{"institution": "county-1", "code": "cardio", "name": "心内科"}]
    actions = stack.audited()
    assert actions.count("directory.institution_created") == 2
    assert actions.count("directory.person_created") == 2


async def test_another_branch_is_not_found(stack: Stack) -> None:
    """County A's admin gets 404 for county B's institutions, people and devices, and
    cannot create below them; their own branch works."""
    root = await two_counties(stack)
    made = await post(stack, "/people", person_body("doc.b", "town-b1", "doctor"), root)
    doc_b = made.json()["id"]
    cart = await post(
        stack, "/devices", {"id": "cart-b", "name": "B 心电图机", "institution": "town-b1"}, root
    )
    assert cart.status_code == 201
    admin_a = await bearer_of(stack, "admin.a", PASSWORD)
    assert error_of(await get(stack, "/institutions/town-b1", admin_a)) == (404, "not_found")
    assert error_of(await get(stack, f"/people/{doc_b}", admin_a)) == (404, "not_found")
    assert error_of(await get(stack, "/devices/cart-b", admin_a)) == (404, "not_found")
    assert error_of(await post(stack, f"/people/{doc_b}/unlock", None, admin_a)) == (
        404,
        "not_found",
    )
    assert error_of(await post(stack, "/devices/cart-b/revoke", None, admin_a)) == (
        404,
        "not_found",
    )
    below_b = {"code": "village-x", "name": "X村", "level": "village", "parent": "town-b1"}
    assert error_of(await post(stack, "/institutions", below_b, admin_a)) == (404, "not_found")
    in_b = person_body("intruder", "town-b1", "doctor")
    assert error_of(await post(stack, "/people", in_b, admin_a)) == (404, "not_found")
    root_inst = {"code": "city-x", "name": "X市", "level": "city", "parent": None}
    assert error_of(await post(stack, "/institutions", root_inst, admin_a)) == (403, "forbidden")
    listed = (await get(stack, "/institutions", admin_a)).json()
    assert [i["code"] for i in listed["items"]] == ["county-a", "town-a1"]
    own = await post(stack, "/people", person_body("doc.a", "town-a1", "doctor"), admin_a)
    assert own.status_code == 201
    doctor_a = await bearer_of(stack, "doc.a", PASSWORD)
    assert error_of(await post(stack, "/institutions", below_b, doctor_a)) == (403, "forbidden")
    assert stack.stores.directory.get_device("cart-b") is not None
    assert not stack.stores.directory.get_device("cart-b").revoked  # type: ignore[union-attr]


async def test_devices_registered_verified_and_revoked(stack: Stack) -> None:
    """A registered cart's credential (shown once) verifies through DeviceCredentials
    until the cart is revoked; a duplicate id is 409."""
    root = await bearer_of(stack, "root", ADMIN_PASSWORD)
    await post(
        stack, "/institutions", {"code": "town-1", "name": "某镇卫生院", "level": "township"}, root
    )
    made = await post(
        stack, "/devices", {"id": "cart-1", "name": "心电图机 1", "institution": "town-1"}, root
    )
    assert made.status_code == 201
    credential = made.json()["credential"]
    verifier = DeviceCredentials(stack.stores.directory, stack.stores.audit)
    assert verifier.verify_device(credential).id == "cart-1"
    again = await post(
        stack, "/devices", {"id": "cart-1", "name": "again", "institution": "town-1"}, root
    )
    assert error_of(again) == (409, "conflict")
    listed = (await get(stack, "/devices", root)).json()
    assert [d["id"] for d in listed["items"]] == ["cart-1"]
    assert "credential" not in listed["items"][0]
    revoked = await post(stack, "/devices/cart-1/revoke", None, root)
    assert revoked.json()["revoked"] is True
    with pytest.raises(TokenRevoked):
        verifier.verify_device(credential)
    with pytest.raises(SessionInvalid):
        verifier.verify_device("tcd_" + "A" * 43)
    assert "device.credential_refused" in stack.audited()
    assert "directory.device_revoked" in stack.audited()


async def test_service_relations_added_and_cleared(stack: Stack) -> None:
    """County B's admin lets county A serve township B1 for ECG; the relation lists, and
    clearing it removes it; county A's admin cannot add one for B's clinic."""
    root = await two_counties(stack)
    admin_a = await bearer_of(stack, "admin.a", PASSWORD)
    relation = {"provider": "county-a", "client": "town-b1", "kind": "ecg"}
    assert error_of(await post(stack, "/relations", relation, admin_a)) == (404, "not_found")
    admin_b = await bearer_of(stack, "admin.b", PASSWORD)
    added = await post(stack, "/relations", relation, admin_b)
    assert added.json() == {**relation, "override": "added"}
    assert (await get(stack, "/relations", root)).json() == [{**relation, "override": "added"}]
    async with httpx.AsyncClient(base_url=stack.url) as client:
        cleared = await client.delete("/api/v1/relations/county-a/town-b1/ecg", headers=admin_b)
    assert cleared.status_code == 204
    assert (await get(stack, "/relations", root)).json() == []


@pytest.mark.parametrize("bad", SQL_METACHARACTERS)
async def test_sql_metacharacters_in_every_field_are_refused(stack: Stack, bad: str) -> None:
    """Each field of institutions, people and devices, and the search parameter, with
    SQL metacharacters is a 4xx with a stable code, and nothing is stored."""
    root = await bearer_of(stack, "root", ADMIN_PASSWORD)
    await post(
        stack, "/institutions", {"code": "town-1", "name": "某镇卫生院", "level": "township"}, root
    )
    good_inst = {"code": "c2", "name": "Clinic", "level": "village", "parent": "town-1"}
    good_person = person_body("p.one", "town-1", "doctor")
    good_device = {"id": "cart-9", "name": "Cart", "institution": "town-1"}
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/institutions", good_inst, field) for field in ("code", "name", "parent")
    ]
    cases += [
        ("/people", good_person, f)
        for f in ("username", "display_name", "institution", "specialty", "title", "department")
    ]
    cases += [("/devices", good_device, f) for f in ("id", "name", "institution")]
    for path, good, field in cases:
        answer = await post(stack, path, {**good, field: bad}, root)
        status, code = error_of(answer)
        assert 400 <= status < 500, (path, field, answer.text)
        assert code in {"invalid_input", "invalid_body", "not_found"}, (path, field, code)
    assert [i.code for i in stack.institutions()] == ["town-1"]
    people = (await get(stack, "/people", root)).json()
    assert [p["username"] for p in people["items"]] == ["root"]
    assert (await get(stack, "/devices", root)).json()["total"] == 0
    searched = await get(stack, "/people", root, search=bad)
    assert error_of(searched) == (400, "invalid_input")
    assert error_of(await get(stack, f"/institutions/{quote(bad, safe='')}", root))[0] in (400, 404)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/institutions", {"code": "x", "name": "X", "level": "hamlet"}),
        ("/institutions", {"code": 7, "name": "X", "level": "county"}),
        ("/institutions", {"code": "x", "name": "X", "level": "county", "extra": 1}),
        ("/people", {"username": "a.b", "roles": ["doctor"]}),
        ("/people", person_body("a.b", "town-1", "surgeon")),
        ("/devices", {"id": "c", "name": "C"}),
        ("/relations", {"provider": "a", "client": "b", "kind": "xray"}),
    ],
)
async def test_wrong_schema_is_400(stack: Stack, path: str, body: dict[str, Any]) -> None:
    """A body of the wrong schema is 400 invalid_body, naming the field, nothing stored."""
    root = await bearer_of(stack, "root", ADMIN_PASSWORD)
    answer = await post(stack, path, body, root)
    assert error_of(answer) == (400, "invalid_body")
    assert stack.institutions() == []


async def test_query_parameters_are_bounded(stack: Stack) -> None:
    """limit beyond 500, a negative offset, an unknown level: 400, not a huge page."""
    root = await bearer_of(stack, "root", ADMIN_PASSWORD)
    for params in ({"limit": 501}, {"offset": -1}, {"level": "hamlet"}, {"search": "x" * 101}):
        assert error_of(await get(stack, "/institutions", root, **params))[0] == 400


async def test_openapi_documents_every_endpoint(stack: Stack) -> None:
    """Every accounts and directory operation lists a success answer with a schema, its
    4xx errors with the error schema and an example."""
    async with httpx.AsyncClient(base_url=stack.url) as client:
        document = (await client.get("/api/v1/openapi.json")).json()
    operations = [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert {
        "/api/v1/auth/login",
        "/api/v1/me",
        "/api/v1/institutions",
        "/api/v1/people",
        "/api/v1/devices",
        "/api/v1/me/totp",
    } <= {p for p, _, _ in operations}
    for path, method, op in operations:
        responses = op["responses"]
        errors = [s for s in responses if s.startswith("4")]
        assert errors, (path, method)
        for status in errors:
            content = responses[status]["content"]["application/json"]
            assert content.get("examples"), (path, method, status)
        ok = [s for s in responses if s.startswith("2")]
        assert ok, (path, method)
        if "requestBody" in op:
            body = op["requestBody"]["content"]["application/json"]
            assert body.get("examples") or body.get("schema"), (path, method)


async def patch(stack: Stack, path: str, body: Any, auth: dict[str, str]) -> httpx.Response:
    """One PATCH by bearer."""
    async with httpx.AsyncClient(base_url=stack.url) as client:
        return await client.patch(f"/api/v1{path}", json=body, headers=auth)


async def test_admin_edits_people_and_institutions(stack: Stack) -> None:
    """An admin changes a person's fields (only those given), renames an institution and
    resets a password (old sessions end); another branch's admin gets 404 for each."""
    root = await two_counties(stack)
    made = await post(
        stack, "/people", person_body("doc.a", "town-a1", "doctor", specialty="全科"), root
    )
    doc = made.json()
    admin_a = await bearer_of(stack, "admin.a", PASSWORD)
    changed = await patch(
        stack,
        f"/people/{doc['id']}",
        {"roles": ["doctor", "expert"], "title": "主治医师", "specialty": None},
        admin_a,
    )
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert after["roles"] == ["doctor", "expert"]
    assert after["title"] == "主治医师"
    assert after["specialty"] is None
    assert after["display_name"] == doc["display_name"]
    renamed = await patch(stack, "/institutions/town-a1", {"name": "某镇中心卫生院"}, admin_a)
    assert renamed.json()["name"] == "某镇中心卫生院"
    assert error_of(await patch(stack, f"/people/{doc['id']}", {"username": "x"}, admin_a)) == (
        400,
        "invalid_body",
    )
    admin_b = await bearer_of(stack, "admin.b", PASSWORD)
    assert error_of(await patch(stack, f"/people/{doc['id']}", {"title": "x"}, admin_b))[0] == 404
    assert error_of(await patch(stack, "/institutions/town-a1", {"name": "X"}, admin_b))[0] == 404
    moved = await patch(stack, f"/people/{doc['id']}", {"institution": "town-b1"}, admin_a)
    assert error_of(moved) == (404, "not_found")
    doc_session = await bearer_of(stack, "doc.a", PASSWORD)
    reset = await post(
        stack, f"/people/{doc['id']}/password", {"password": "fresh passphrase 2"}, admin_a
    )
    assert reset.status_code == 204
    assert error_of(await get(stack, "/me", doc_session)) == (401, "token_revoked")
    assert (await bearer_of(stack, "doc.a", "fresh passphrase 2"))["authorization"]
    actions = stack.audited()
    assert "directory.person_updated" in actions
    assert "directory.institution_updated" in actions
    assert "auth.password_reset" in actions
