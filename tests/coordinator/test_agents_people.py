"""Agents as people see them: lists, one agent, revoking; organization paths; geo locations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coordinator.auth.principal import Role
from tests.support import (
    agent_settings,
    clock_of,
    heartbeat,
    make_person,
    organization_id,
    register_agent,
)

pytestmark = pytest.mark.asyncio

AGENT_FIELDS = {
    "id", "name", "mode", "status", "last_seen", "location_id", "version", "hostname", "capabilities",
    "organization_id", "heartbeat_interval", "clock_skew_seconds", "clock_suspect", "running_checks",
    "spool_depth", "created_at", "revoked",
}  # fmt: skip


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Any:
    return agent_settings(database_url, tmp_path)


async def test_people_list_the_agents_of_their_organizations_only(client: Any) -> None:
    acme = await make_person(client, "a@example.com", org="acme", role=Role.OWNER)
    globex = await make_person(client, "g@example.com", org="globex", role=Role.OWNER)
    mine = await register_agent(client, acme, name="acme-1")
    await register_agent(client, globex, name="globex-1")
    viewer = await make_person(client, "v@example.com", org="acme", role=Role.VIEWER)

    listed = await client.get("/api/agents/", headers=viewer.headers)

    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()] == [mine.id]
    assert set(listed.json()[0]) == AGENT_FIELDS


async def test_one_agent_reads_back_with_every_field(client: Any) -> None:
    admin = await make_person(client, "a@example.com", role=Role.OWNER)
    agent = await register_agent(client, admin, name="dc1")
    clock_of(client).freeze()
    await heartbeat(client, agent)

    shown = await client.get(f"/api/agents/{agent.id}", headers=admin.headers)

    assert shown.status_code == 200
    body = shown.json()
    assert set(body) == AGENT_FIELDS
    assert body["name"] == "dc1"
    assert body["mode"] == "private"
    assert body["status"] == "online"
    assert body["organization_id"] == await organization_id(client, admin)
    assert body["revoked"] is False


async def test_another_organizations_agent_answers_404(client: Any) -> None:
    acme = await make_person(client, "a@example.com", org="acme", role=Role.OWNER)
    globex = await make_person(client, "g@example.com", org="globex", role=Role.OWNER)
    agent = await register_agent(client, acme)
    for response in (
        await client.get(f"/api/agents/{agent.id}", headers=globex.headers),
        await client.delete(f"/api/agents/{agent.id}", headers=globex.headers),
        await client.post(f"/api/agents/{agent.id}/rotate-key", headers=globex.headers),
        await client.get("/api/agents/999999", headers=globex.headers),
    ):
        assert response.status_code == 404
        assert response.json()["detail"] == "agent not found"


async def test_revoked_agents_leave_the_list_but_still_read_back(client: Any) -> None:
    admin = await make_person(client, "a@example.com", role=Role.OWNER)
    agent = await register_agent(client, admin)
    await client.delete(f"/api/agents/{agent.id}", headers=admin.headers)
    assert (await client.get("/api/agents/", headers=admin.headers)).json() == []
    assert (await client.get(f"/api/agents/{agent.id}", headers=admin.headers)).json()["revoked"] is True


async def test_geo_agents_are_seen_one_by_one_by_superadmins_only(client: Any) -> None:
    root = await make_person(client, "root@example.com", org=None, superadmin=True)
    person = await make_person(client, "a@example.com", role=Role.OWNER)
    geo = await register_agent(client, root, mode="geo", location_id="AP-SG")

    assert [a["id"] for a in (await client.get("/api/agents/", headers=root.headers)).json()] == [geo.id]
    assert (await client.get("/api/agents/", headers=person.headers)).json() == []
    assert (await client.get(f"/api/agents/{geo.id}", headers=person.headers)).status_code == 404
    assert (await client.get(f"/api/agents/{geo.id}", headers=root.headers)).json()["location_id"] == "AP-SG"


async def test_the_organization_path_lists_its_agents_with_a_count(client: Any) -> None:
    admin = await make_person(client, "a@example.com", role=Role.OWNER)
    org = await organization_id(client, admin)
    agents = [await register_agent(client, admin, name=f"p{n}") for n in range(2)]

    response = await client.get(f"/api/organizations/{org}/agents", headers=admin.headers)

    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert [a["id"] for a in response.json()["agents"]] == [a.id for a in agents]


async def test_the_organization_path_refuses_other_organizations(client: Any) -> None:
    acme = await make_person(client, "a@example.com", org="acme", role=Role.OWNER)
    globex = await make_person(client, "g@example.com", org="globex", role=Role.OWNER)
    acme_org = await organization_id(client, acme)
    globex_org = await organization_id(client, globex)
    globex_agent = await register_agent(client, globex)

    listed = await client.get(f"/api/organizations/{acme_org}/agents", headers=globex.headers)
    # An agent of globex, asked for under acme's path by acme's owner.
    crossed = await client.delete(
        f"/api/organizations/{acme_org}/agents/{globex_agent.id}", headers=acme.headers
    )
    own = await client.delete(
        f"/api/organizations/{globex_org}/agents/{globex_agent.id}", headers=globex.headers
    )

    assert listed.status_code == 404
    assert crossed.status_code == 404
    assert own.status_code == 204
    assert (await client.get("/api/agents/checks", headers=globex_agent.headers)).status_code == 401


async def test_a_viewer_reads_but_may_not_revoke_through_the_organization_path(client: Any) -> None:
    admin = await make_person(client, "a@example.com", role=Role.OWNER)
    viewer = await make_person(client, "v@example.com", role=Role.VIEWER)
    org = await organization_id(client, admin)
    agent = await register_agent(client, admin)
    assert (await client.get(f"/api/organizations/{org}/agents", headers=viewer.headers)).json()["count"] == 1
    refused = await client.delete(f"/api/organizations/{org}/agents/{agent.id}", headers=viewer.headers)
    assert refused.status_code == 403


async def test_at_least_ten_geo_locations_are_seeded_across_three_regions(client: Any) -> None:
    person = await make_person(client, "a@example.com")
    response = await client.get("/api/agents/geo-locations", headers=person.headers)
    assert response.status_code == 200
    locations = response.json()
    assert len(locations) >= 10
    ids = {loc["id"] for loc in locations}
    assert {"EU-PL", "EU-DE", "US-EAST", "AP-SG"} <= ids
    assert {loc["region"] for loc in locations} >= {"EU", "NA", "AP"}
    assert set(locations[0]) == {"id", "name", "region", "country", "agents_online"}
    warsaw = next(loc for loc in locations if loc["id"] == "EU-PL")
    assert warsaw == {"id": "EU-PL", "name": "Warsaw", "region": "EU", "country": "PL", "agents_online": 0}


async def test_geo_locations_count_their_online_agents(client: Any) -> None:
    root = await make_person(client, "root@example.com", org=None, superadmin=True)
    clock = clock_of(client)
    clock.freeze()
    online = [await register_agent(client, root, mode="geo", location_id="EU-DE") for _ in range(2)]
    await register_agent(client, root, mode="geo", location_id="EU-DE")  # never heartbeats
    for agent in online:
        await heartbeat(client, agent)

    def count(locations: list[dict[str, Any]]) -> int:
        return next(loc["agents_online"] for loc in locations if loc["id"] == "EU-DE")

    now = (await client.get("/api/agents/geo-locations", headers=root.headers)).json()
    clock.advance(91)
    later = (await client.get("/api/agents/geo-locations", headers=root.headers)).json()
    assert (count(now), count(later)) == (2, 0)


async def test_a_superadmin_adds_a_geo_location(client: Any) -> None:
    root = await make_person(client, "root@example.com", org=None, superadmin=True)
    body = {"id": "EU-ES", "name": "Madrid", "region": "EU", "country": "ES"}

    created = await client.post("/api/agents/geo-locations", json=body, headers=root.headers)
    again = await client.post("/api/agents/geo-locations", json=body, headers=root.headers)

    assert created.status_code == 201
    assert created.json() == {**body, "agents_online": 0}
    assert again.status_code == 409
    listed = (await client.get("/api/agents/geo-locations", headers=root.headers)).json()
    assert body["id"] in {loc["id"] for loc in listed}
    token = await client.post(
        "/api/agents/registration-token",
        json={"name": "mad-1", "mode": "geo", "location_id": "EU-ES"},
        headers=root.headers,
    )
    assert token.status_code == 201


async def test_only_a_superadmin_adds_geo_locations_and_only_valid_ones(client: Any) -> None:
    root = await make_person(client, "root@example.com", org=None, superadmin=True)
    owner = await make_person(client, "a@example.com", role=Role.OWNER)
    body = {"id": "EU-ES", "name": "Madrid", "region": "EU", "country": "ES"}
    refused = await client.post("/api/agents/geo-locations", json=body, headers=owner.headers)
    invalid = await client.post(
        "/api/agents/geo-locations", json={**body, "id": "eu es", "country": "Spain"}, headers=root.headers
    )
    assert refused.status_code == 403
    assert invalid.status_code == 422
    assert {e["field"] for e in invalid.json()["errors"]} <= {"id", "country"}
