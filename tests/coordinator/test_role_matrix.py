"""Who may do what: every kind of caller against every endpoint of the Checks and token APIs.

Each row is one kind of caller; each column one action. The expected code is written out in full
so that a change of policy shows up as a changed table, not a changed loop.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from coordinator.auth import sessions
from coordinator.auth.principal import Role
from tests.support import make_person

pytestmark = pytest.mark.asyncio

BODY = {"name": "site", "type": "uptime", "url": "https://example.com"}

# action -> (method, path template, json body)
ACTIONS: dict[str, tuple[str, str, Any]] = {
    "list": ("GET", "/api/checks/", None),
    "read": ("GET", "/api/checks/{id}", None),
    "create": ("POST", "/api/checks/", BODY),
    "patch": ("PATCH", "/api/checks/{id}", {"name": "renamed"}),
    "put": ("PUT", "/api/checks/{id}", BODY),
    "delete": ("DELETE", "/api/checks/{id}", None),
    "me": ("GET", "/api/users/me", None),
    "token.create": ("POST", "/api/users/me/tokens", {"name": "t"}),
    "token.list": ("GET", "/api/users/me/tokens", None),
}

#                  list  read  create patch put  delete me   tok.c tok.l
EXPECTED: dict[str, tuple[int, ...]] = {
    "anonymous": (401, 401, 401, 401, 401, 401, 401, 401, 401),
    "viewer": (200, 200, 403, 403, 403, 403, 200, 201, 200),
    "member": (200, 200, 201, 200, 200, 204, 200, 201, 200),
    "admin": (200, 200, 201, 200, 200, 204, 200, 201, 200),
    "other_org": (200, 404, 201, 404, 404, 404, 200, 201, 200),
    "member_pat": (200, 200, 201, 200, 200, 204, 200, 201, 200),
    "revoked_pat": (401, 401, 401, 401, 401, 401, 401, 401, 401),
    "expired_jwt": (401, 401, 401, 401, 401, 401, 401, 401, 401),
    "superadmin": (200, 200, 422, 200, 200, 204, 200, 201, 200),
}


async def _headers_by_caller(client: Any) -> dict[str, dict[str, str]]:
    member = await make_person(client, "member@example.com", org="acme", role=Role.MEMBER)
    viewer = await make_person(client, "viewer@example.com", org="acme", role=Role.VIEWER)
    admin = await make_person(client, "admin@example.com", org="acme", role=Role.ADMIN)
    other = await make_person(client, "other@example.com", org="globex")
    root = await make_person(client, "root@example.com", org=None, superadmin=True)

    pat = (await client.post("/api/users/me/tokens", json={"name": "ci"}, headers=member.headers)).json()
    revoked = (await client.post("/api/users/me/tokens", json={"name": "old"}, headers=member.headers)).json()
    await client.delete(f"/api/users/me/tokens/{revoked['id']}", headers=member.headers)
    key = client.app.state["ctx"].jwt_key
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    expired = sessions.issue(key, member.user_id, ttl_seconds=60, now=past)

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    return {
        "anonymous": {},
        "viewer": viewer.headers,
        "member": member.headers,
        "admin": admin.headers,
        "other_org": other.headers,
        "member_pat": bearer(pat["token"]),
        "revoked_pat": bearer(revoked["token"]),
        "expired_jwt": bearer(expired),
        "superadmin": root.headers,
    }


@pytest.mark.parametrize("caller", list(EXPECTED))
async def test_role_by_endpoint_matrix(client: Any, caller: str) -> None:
    headers = await _headers_by_caller(client)
    owner = headers["member"]
    got: list[int] = []
    for action, (method, template, body) in ACTIONS.items():
        # A fresh check per action, so a delete cannot hide the next action's answer.
        check = (await client.post("/api/checks/", json=BODY, headers=owner)).json()
        path = template.format(id=check["id"])
        response = await client.request(method, path, json=body, headers=headers[caller])
        assert response.status_code < 500, (action, response.text)
        if response.status_code >= 400:
            assert response.json()["status_code"] == response.status_code, action
        got.append(response.status_code)
    assert dict(zip(ACTIONS, got, strict=True)) == dict(zip(ACTIONS, EXPECTED[caller], strict=True))


async def test_another_organization_never_sees_a_check_in_listings(client: Any) -> None:
    headers = await _headers_by_caller(client)
    await client.post("/api/checks/", json=BODY, headers=headers["member"])
    listing = (await client.get("/api/checks/", headers=headers["other_org"])).json()
    assert listing["total"] == 0
    assert listing["checks"] == []
    everything = (await client.get("/api/checks/", headers=headers["superadmin"])).json()
    assert everything["total"] == 1
