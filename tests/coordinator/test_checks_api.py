"""The Checks API: the reference's example round-trips, each invalid field is named, secrets stay hidden."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator.auth.principal import Role
from tests.support import insert_agent, make_person, organization_id

pytestmark = pytest.mark.asyncio

# The reference's "Create Check Example", as it stands; only the agent ids are made to exist.
REFERENCE_EXAMPLE: dict[str, Any] = {
    "name": "My Website",
    "type": "uptime",
    "url": "https://example.com",
    "interval": 60,
    "grace_period": 60,
    "expected_status_codes": [200],
    "content_match_enabled": True,
    "content_match_text": "Welcome",
    "content_match_type": "contains",
    "geo_monitoring_enabled": False,
    "assigned_agent_ids": [1, 2],
    "check_source_critical": {"agent:1": True, "geo:EU-PL": False},
}


async def _member_with_agents(client: Any) -> tuple[Any, list[int]]:
    member = await make_person(client, "member@example.com", role=Role.MEMBER)
    org = await organization_id(client, member)
    agents = [await insert_agent(client, org), await insert_agent(client, org)]
    return member, agents


async def test_reference_example_is_created_and_reads_back_with_the_same_values(client: Any) -> None:
    member, agents = await _member_with_agents(client)
    body = dict(REFERENCE_EXAMPLE, assigned_agent_ids=agents)
    body["check_source_critical"] = {f"agent:{agents[0]}": True, "geo:EU-PL": False}

    created = await client.post("/api/checks/", json=body, headers=member.headers)
    assert created.status_code == 201, created.text
    check = created.json()
    read = await client.get(f"/api/checks/{check['id']}", headers=member.headers)
    assert read.status_code == 200
    for key, value in body.items():
        assert check[key] == value, key
        assert read.json()[key] == value, key
    assert read.json()["agent_location_statuses"] == {}
    assert read.json()["status"] == "UNKNOWN"
    assert len(read.json()["uuid"]) == 36


async def test_deprecated_assigned_agent_id_becomes_a_list(client: Any) -> None:
    member, agents = await _member_with_agents(client)
    body = {"name": "old client", "type": "uptime", "url": "http://example.com", "assigned_agent_id": agents[1]}
    created = await client.post("/api/checks/", json=body, headers=member.headers)
    assert created.status_code == 201, created.text
    assert created.json()["assigned_agent_ids"] == [agents[1]]
    changed = await client.patch(
        f"/api/checks/{created.json()['id']}", json={"assigned_agent_id": agents[0]}, headers=member.headers
    )
    assert changed.json()["assigned_agent_ids"] == [agents[0]]


VALID = {"name": "site", "type": "uptime", "url": "https://example.com"}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"type": "smtp"}, "type"),
        ({"url": "ftp://example.com"}, "url"),
        ({"url": None}, "url"),
        ({"url": "https://"}, "url"),
        ({"interval": 9}, "interval"),
        ({"interval": 86401}, "interval"),
        ({"interval": "often"}, "interval"),
        ({"interval": 30, "timeout": 30}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"content_match_type": "startswith"}, "content_match_type"),
        ({"content_match_type": "regex", "content_match_text": "(unclosed"}, "content_match_text"),
        ({"content_match_enabled": True}, "content_match_text"),
        ({"check_source_critical": {"agent-1": True}}, "check_source_critical.agent-1"),
        ({"check_source_critical": {"central": True}}, "check_source_critical.central"),
        ({"check_source_critical": {"agent:1": "yes"}}, "check_source_critical"),
        ({"assigned_agent_ids": [999]}, "assigned_agent_ids"),
        ({"assigned_agent_ids": "1"}, "assigned_agent_ids"),
        ({"expected_status_codes": [700]}, "expected_status_codes[0]"),
        ({"http_method": "FETCH"}, "http_method"),
        ({"http_headers": {"X-Bad\r\nHeader": "v"}}, "http_headers"),
        ({"http_headers": {"X-Ok": "line\r\nInjected: 1"}}, "http_headers"),
        ({"auth_method": "basic"}, "auth_username"),
        ({"auth_method": "bearer"}, "auth_bearer_token"),
        ({"alert_after_failures": 0}, "alert_after_failures"),
        ({"degraded_threshold_ms": -5}, "degraded_threshold_ms"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"intervall": 60}, "intervall"),
        ({"dns_server": "not-an-ip"}, "dns_server"),
        ({"ping_count": 50}, "ping_count"),
        ({"is_active": "maybe"}, "is_active"),
    ],
)
async def test_each_invalid_field_is_refused_with_422_naming_it(
    client: Any, changes: dict[str, Any], field: str
) -> None:
    member = await make_person(client, "member@example.com")
    response = await client.post("/api/checks/", json={**VALID, **changes}, headers=member.headers)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["status_code"] == 422
    fields = [e["field"] for e in body["errors"]]
    assert any(f == field or f.startswith(field) for f in fields), fields
    assert field.split(".")[0].split("[")[0] in body["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "t", "type": "tcp", "port": 22}, "host"),
        ({"name": "t", "type": "tcp", "host": "db.internal"}, "port"),
        ({"name": "t", "type": "udp", "host": "10.0.0.1", "port": 53}, "send_text"),
        ({"name": "t", "type": "tcp", "host": "bad host!", "port": 22}, "host"),
        ({"name": "t", "type": "icmp"}, "host"),
        ({"name": "t", "type": "dns", "host": "example.com", "dns_record_type": "PTR"}, "dns_record_type"),
        ({"type": "heartbeat"}, "name"),
        ({"name": "no type"}, "type"),
    ],
)
async def test_type_specific_rules_are_enforced(client: Any, body: dict[str, Any], field: str) -> None:
    member = await make_person(client, "member@example.com")
    response = await client.post("/api/checks/", json=body, headers=member.headers)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_every_check_type_can_be_created(client: Any) -> None:
    member = await make_person(client, "member@example.com")
    bodies = [
        {"name": "web", "type": "uptime", "url": "http://127.0.0.1:8080/health"},
        {"name": "ssh", "type": "tcp", "host": "10.1.2.3", "port": 22},
        {"name": "ntp", "type": "udp", "host": "ntp.example.com", "port": 123, "send_text": "x"},
        {"name": "ping", "type": "icmp", "host": "192.0.2.1", "ping_count": 5},
        {"name": "mx", "type": "dns", "host": "example.com", "dns_record_type": "MX", "dns_server": "1.1.1.1:53"},
        {"name": "backup", "type": "heartbeat", "interval": 3600},
    ]
    for body in bodies:
        response = await client.post("/api/checks/", json=body, headers=member.headers)
        assert response.status_code == 201, response.text
    heartbeat = response.json()
    assert heartbeat["grace_period"] > 0  # a heartbeat without grace would alarm on any late job
    assert heartbeat["timeout"] < heartbeat["interval"]


async def test_write_only_secrets_appear_in_no_response(client: Any) -> None:
    member = await make_person(client, "member@example.com")
    body = {
        **VALID,
        "auth_method": "basic",
        "auth_username": "robot",
        "auth_password": "hunter2-secret",
        "auth_bearer_token": "tok-very-secret",
    }
    responses = [await client.post("/api/checks/", json=body, headers=member.headers)]
    check_id = responses[0].json()["id"]
    responses.append(await client.get(f"/api/checks/{check_id}", headers=member.headers))
    responses.append(await client.get("/api/checks/", headers=member.headers))
    responses.append(await client.patch(f"/api/checks/{check_id}", json={"name": "x"}, headers=member.headers))
    responses.append(await client.put(f"/api/checks/{check_id}", json=VALID, headers=member.headers))
    for response in responses:
        assert response.status_code in (200, 201), response.text
        assert "hunter2-secret" not in response.text
        assert "tok-very-secret" not in response.text
        assert 'auth_password"' not in response.text.replace('auth_password_set"', "")
    # PUT without the secrets keeps them: the client could not have read them back.
    assert responses[-1].json()["auth_password_set"] is True
    cleared = await client.patch(f"/api/checks/{check_id}", json={"auth_password": None}, headers=member.headers)
    assert cleared.json()["auth_password_set"] is False


async def test_put_replaces_and_patch_changes_only_what_is_sent(client: Any) -> None:
    member = await make_person(client, "member@example.com")
    created = (
        await client.post(
            "/api/checks/", json={**VALID, "interval": 120, "description": "keep?"}, headers=member.headers
        )
    ).json()
    patched = await client.patch(f"/api/checks/{created['id']}", json={"interval": 300}, headers=member.headers)
    assert patched.json()["interval"] == 300
    assert patched.json()["description"] == "keep?"
    replaced = await client.put(f"/api/checks/{created['id']}", json=VALID, headers=member.headers)
    assert replaced.json()["interval"] == 60
    assert replaced.json()["description"] == ""
    # A body read with GET can be sent back with PUT as it is.
    round_trip = await client.put(f"/api/checks/{created['id']}", json=replaced.json(), headers=member.headers)
    assert round_trip.status_code == 200, round_trip.text


async def test_patch_that_breaks_a_cross_field_rule_is_refused(client: Any) -> None:
    member = await make_person(client, "member@example.com")
    created = (await client.post("/api/checks/", json={**VALID, "interval": 60}, headers=member.headers)).json()
    response = await client.patch(f"/api/checks/{created['id']}", json={"interval": 10}, headers=member.headers)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["timeout"]


async def test_pausing_a_check_reads_paused_and_resuming_reads_unknown(client: Any) -> None:
    member = await make_person(client, "member@example.com")
    created = (await client.post("/api/checks/", json=VALID, headers=member.headers)).json()
    paused = await client.patch(f"/api/checks/{created['id']}", json={"is_active": False}, headers=member.headers)
    assert paused.json()["status"] == "PAUSED"
    resumed = await client.patch(f"/api/checks/{created['id']}", json={"is_active": True}, headers=member.headers)
    assert resumed.json()["status"] == "UNKNOWN"


async def test_list_is_paginated_and_filtered(client: Any) -> None:
    member = await make_person(client, "member@example.com")
    for i in range(5):
        await client.post("/api/checks/", json={**VALID, "name": f"web {i}"}, headers=member.headers)
    await client.post("/api/checks/", json={"name": "job", "type": "heartbeat"}, headers=member.headers)

    page = (await client.get("/api/checks/?offset=2&limit=2", headers=member.headers)).json()
    assert page["total"] == 6
    assert [c["name"] for c in page["checks"]] == ["web 2", "web 3"]
    heartbeats = (await client.get("/api/checks/?type=heartbeat", headers=member.headers)).json()
    assert [c["name"] for c in heartbeats["checks"]] == ["job"]
    unknown = (await client.get("/api/checks/?status=UNKNOWN&limit=500", headers=member.headers)).json()
    assert unknown["total"] == 6
    for bad in ("limit=0", "limit=501", "offset=-1", "type=smtp", "status=GREEN", "limit=abc"):
        response = await client.get(f"/api/checks/?{bad}", headers=member.headers)
        assert response.status_code in (400, 422), bad
        assert response.json()["status_code"] == response.status_code


async def test_organization_is_chosen_from_the_body_when_the_caller_has_several(client: Any) -> None:
    member = await make_person(client, "member@example.com", org="acme")
    await make_person(client, "other@example.com", org="globex")
    from coordinator.auth import service
    from tests.support import engine_of

    # member joins globex too, and must now say where a new check goes.
    await service._join_or_found(engine_of(client), member.user_id, "globex", Role.MEMBER)
    ambiguous = await client.post("/api/checks/", json=VALID, headers=member.headers)
    assert ambiguous.status_code == 422
    assert ambiguous.json()["errors"][0]["field"] == "organization_id"
    me = (await client.get("/api/users/me", headers=member.headers)).json()
    globex = next(o["id"] for o in me["organizations"] if o["name"] == "globex")
    placed = await client.post("/api/checks/", json={**VALID, "organization_id": globex}, headers=member.headers)
    assert placed.status_code == 201
    assert placed.json()["organization_id"] == globex


async def test_agents_of_another_organization_cannot_be_assigned(client: Any) -> None:
    member = await make_person(client, "member@example.com", org="acme")
    stranger = await make_person(client, "stranger@example.com", org="globex")
    their_agent = await insert_agent(client, await organization_id(client, stranger))
    response = await client.post(
        "/api/checks/", json={**VALID, "assigned_agent_ids": [their_agent]}, headers=member.headers
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "assigned_agent_ids"


async def test_delete_removes_the_check(client: Any) -> None:
    member = await make_person(client, "member@example.com")
    created = (await client.post("/api/checks/", json=VALID, headers=member.headers)).json()
    assert (await client.delete(f"/api/checks/{created['id']}", headers=member.headers)).status_code == 204
    assert (await client.get(f"/api/checks/{created['id']}", headers=member.headers)).status_code == 404
