"""Authentication: password log-in with JWT and cookie, personal access tokens, and their refusals."""

from __future__ import annotations

import datetime
from typing import Any

import httpx
import pytest

from coordinator.auth import sessions
from coordinator.auth.principal import Role
from tests.support import PASSWORD, db_fetch, make_person

pytestmark = pytest.mark.asyncio


async def test_login_answers_a_bearer_jwt_and_sets_an_httponly_cookie(client: Any) -> None:
    await make_person(client, "ann@example.com")
    response = await client.post("/api/auth/token", data={"username": "ann@example.com", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["access_token"].count(".") == 2
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{sessions.COOKIE_NAME}={body['access_token']}")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie


async def test_email_is_matched_without_regard_to_case(client: Any) -> None:
    await make_person(client, "ann@example.com")
    response = await client.post("/api/auth/token", data={"username": "Ann@Example.COM", "password": PASSWORD})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("username", "password"), [("ann@example.com", "wrong-password"), ("nobody@example.com", PASSWORD)]
)
async def test_wrong_credentials_answer_401(client: Any, username: str, password: str) -> None:
    await make_person(client, "ann@example.com")
    response = await client.post("/api/auth/token", data={"username": username, "password": password})
    assert response.status_code == 401
    assert response.json() == {"status_code": 401, "detail": "wrong email or password"}


async def test_login_without_a_field_names_it(client: Any) -> None:
    response = await client.post("/api/auth/token", data={"username": "ann@example.com"})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["password"]


async def test_a_browser_logs_in_and_then_uses_only_the_cookie(client: Any) -> None:
    await make_person(client, "ann@example.com")
    transport = client._transport
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as browser:
        login = await browser.post("/api/auth/token", data={"username": "ann@example.com", "password": PASSWORD})
        assert login.status_code == 200
        assert sessions.COOKIE_NAME in browser.cookies
        me = await browser.get("/api/users/me")
        assert me.status_code == 200
        assert me.json()["email"] == "ann@example.com"
        created = await browser.post("/api/checks/", json={"name": "x", "type": "heartbeat"})
        assert created.status_code == 201
        await browser.post("/api/auth/logout")
        assert (await browser.get("/api/users/me")).status_code == 401


async def test_users_me_lists_organizations_with_roles(client: Any) -> None:
    owner = await make_person(client, "owner@example.com", org="acme")
    await make_person(client, "viewer@example.com", org="acme", role=Role.VIEWER)
    me = (await client.get("/api/users/me", headers=owner.headers)).json()
    assert me["email"] == "owner@example.com"
    assert me["is_superadmin"] is False
    assert me["organizations"] == [{"id": me["organizations"][0]["id"], "name": "acme", "role": "OWNER"}]


async def test_personal_access_token_lifecycle(client: Any) -> None:
    ann = await make_person(client, "ann@example.com")
    created = await client.post("/api/users/me/tokens", json={"name": "ci"}, headers=ann.headers)
    assert created.status_code == 201
    token = created.json()
    assert token["name"] == "ci"
    assert token["token"].startswith("pat_")
    pat = {"Authorization": f"Bearer {token['token']}"}

    assert (await client.get("/api/users/me", headers=pat)).json()["email"] == "ann@example.com"
    listed = await client.get("/api/users/me/tokens", headers=ann.headers)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()] == [token["id"]]
    assert "token" not in listed.json()[0]
    assert listed.json()[0]["last_used_at"] is not None
    # Only the hash is stored.
    stored = await db_fetch(client, "SELECT token_hash FROM access_tokens WHERE id = {}", token["id"])
    assert token["token"] not in str(stored)

    assert (await client.delete(f"/api/users/me/tokens/{token['id']}", headers=ann.headers)).status_code == 204
    revoked = await client.get("/api/users/me", headers=pat)
    assert revoked.status_code == 401
    assert (await client.get("/api/users/me/tokens", headers=ann.headers)).json() == []
    assert (await client.delete(f"/api/users/me/tokens/{token['id']}", headers=ann.headers)).status_code == 404


async def test_nobody_revokes_someone_elses_token(client: Any) -> None:
    ann = await make_person(client, "ann@example.com")
    bob = await make_person(client, "bob@example.com")
    token = (await client.post("/api/users/me/tokens", json={"name": "ci"}, headers=ann.headers)).json()
    assert (await client.delete(f"/api/users/me/tokens/{token['id']}", headers=bob.headers)).status_code == 404


async def test_expired_and_forged_jwts_answer_401(client: Any) -> None:
    ann = await make_person(client, "ann@example.com")
    key = client.app.state["ctx"].jwt_key
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)
    expired = sessions.issue(key, ann.user_id, ttl_seconds=60, now=long_ago)
    forged = sessions.issue("not-the-key", ann.user_id, ttl_seconds=600)
    for token in (expired, forged, "garbage", "pat_unknown", ""):
        response = await client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert response.json()["status_code"] == 401


async def test_agent_keys_may_not_call_user_endpoints(client: Any) -> None:
    response = await client.get("/api/checks/", headers={"Authorization": "Bearer agk_whatever"})
    assert response.status_code == 401
    assert "agent" in response.json()["detail"]


async def test_failed_logins_are_rate_limited_with_retry_after(client: Any) -> None:
    await make_person(client, "ann@example.com")
    limit = client.app.state["ctx"].settings.login_attempts_per_minute
    for _ in range(limit):
        wrong = await client.post("/api/auth/token", data={"username": "ann@example.com", "password": "nope-nope"})
        assert wrong.status_code == 401
    blocked = await client.post("/api/auth/token", data={"username": "ann@example.com", "password": PASSWORD})
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    assert blocked.json()["status_code"] == 429
    # Other accounts are not locked out by one account's guesser.
    await make_person(client, "bob@example.com")


async def test_signing_key_is_shared_through_the_database(client: Any) -> None:
    rows = await db_fetch(client, "SELECT value FROM instance_secrets WHERE name = 'jwt_signing_key'")
    assert rows
    assert rows[0]["value"] == client.app.state["ctx"].jwt_key
