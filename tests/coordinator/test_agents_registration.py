"""Registration tokens (private and geo) and trading one for an agent key (CONTRACT §3)."""

from __future__ import annotations

import asyncio
import datetime
import shlex
from pathlib import Path
from typing import Any

import pytest

from coordinator.auth.principal import Role
from tests.support import (
    agent_settings,
    clock_of,
    db_fetch,
    make_pat,
    make_person,
    organization_id,
    register_agent,
    registration_token,
)

pytestmark = pytest.mark.asyncio
HOUR = datetime.timedelta(hours=1)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Any:
    return agent_settings(database_url, tmp_path)


def _register_body(token: str, name: str = "dc1-probe") -> dict[str, Any]:
    return {
        "token": token,
        "name": name,
        "hostname": "probe-1",
        "version": "1.0.0",
        "capabilities": ["http", "tcp", "dns", "icmp"],
    }


async def test_an_admin_gets_a_private_token_with_the_command_to_paste(client: Any) -> None:
    admin = await make_person(client, "admin@example.com", role=Role.OWNER)
    org = await organization_id(client, admin)
    now = clock_of(client).freeze()

    response = await client.post(
        "/api/agents/registration-token",
        json={"name": "dc1 probe", "mode": "private", "organization_id": org},
        headers=admin.headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["token"].startswith("reg_")
    assert body["mode"] == "private"
    assert body["organization_id"] == org
    assert datetime.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")) == now + HOUR
    command = shlex.split(body["register_command"])
    assert command[:3] == ["hc-agent", "register", "--url"]
    assert command[3].startswith("http")
    assert command[4:] == ["--token", body["token"], "--name", "dc1 probe"]


async def test_tokens_are_stored_hashed(client: Any) -> None:
    admin = await make_person(client, "admin@example.com", role=Role.OWNER)
    token = await registration_token(client, admin)
    rows = await db_fetch(client, "SELECT token_hash FROM registration_tokens")
    assert len(rows) == 1
    assert token not in rows[0]["token_hash"]
    assert len(rows[0]["token_hash"]) == 64


async def test_the_organization_path_gives_a_token_for_that_organization(client: Any) -> None:
    admin = await make_person(client, "admin@example.com", role=Role.OWNER)
    org = await organization_id(client, admin)
    response = await client.post(
        f"/api/organizations/{org}/agents/registration-token", json={"name": "p"}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["organization_id"] == org


async def test_a_personal_access_token_may_ask_for_a_registration_token(client: Any) -> None:
    admin = await make_person(client, "admin@example.com", role=Role.OWNER)
    pat = await make_pat(client, admin)
    response = await client.post(
        "/api/agents/registration-token", json={"name": "p"}, headers={"Authorization": f"Bearer {pat}"}
    )
    assert response.status_code == 201, response.text


async def test_a_member_may_not_register_agents(client: Any) -> None:
    await make_person(client, "owner@example.com", role=Role.OWNER)
    member = await make_person(client, "member@example.com", role=Role.MEMBER)
    org = await organization_id(client, member)
    response = await client.post(
        "/api/agents/registration-token", json={"name": "p", "organization_id": org}, headers=member.headers
    )
    assert response.status_code == 403
    assert "ADMIN" in response.json()["detail"]


async def test_another_organization_answers_404(client: Any) -> None:
    await make_person(client, "a@example.com", org="acme", role=Role.OWNER)
    other = await make_person(client, "b@example.com", org="globex", role=Role.OWNER)
    acme = await organization_id(client, await make_person(client, "c@example.com", org="acme"))
    response = await client.post(
        "/api/agents/registration-token", json={"name": "p", "organization_id": acme}, headers=other.headers
    )
    assert response.status_code == 404


async def test_a_geo_token_needs_a_superadmin(client: Any) -> None:
    admin = await make_person(client, "admin@example.com", role=Role.OWNER)
    response = await client.post(
        "/api/agents/registration-token",
        json={"name": "waw-1", "mode": "geo", "location_id": "EU-PL"},
        headers=admin.headers,
    )
    assert response.status_code == 403
    assert response.json()["detail"] == "only a superadmin may register geo agents"


async def test_a_superadmin_registers_a_geo_agent_of_a_known_location(client: Any) -> None:
    root = await make_person(client, "root@example.com", org=None, superadmin=True)
    agent = await register_agent(client, root, name="waw-1", mode="geo", location_id="EU-PL")
    assert agent.registered == {
        "agent_id": agent.id,
        "api_key": agent.key,
        "name": "waw-1",
        "mode": "geo",
        "organization_id": None,
        "location_id": "EU-PL",
        "heartbeat_interval": 30,
    }


async def test_a_geo_token_for_an_unknown_location_or_none_answers_422(client: Any) -> None:
    root = await make_person(client, "root@example.com", org=None, superadmin=True)
    unknown = await client.post(
        "/api/agents/registration-token",
        json={"name": "x", "mode": "geo", "location_id": "MARS-1"},
        headers=root.headers,
    )
    missing = await client.post(
        "/api/agents/registration-token", json={"name": "x", "mode": "geo"}, headers=root.headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"] == [{"field": "location_id", "message": "no geo location MARS-1"}]
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "location_id"


async def test_a_superadmin_names_an_existing_organization(client: Any) -> None:
    root = await make_person(client, "root@example.com", org=None, superadmin=True)
    response = await client.post(
        "/api/agents/registration-token", json={"name": "p", "organization_id": 999}, headers=root.headers
    )
    assert response.status_code == 404


async def test_register_buys_an_agent_and_records_what_it_said(client: Any) -> None:
    admin = await make_person(client, "admin@example.com", role=Role.OWNER)
    org = await organization_id(client, admin)
    token = await registration_token(client, admin, name="from-token")

    response = await client.post("/api/agents/register", json=_register_body(token))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["api_key"].startswith("agk_")
    assert body == {
        "agent_id": body["agent_id"],
        "api_key": body["api_key"],
        "name": "dc1-probe",
        "mode": "private",
        "organization_id": org,
        "location_id": None,
        "heartbeat_interval": 30,
    }
    shown = await client.get(f"/api/agents/{body['agent_id']}", headers=admin.headers)
    assert shown.status_code == 200
    assert shown.json()["hostname"] == "probe-1"
    assert shown.json()["version"] == "1.0.0"
    assert shown.json()["capabilities"] == ["http", "tcp", "dns", "icmp"]
    assert shown.json()["status"] == "offline"  # no heartbeat yet
    rows = await db_fetch(client, "SELECT key_hash FROM agents")
    assert body["api_key"] not in rows[0]["key_hash"]


async def test_a_used_token_answers_401(client: Any) -> None:
    admin = await make_person(client, "admin@example.com", role=Role.OWNER)
    token = await registration_token(client, admin)
    first = await client.post("/api/agents/register", json=_register_body(token))
    again = await client.post("/api/agents/register", json=_register_body(token))
    assert first.status_code == 201
    assert again.status_code == 401
    assert again.json() == {"status_code": 401, "detail": "this registration token has already been used"}


async def test_an_expired_token_answers_401(client: Any) -> None:
    admin = await make_person(client, "admin@example.com", role=Role.OWNER)
    clock = clock_of(client)
    clock.freeze()
    token = await registration_token(client, admin)
    clock.advance(3601)
    response = await client.post("/api/agents/register", json=_register_body(token))
    assert response.status_code == 401
    assert response.json()["detail"] == "this registration token has expired"


async def test_a_token_just_inside_its_hour_still_works(client: Any) -> None:
    admin = await make_person(client, "admin@example.com", role=Role.OWNER)
    clock = clock_of(client)
    clock.freeze()
    token = await registration_token(client, admin)
    clock.advance(3599)
    response = await client.post("/api/agents/register", json=_register_body(token))
    assert response.status_code == 201


async def test_an_unknown_token_answers_401(client: Any) -> None:
    response = await client.post("/api/agents/register", json=_register_body("reg_not-a-real-token"))
    assert response.status_code == 401
    assert response.json()["detail"] == "unknown registration token"


async def test_two_registrations_racing_with_one_token_buy_one_agent(client: Any) -> None:
    admin = await make_person(client, "admin@example.com", role=Role.OWNER)
    token = await registration_token(client, admin)
    answers = await asyncio.gather(
        *(client.post("/api/agents/register", json=_register_body(token, f"p{n}")) for n in range(4))
    )
    assert sorted(a.status_code for a in answers) == [201, 401, 401, 401]
    rows = await db_fetch(client, "SELECT id FROM agents")
    assert len(rows) == 1


async def test_a_malformed_register_body_answers_422_not_500(client: Any) -> None:
    response = await client.post("/api/agents/register", json={"token": 5, "capabilities": "http"})
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} >= {"token"}
