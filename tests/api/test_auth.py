"""The accounts API under real uvicorn: login and its cookie, /me, CSRF, logout, password
change, TOTP, API tokens, and the refusals (each a 4xx with a stable code, audited when it
is a security event)."""

from __future__ import annotations

import dataclasses

import httpx
import pyotp
import pytest

from consults.accounts import AccountPolicy
from tests.api.test_auth_fixtures import (
    ADMIN_PASSWORD,
    FAST_POLICY,
    PASSWORD,
    Stack,
    backend,
    csrf,
    error_of,
    login,
    policy,
    stack,
)

__all__ = ["backend", "policy", "stack"]  # fixtures


async def make_doctor(stack: Stack) -> None:
    """A county, a township below it, and a doctor ``doc`` there (as root, by bearer)."""
    async with httpx.AsyncClient(base_url=stack.url) as client:
        token = (await login(client, "root", ADMIN_PASSWORD))["token"]
        auth = {"authorization": f"Bearer {token}"}
        for body in (
            {"code": "county", "name": "某县医院", "level": "county", "parent": None},
            {"code": "town", "name": "某镇卫生院", "level": "township", "parent": "county"},
        ):
            made = await client.post("/api/v1/institutions", json=body, headers=auth)
            assert made.status_code == 201, made.text
        made = await client.post(
            "/api/v1/people",
            json={
                "username": "doc",
                "display_name": "李医生",
                "password": PASSWORD,
                "roles": ["doctor"],
                "institution": "town",
                "specialty": None,
                "title": "主治医师",
            },
            headers=auth,
        )
        assert made.status_code == 201, made.text


async def test_login_answers_a_token_and_sets_the_session_cookie(stack: Stack) -> None:
    """200 with a bearer token; the cookie is HttpOnly, SameSite=Lax, not Secure on http;
    /me answers the person by bearer and by cookie."""
    await make_doctor(stack)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        answer = await client.post(
            "/api/v1/auth/login", json={"username": "doc", "password": PASSWORD}
        )
        assert answer.status_code == 200
        token = answer.json()["token"]
        cookies = answer.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("tc_session="))
        assert "HttpOnly" in session
        assert "SameSite=Lax" in session or "samesite=lax" in session.lower()
        assert "Secure" not in session
        readable = next(c for c in cookies if c.startswith("tc_csrf="))
        assert "HttpOnly" not in readable
        assert answer.headers["cache-control"] == "no-store"
        by_cookie = (await client.get("/api/v1/me")).json()
    async with httpx.AsyncClient(base_url=stack.url) as fresh:
        by_bearer = (
            await fresh.get("/api/v1/me", headers={"authorization": f"Bearer {token}"})
        ).json()
    assert by_cookie == by_bearer
    assert by_bearer["username"] == "doc"
    assert by_bearer["display_name"] == "李医生"
    assert by_bearer["roles"] == ["doctor"]
    assert by_bearer["institution"] == "town"
    assert "auth.login" in stack.audited()


async def test_unknown_user_and_wrong_password_answer_alike(stack: Stack) -> None:
    """Both 401 login_failed with the same reason, both audited, no cookie set."""
    await make_doctor(stack)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        unknown = await client.post(
            "/api/v1/auth/login", json={"username": "nobody", "password": PASSWORD}
        )
        wrong = await client.post(
            "/api/v1/auth/login", json={"username": "doc", "password": "not the password"}
        )
    assert error_of(unknown) == error_of(wrong) == (401, "login_failed")
    assert unknown.json() == wrong.json()
    assert "set-cookie" not in wrong.headers
    assert stack.audited().count("auth.login_failed") == 2


@pytest.mark.parametrize(
    "policy", [dataclasses.replace(FAST_POLICY, lock_after_failures=3, account_burst=50)]
)
async def test_locked_account_and_unlock(stack: Stack, policy: AccountPolicy) -> None:
    """After 3 failures: 401 account_locked even with the right password; root unlocks."""
    await make_doctor(stack)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        codes = []
        for _ in range(3):
            answer = await client.post(
                "/api/v1/auth/login", json={"username": "doc", "password": "wrong passphrase"}
            )
            codes.append(error_of(answer))
        assert codes[-1] == (401, "account_locked")
        right = await client.post(
            "/api/v1/auth/login", json={"username": "doc", "password": PASSWORD}
        )
        assert error_of(right) == (401, "account_locked")
        assert (
            right.json()
            == (
                await client.post(
                    "/api/v1/auth/login", json={"username": "doc", "password": "wrong again"}
                )
            ).json()
        )
        root = (await login(client, "root", ADMIN_PASSWORD))["token"]
        auth = {"authorization": f"Bearer {root}"}
        found = await client.get("/api/v1/people", params={"search": "doc"}, headers=auth)
        doc_id = found.json()["items"][0]["id"]
        unlocked = await client.post(f"/api/v1/people/{doc_id}/unlock", headers=auth)
        assert unlocked.status_code == 204
        assert (await login(client, "doc", PASSWORD))["me"]["username"] == "doc"
    assert "auth.account_locked" in stack.audited()
    assert "auth.account_unlocked" in stack.audited()


@pytest.mark.parametrize("policy", [dataclasses.replace(FAST_POLICY, account_burst=2)])
async def test_throttled_login_answers_429(stack: Stack, policy: AccountPolicy) -> None:
    """Past the burst of failures the account's logins answer 429 with Retry-After."""
    await make_doctor(stack)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        for _ in range(2):
            await client.post(
                "/api/v1/auth/login", json={"username": "doc", "password": "nope nope"}
            )
        answer = await client.post(
            "/api/v1/auth/login", json={"username": "doc", "password": PASSWORD}
        )
    assert error_of(answer) == (429, "throttled")
    assert int(answer.headers["retry-after"]) >= 1


async def test_cookie_requests_need_the_csrf_token(stack: Stack) -> None:
    """A state-changing request with the cookie and no (or a wrong) X-CSRF-Token is 403
    csrf_failed, audited, and changes nothing; with the token, or by bearer, it works."""
    async with httpx.AsyncClient(base_url=stack.url) as client:
        token = (await login(client, "root", ADMIN_PASSWORD))["token"]
        body = {"code": "county", "name": "某县医院", "level": "county", "parent": None}
        missing = await client.post("/api/v1/institutions", json=body)
        assert error_of(missing) == (403, "csrf_failed")
        wrong = await client.post(
            "/api/v1/institutions", json=body, headers={"x-csrf-token": "x" * 43}
        )
        assert error_of(wrong) == (403, "csrf_failed")
        assert stack.institutions() == []
        assert stack.audited().count("auth.csrf_failed") == 2
        made = await client.post("/api/v1/institutions", json=body, headers=csrf(client))
        assert made.status_code == 201
        assert (await client.get("/api/v1/institutions/county")).status_code == 200
    async with httpx.AsyncClient(base_url=stack.url) as bearer_client:
        made = await bearer_client.post(
            "/api/v1/institutions",
            json={**body, "code": "county-2"},
            headers={"authorization": f"Bearer {token}"},
        )
        assert made.status_code == 201


async def test_forged_cookie_and_revoked_bearer(stack: Stack) -> None:
    """A forged cookie is 401 session_invalid; a logged-out token 401 token_revoked;
    both audited."""
    async with httpx.AsyncClient(base_url=stack.url) as client:
        client.cookies.set("tc_session", "tcs_forgedforgedforgedforgedforgedforgedforg")
        assert error_of(await client.get("/api/v1/me")) == (401, "session_invalid")
    async with httpx.AsyncClient(base_url=stack.url) as client:
        token = (await login(client, "root", ADMIN_PASSWORD))["token"]
        out = await client.post("/api/v1/auth/logout", headers=csrf(client))
        assert out.status_code == 204
        cleared = out.headers.get_list("set-cookie")
        assert any(c.startswith('tc_session="";') or c.startswith("tc_session=;") for c in cleared)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        again = await client.get("/api/v1/me", headers={"authorization": f"Bearer {token}"})
        assert error_of(again) == (401, "token_revoked")
    assert "auth.session_invalid" in stack.audited()
    assert "auth.revoked_token_used" in stack.audited()
    assert "auth.logout" in stack.audited()


@pytest.mark.parametrize(
    "body",
    [
        {"username": "root"},
        {"username": 3, "password": "x"},
        {"username": "root", "password": ADMIN_PASSWORD, "admin": True},
        {"username": "r" * 65, "password": ADMIN_PASSWORD},
        ["root", ADMIN_PASSWORD],
    ],
)
async def test_login_body_of_the_wrong_schema(stack: Stack, body: object) -> None:
    """A body of the wrong schema is 400 invalid_body and opens no session."""
    async with httpx.AsyncClient(base_url=stack.url) as client:
        answer = await client.post("/api/v1/auth/login", json=body)
    assert error_of(answer) == (400, "invalid_body")
    assert "auth.login" not in stack.audited()


async def test_login_only_as_json(stack: Stack) -> None:
    """A form-encoded or text/plain login (what another site can post) is 415."""
    async with httpx.AsyncClient(base_url=stack.url) as client:
        answer = await client.post(
            "/api/v1/auth/login",
            content=f'{{"username": "root", "password": "{ADMIN_PASSWORD}"}}',
            headers={"content-type": "text/plain"},
        )
    assert error_of(answer) == (415, "unsupported_media_type")
    assert "auth.login" not in stack.audited()


async def test_password_change_renews_the_session(stack: Stack) -> None:
    """The old password is checked; afterwards the old token is revoked and the new works."""
    await make_doctor(stack)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        first = (await login(client, "doc", PASSWORD))["token"]
        wrong = await client.post(
            "/api/v1/auth/password",
            json={"old_password": "not it at all", "new_password": "brand new passphrase"},
            headers=csrf(client),
        )
        assert error_of(wrong) == (401, "login_failed")
        weak = await client.post(
            "/api/v1/auth/password",
            json={"old_password": PASSWORD, "new_password": "short"},
            headers=csrf(client),
        )
        assert error_of(weak) == (400, "password_rejected")
        changed = await client.post(
            "/api/v1/auth/password",
            json={"old_password": PASSWORD, "new_password": "brand new passphrase"},
            headers=csrf(client),
        )
        assert changed.status_code == 200
        assert (await client.get("/api/v1/me")).json()["username"] == "doc"
        stale = await client.get("/api/v1/me", headers={"authorization": f"Bearer {first}"})
        assert error_of(stale) == (401, "token_revoked")
        assert (await login(client, "doc", "brand new passphrase"))["token"]


async def test_totp_enrolment_then_login_takes_the_code(stack: Stack) -> None:
    """POST /me/totp answers a Base32 secret; login then needs a fresh code, once."""
    await make_doctor(stack)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        await login(client, "doc", PASSWORD)
        enrolled = await client.post("/api/v1/me/totp", headers=csrf(client))
        assert enrolled.status_code == 200
        secret = enrolled.json()["secret"]
        assert pyotp.TOTP(secret).now().isdigit()
        without = await client.post(
            "/api/v1/auth/login", json={"username": "doc", "password": PASSWORD}
        )
        assert error_of(without) == (401, "totp_required")
        code = pyotp.TOTP(secret).now()
        assert (await login(client, "doc", PASSWORD, totp=code))["me"]["username"] == "doc"
        replay = await client.post(
            "/api/v1/auth/login",
            json={"username": "doc", "password": PASSWORD, "totp": code},
            headers=csrf(client),
        )
        assert error_of(replay) == (401, "login_failed")
    assert "auth.totp_enrolled" in stack.audited()


async def test_role_requiring_totp_restricts_the_session(stack: Stack) -> None:
    """When doctors must use TOTP, a doctor without it may only enrol; then all is open."""
    await make_doctor(stack)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        root = (await login(client, "root", ADMIN_PASSWORD))["token"]
        put = await client.put(
            "/api/v1/settings/totp-roles",
            json={"roles": ["doctor"]},
            headers={"authorization": f"Bearer {root}"},
        )
        assert put.status_code == 200
    async with httpx.AsyncClient(base_url=stack.url) as client:
        answer = await login(client, "doc", PASSWORD)
        assert answer["me"]["must_enrol_totp"] is True
        blocked = await client.get("/api/v1/institutions")
        assert error_of(blocked) == (403, "totp_enrolment_required")
        assert (await client.get("/api/v1/me")).status_code == 200
        assert (await client.post("/api/v1/me/totp", headers=csrf(client))).status_code == 200
        assert (await client.get("/api/v1/institutions")).status_code == 200


async def test_api_tokens_for_integrations(stack: Stack) -> None:
    """A person mints a token, uses it as bearer, lists it, revokes it; then it is 401."""
    await make_doctor(stack)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        await login(client, "doc", PASSWORD)
        minted = await client.post(
            "/api/v1/me/tokens", json={"name": "HIS link"}, headers=csrf(client)
        )
        assert minted.status_code == 201
        secret, token_id = minted.json()["token"], minted.json()["info"]["id"]
        listed = (await client.get("/api/v1/me/tokens")).json()
        assert [t["id"] for t in listed] == [token_id]
        assert secret not in str(listed)
    async with httpx.AsyncClient(base_url=stack.url) as his:
        auth = {"authorization": f"Bearer {secret}"}
        assert (await his.get("/api/v1/me", headers=auth)).json()["username"] == "doc"
        from_token = await his.post("/api/v1/me/tokens", json={"name": "x"}, headers=auth)
        assert error_of(from_token) == (403, "forbidden")
    async with httpx.AsyncClient(base_url=stack.url) as client:
        await login(client, "doc", PASSWORD)
        gone = await client.delete(f"/api/v1/me/tokens/{token_id}", headers=csrf(client))
        assert gone.status_code == 204
    async with httpx.AsyncClient(base_url=stack.url) as his:
        refused = await his.get("/api/v1/me", headers={"authorization": f"Bearer {secret}"})
        assert error_of(refused) == (401, "token_revoked")
    assert "auth.token_created" in stack.audited()
    assert "auth.token_revoked" in stack.audited()
