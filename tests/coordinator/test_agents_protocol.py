"""The agent's own endpoints: who may call them, heartbeats, online/offline, its checks and keys."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from coordinator.auth.principal import Role
from coordinator.events.bus import AGENT_STATUS
from tests.support import (
    AgentKey,
    Person,
    agent_check_ids,
    agent_settings,
    bus_of,
    clock_of,
    create_check,
    heartbeat,
    make_pat,
    make_person,
    next_event,
    probe_result,
    register_agent,
    run_jobs,
)

pytestmark = pytest.mark.asyncio

AGENT_ENDPOINTS = [
    ("POST", "/api/agents/heartbeat", {"version": "1"}),
    ("GET", "/api/agents/checks", None),
    ("POST", "/api/agents/results", {"results": []}),
]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Any:
    return agent_settings(database_url, tmp_path)


async def _admin_and_agent(client: Any) -> tuple[Person, AgentKey]:
    admin = await make_person(client, "admin@example.com", role=Role.OWNER)
    return admin, await register_agent(client, admin)


async def _call(client: Any, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    return await client.request(method, path, json=body, headers=headers)


# --- who may call what ----------------------------------------------------------------------------


async def test_agent_endpoints_refuse_user_tokens_and_no_token(client: Any) -> None:
    admin, _ = await _admin_and_agent(client)
    pat = await make_pat(client, admin)
    for method, path, body in AGENT_ENDPOINTS:
        for headers in (admin.headers, {"Authorization": f"Bearer {pat}"}, {}):
            response = await _call(client, method, path, body, headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["detail"].startswith("this endpoint takes an agent key")


async def test_agent_keys_may_call_nothing_but_the_agent_endpoints(client: Any) -> None:
    _, agent = await _admin_and_agent(client)
    for method, path in [
        ("GET", "/api/agents/"),
        ("GET", f"/api/agents/{agent.id}"),
        ("GET", "/api/agents/geo-locations"),
        ("POST", "/api/agents/registration-token"),
        ("GET", "/api/checks/"),
        ("GET", "/api/users/me"),
    ]:
        response = await client.request(method, path, headers=agent.headers, json={"name": "x"})
        assert response.status_code == 401, (method, path)


async def test_an_unknown_agent_key_answers_401(client: Any) -> None:
    response = await client.get("/api/agents/checks", headers={"Authorization": "Bearer agk_nope"})
    assert response.status_code == 401


# --- heartbeats and online/offline ----------------------------------------------------------------


async def test_a_heartbeat_is_recorded_and_answered_with_time_and_etag(client: Any) -> None:
    admin, agent = await _admin_and_agent(client)
    now = clock_of(client).freeze()

    answer = await heartbeat(
        client,
        agent,
        version="1.2.3",
        hostname="probe-9",
        sent_at=now.isoformat(),
        running_checks=12,
        spool_depth=4,
    )

    assert answer["heartbeat_interval"] == 30
    assert datetime.datetime.fromisoformat(answer["server_time"].replace("Z", "+00:00")) == now
    checks = await client.get("/api/agents/checks", headers=agent.headers)
    assert answer["checks_etag"] == checks.headers["etag"]
    shown = (await client.get(f"/api/agents/{agent.id}", headers=admin.headers)).json()
    assert shown["version"] == "1.2.3"
    assert shown["hostname"] == "probe-9"
    assert shown["running_checks"] == 12
    assert shown["spool_depth"] == 4
    assert shown["status"] == "online"
    assert datetime.datetime.fromisoformat(shown["last_seen"].replace("Z", "+00:00")) == now
    assert shown["clock_suspect"] is False
    assert shown["clock_skew_seconds"] == 0


async def test_an_agent_is_offline_once_it_missed_three_heartbeat_intervals(client: Any) -> None:
    admin, agent = await _admin_and_agent(client)
    clock = clock_of(client)
    clock.freeze()
    await heartbeat(client, agent)

    clock.advance(90)
    at_ninety = (await client.get(f"/api/agents/{agent.id}", headers=admin.headers)).json()["status"]
    clock.advance(1)
    at_ninety_one = (await client.get(f"/api/agents/{agent.id}", headers=admin.headers)).json()["status"]

    assert (at_ninety, at_ninety_one) == ("online", "offline")


async def test_status_changes_are_published_once_on_the_event_bus(client: Any) -> None:
    _, agent = await _admin_and_agent(client)
    clock = clock_of(client)
    start = clock.freeze()
    with bus_of(client).subscribe(types=[AGENT_STATUS]) as events:
        await heartbeat(client, agent)
        await heartbeat(client, agent)  # still online: no second event
        report = await run_jobs(client, start + datetime.timedelta(seconds=60))
        assert report.status_changes == []
        clock.advance(91)
        report = await run_jobs(client, clock.now())
        again = await run_jobs(client, clock.now())
        await heartbeat(client, agent)
        published = [(e.payload["agent_id"], e.payload["status"]) for e in events.pending()]

    assert report.status_changes == [(agent.id, "offline")]
    assert again.status_changes == []
    assert published == [(agent.id, "online"), (agent.id, "offline"), (agent.id, "online")]


async def test_the_lifespan_job_publishes_an_agent_going_offline(database_url: str, tmp_path: Path) -> None:
    from litestar.testing import AsyncTestClient

    from coordinator.app import create_app

    fast = agent_settings(database_url, tmp_path, agent_jobs_interval_seconds=0.05)
    async with AsyncTestClient(create_app(fast)) as client:
        _, agent = await _admin_and_agent(client)
        clock = clock_of(client)
        clock.freeze()
        with bus_of(client).subscribe(types=[AGENT_STATUS]) as events:
            await heartbeat(client, agent)
            assert (await next_event(events)).payload["status"] == "online"
            clock.advance(120)
            offline = await next_event(events)
    assert offline.payload == offline.payload | {"agent_id": agent.id, "status": "offline", "revoked": False}


@pytest.mark.parametrize(
    ("offset", "suspect"),
    [(60, False), (-3600, False), (301, True), (-86401, True)],
)
async def test_a_clock_too_far_ahead_or_behind_is_flagged(client: Any, offset: int, suspect: bool) -> None:
    admin, agent = await _admin_and_agent(client)
    now = clock_of(client).freeze()
    await heartbeat(client, agent, sent_at=(now + datetime.timedelta(seconds=offset)).isoformat())
    shown = (await client.get(f"/api/agents/{agent.id}", headers=admin.headers)).json()
    assert shown["clock_suspect"] is suspect
    assert shown["clock_skew_seconds"] == pytest.approx(offset)


async def test_a_malformed_heartbeat_answers_422(client: Any) -> None:
    _, agent = await _admin_and_agent(client)
    response = await client.post(
        "/api/agents/heartbeat", json={"running_checks": -1, "sent_at": "yesterday"}, headers=agent.headers
    )
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} <= {"running_checks", "sent_at"}


# --- the agent's checks ---------------------------------------------------------------------------


async def test_a_private_agent_gets_the_active_checks_that_list_it_with_secrets(client: Any) -> None:
    admin, agent = await _admin_and_agent(client)
    other = await register_agent(client, admin, name="other")
    mine = await create_check(
        client,
        admin,
        name="mine",
        assigned_agent_ids=[agent.id],
        auth_method="basic",
        auth_username="probe",
        auth_password="s3cret",
    )
    await create_check(client, admin, name="theirs", assigned_agent_ids=[other.id])
    await create_check(client, admin, name="central")
    await create_check(client, admin, name="paused", assigned_agent_ids=[agent.id], is_active=False)

    response = await client.get("/api/agents/checks", headers=agent.headers)

    assert response.status_code == 200
    checks = response.json()["checks"]
    assert [c["id"] for c in checks] == [mine]
    assert checks[0]["url"] == "https://example.com/"
    assert checks[0]["type"] == "uptime"
    assert checks[0]["interval"] == 60
    assert checks[0]["auth_password"] == "s3cret"


async def test_checks_answer_304_while_nothing_changed(client: Any) -> None:
    admin, agent = await _admin_and_agent(client)
    check_id = await create_check(client, admin, assigned_agent_ids=[agent.id])
    first = await client.get("/api/agents/checks", headers=agent.headers)
    etag = first.headers["etag"]

    same = await client.get("/api/agents/checks", headers={**agent.headers, "If-None-Match": etag})
    listed = f'"x", W/{etag}'
    weak = await client.get("/api/agents/checks", headers={**agent.headers, "If-None-Match": listed})
    patched = await client.patch(f"/api/checks/{check_id}", json={"interval": 120}, headers=admin.headers)
    changed = await client.get("/api/agents/checks", headers={**agent.headers, "If-None-Match": etag})

    assert same.status_code == 304
    assert same.headers["etag"] == etag
    assert same.content == b""
    assert weak.status_code == 304
    assert patched.status_code == 200
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["checks"][0]["interval"] == 120


async def test_heartbeat_etag_changes_when_the_agents_checks_change(client: Any) -> None:
    admin, agent = await _admin_and_agent(client)
    before = (await heartbeat(client, agent))["checks_etag"]
    await create_check(client, admin, assigned_agent_ids=[agent.id])
    after = (await heartbeat(client, agent))["checks_etag"]
    assert before != after
    assert await agent_check_ids(client, agent) != []


# --- keys -----------------------------------------------------------------------------------------


async def test_a_revoked_key_answers_401_at_once(client: Any) -> None:
    admin, agent = await _admin_and_agent(client)
    assert (await client.get("/api/agents/checks", headers=agent.headers)).status_code == 200

    deleted = await client.delete(f"/api/agents/{agent.id}", headers=admin.headers)

    assert deleted.status_code == 204
    response = await client.get("/api/agents/checks", headers=agent.headers)
    assert response.status_code == 401
    assert response.json()["detail"] == "this agent has been revoked"
    shown = (await client.get(f"/api/agents/{agent.id}", headers=admin.headers)).json()
    assert shown["revoked"] is True
    assert shown["status"] == "offline"


async def test_a_rotated_key_works_until_its_overlap_ends(client: Any) -> None:
    admin, agent = await _admin_and_agent(client)
    clock = clock_of(client)
    clock.freeze()

    rotated = await client.post(f"/api/agents/{agent.id}/rotate-key", headers=admin.headers)

    assert rotated.status_code == 201, rotated.text
    new = AgentKey(id=agent.id, key=rotated.json()["api_key"], registered={})
    assert new.key.startswith("agk_")
    assert new.key != agent.key
    clock.advance(599)
    assert (await client.get("/api/agents/checks", headers=agent.headers)).status_code == 200
    assert (await client.get("/api/agents/checks", headers=new.headers)).status_code == 200
    clock.advance(2)
    old_after = await client.get("/api/agents/checks", headers=agent.headers)
    assert old_after.status_code == 401
    assert (await client.get("/api/agents/checks", headers=new.headers)).status_code == 200


async def test_a_member_may_not_rotate_or_revoke(client: Any) -> None:
    _, agent = await _admin_and_agent(client)
    member = await make_person(client, "member@example.com", role=Role.MEMBER)
    rotated = await client.post(f"/api/agents/{agent.id}/rotate-key", headers=member.headers)
    deleted = await client.delete(f"/api/agents/{agent.id}", headers=member.headers)
    assert rotated.status_code == 403
    assert deleted.status_code == 403
    assert (await client.get("/api/agents/checks", headers=agent.headers)).status_code == 200


async def test_revoking_publishes_the_agent_offline_and_revoked(client: Any) -> None:
    admin, agent = await _admin_and_agent(client)
    await heartbeat(client, agent)
    with bus_of(client).subscribe(types=[AGENT_STATUS]) as events:
        await client.delete(f"/api/agents/{agent.id}", headers=admin.headers)
        await client.delete(f"/api/agents/{agent.id}", headers=admin.headers)
        published = [e.payload for e in events.pending()]
    assert [(p["status"], p["revoked"]) for p in published] == [("offline", True)]


async def test_a_revoked_agents_key_cannot_be_rotated(client: Any) -> None:
    admin, agent = await _admin_and_agent(client)
    await client.delete(f"/api/agents/{agent.id}", headers=admin.headers)
    response = await client.post(f"/api/agents/{agent.id}/rotate-key", headers=admin.headers)
    assert response.status_code == 409


async def test_nothing_a_client_sends_answers_500(client: Any) -> None:
    admin, agent = await _admin_and_agent(client)
    huge = 2**31
    cases: list[tuple[str, str, dict[str, str], Any]] = [
        ("GET", f"/api/agents/{huge}", admin.headers, None),
        ("GET", "/api/agents/0", admin.headers, None),
        ("POST", f"/api/agents/{huge}/rotate-key", admin.headers, None),
        ("DELETE", f"/api/organizations/{huge}/agents/1", admin.headers, None),
        ("GET", f"/api/organizations/{huge}/agents", admin.headers, None),
        ("POST", "/api/agents/results", agent.headers, [1, 2]),
        ("POST", "/api/agents/heartbeat", agent.headers, {"running_checks": 2**40, "hostname": 7}),
        ("POST", "/api/agents/registration-token", admin.headers, {"name": "x", "organization_id": huge}),
        ("POST", "/api/agents/registration-token", admin.headers, {"name": "", "mode": "central"}),
        ("POST", "/api/agents/register", {}, {"token": "x" * 300}),
        ("POST", "/api/agents/register", {}, ["reg_"]),
        ("POST", "/api/agents/geo-locations", admin.headers, []),
        ("GET", "/api/agents/checks", {"Authorization": "Bearer"}, None),
        ("GET", "/api/agents/checks", {"Authorization": "Basic agk_x"}, None),
    ]
    for method, path, headers, body in cases:
        response = await client.request(method, path, headers=headers, json=body)
        assert 400 <= response.status_code < 500, (method, path, body, response.text)
        assert response.json()["status_code"] == response.status_code
    # An id out of range inside a batch is one rejected result, not a failed request.
    out_of_range = {"results": [probe_result(huge), probe_result(2**70)]}
    batch = await client.post("/api/agents/results", json=out_of_range, headers=agent.headers)
    reasons = [r["reason"] for r in batch.json()["rejected"]]
    assert reasons == ["check_id: must be a positive check id"] * 2
