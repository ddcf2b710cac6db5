"""A check's status from its sources, through the HTTP API: the rules of CONTRACT §4, logged once.

One check runs on two private agents and two geo locations, with the first private agent marked
critical. Results go in through POST /api/agents/results; the status, the sources map, the log,
incidents and `status.change` events are read back. Time moves with the app's clock and the
sweep's `run_once(now)`, never by sleeping.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any

import pytest

from coordinator.auth.principal import Role
from tests.support import (
    AgentKey,
    Person,
    agent_settings,
    bus_of,
    check_logs,
    clock_of,
    create_check,
    db_fetch,
    heartbeat,
    make_person,
    post_result,
    register_agent,
    run_sweep,
)

pytestmark = pytest.mark.asyncio

SECOND = datetime.timedelta(seconds=1)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Any:
    return agent_settings(database_url, tmp_path)


@dataclasses.dataclass
class Setup:
    owner: Person
    a: AgentKey  # private, critical
    b: AgentKey  # private
    pl: AgentKey  # geo EU-PL
    de: AgentKey  # geo EU-DE
    check_id: int
    t0: datetime.datetime

    @property
    def agents(self) -> list[AgentKey]:
        return [self.a, self.b, self.pl, self.de]

    def source(self, agent: AgentKey) -> str:
        return {self.pl.id: "geo:EU-PL", self.de.id: "geo:EU-DE"}.get(agent.id, f"agent:{agent.id}")


async def _setup(client: Any, **check_fields: Any) -> Setup:
    root = await make_person(client, "root@example.com", org=None, superadmin=True)
    owner = await make_person(client, "owner@example.com", role=Role.OWNER)
    a = await register_agent(client, owner, name="a")
    b = await register_agent(client, owner, name="b")
    pl = await register_agent(client, root, name="waw", mode="geo", location_id="EU-PL")
    de = await register_agent(client, root, name="fra", mode="geo", location_id="EU-DE")
    fields = {
        "assigned_agent_ids": [a.id, b.id],
        "geo_monitoring_enabled": True,
        "check_source_critical": {f"agent:{a.id}": True},
        **check_fields,
    }
    check_id = await create_check(client, owner, **fields)
    t0 = clock_of(client).freeze()
    for agent in (a, b, pl, de):
        await heartbeat(client, agent)
    return Setup(owner, a, b, pl, de, check_id, t0)


async def _check(client: Any, s: Setup) -> dict[str, Any]:
    response = await client.get(f"/api/checks/{s.check_id}", headers=s.owner.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _all_up(client: Any, s: Setup, at: datetime.datetime) -> None:
    for agent in s.agents:
        await post_result(client, agent, s.check_id, success=True, at=at)


async def _incidents(client: Any, check_id: int) -> list[dict[str, Any]]:
    return await db_fetch(
        client, 'SELECT id, started_at, ended_at, start_log_id, end_log_id FROM incidents WHERE "check" = {}', check_id
    )


async def test_all_sources_up_make_the_check_up_and_the_change_is_logged_once(client: Any) -> None:
    s = await _setup(client)
    assert (await _check(client, s))["status"] == "UNKNOWN"
    with bus_of(client).subscribe(["status.change"]) as events:
        await _all_up(client, s, s.t0)
        published = events.pending()

    check = await _check(client, s)
    assert check["status"] == "UP"
    assert check["agent_location_statuses"] == {s.source(agent): "UP" for agent in s.agents}
    logs = (await check_logs(client, s.owner, s.check_id))["logs"]
    assert [(e["old_status"], e["new_status"]) for e in logs] == [("UNKNOWN", "UP")]
    assert logs[0]["reason"] == "all reporting sources UP"
    # The first result made the change: the other private agent had not reported, geo not yet known.
    assert logs[0]["sources"] == {s.source(s.a): "UP", s.source(s.b): "UNKNOWN"}
    assert [e.payload["new_status"] for e in published] == ["UP"]
    assert published[0].payload["check_id"] == s.check_id


async def test_the_critical_source_failing_turns_the_check_down_at_once_while_the_others_are_up(client: Any) -> None:
    s = await _setup(client)
    await _all_up(client, s, s.t0)
    with bus_of(client).subscribe(["status.change"]) as events:
        await post_result(client, s.a, s.check_id, success=False, at=s.t0 + SECOND)
        published = events.pending()

    check = await _check(client, s)
    assert check["status"] == "DOWN"
    assert check["agent_location_statuses"] == {
        s.source(s.a): "DOWN",
        s.source(s.b): "UP",
        "geo:EU-PL": "UP",
        "geo:EU-DE": "UP",
    }
    newest = (await check_logs(client, s.owner, s.check_id))["logs"][0]
    assert (newest["old_status"], newest["new_status"]) == ("UP", "DOWN")
    assert newest["reason"] == f"critical source agent:{s.a.id} DOWN"
    assert newest["sources"] == check["agent_location_statuses"]
    incidents = await _incidents(client, s.check_id)
    assert len(incidents) == 1
    assert incidents[0]["ended_at"] is None
    assert incidents[0]["start_log_id"] == newest["id"]
    assert [(e.type, e.payload["new_status"], e.payload["reason"]) for e in published] == [
        ("status.change", "DOWN", newest["reason"])
    ]

    # Recovery closes the incident.
    await post_result(client, s.a, s.check_id, success=True, at=s.t0 + 2 * SECOND)
    assert (await _check(client, s))["status"] == "UP"
    incidents = await _incidents(client, s.check_id)
    assert len(incidents) == 1
    assert incidents[0]["ended_at"] is not None


async def test_a_non_critical_source_failing_degrades_the_check(client: Any) -> None:
    s = await _setup(client)
    await _all_up(client, s, s.t0)
    await post_result(client, s.b, s.check_id, success=False, at=s.t0 + SECOND)

    check = await _check(client, s)
    assert check["status"] == "DEGRADED"
    assert check["agent_location_statuses"][s.source(s.b)] == "DOWN"
    newest = (await check_logs(client, s.owner, s.check_id))["logs"][0]
    assert newest["reason"] == f"agent:{s.b.id} DOWN (1 of 4 reporting sources)"
    assert await _incidents(client, s.check_id) == []


async def test_three_of_four_sources_failing_turn_the_check_down_by_majority(client: Any) -> None:
    s = await _setup(client)
    await _all_up(client, s, s.t0)
    for agent in (s.b, s.pl):
        await post_result(client, agent, s.check_id, success=False, at=s.t0 + SECOND)
    assert (await _check(client, s))["status"] == "DEGRADED", "two of four is not more than half"
    await post_result(client, s.de, s.check_id, success=False, at=s.t0 + SECOND)

    check = await _check(client, s)
    assert check["status"] == "DOWN"
    logs = (await check_logs(client, s.owner, s.check_id))["logs"]
    assert [(e["old_status"], e["new_status"]) for e in logs] == [
        ("DEGRADED", "DOWN"),
        ("UP", "DEGRADED"),
        ("UNKNOWN", "UP"),
    ]
    assert logs[0]["reason"] == "3 of 4 reporting sources DOWN"
    assert len(await _incidents(client, s.check_id)) == 1


async def test_a_source_without_a_fresh_result_turns_unknown_after_the_bound(client: Any) -> None:
    # interval 60, timeout 10, grace 0: the bound is max(2.5 x 60, 60 + 10) = 150 s.
    s = await _setup(client)
    clock = clock_of(client)
    await _all_up(client, s, s.t0)
    for step in (60, 120):
        clock.freeze(s.t0 + step * SECOND)
        for agent in s.agents:  # every agent stays online; b stops sending results
            await heartbeat(client, agent)
            if agent is not s.b:
                await post_result(client, agent, s.check_id, success=True, at=clock.now())

    report = await run_sweep(client, s.t0 + 150 * SECOND)
    assert report.changes == []
    assert (await _check(client, s))["agent_location_statuses"][s.source(s.b)] == "UP"

    await run_sweep(client, s.t0 + 151 * SECOND)
    check = await _check(client, s)
    assert check["agent_location_statuses"][s.source(s.b)] == "UNKNOWN"
    assert check["status"] == "UP", "an UNKNOWN source does not count"
    rows = await db_fetch(
        client, 'SELECT status FROM source_states WHERE "check" = {} AND source = {}', s.check_id, s.source(s.b)
    )
    assert [r["status"] for r in rows] == ["UNKNOWN"]


async def test_an_agent_that_goes_offline_makes_its_source_unknown(client: Any) -> None:
    s = await _setup(client, check_source_critical={})
    clock = clock_of(client)
    await _all_up(client, s, s.t0)
    await post_result(client, s.b, s.check_id, success=False, at=s.t0 + SECOND)
    assert (await _check(client, s))["status"] == "DEGRADED"

    # b's results are fresh (bound 150 s) but it has not heartbeated for more than 3 x 30 s.
    clock.freeze(s.t0 + 100 * SECOND)
    for agent in (s.a, s.pl, s.de):
        await heartbeat(client, agent)
    report = await run_sweep(client, clock.now())

    check = await _check(client, s)
    assert check["agent_location_statuses"][s.source(s.b)] == "UNKNOWN"
    assert check["status"] == "UP"
    assert [(c.old_status, c.new_status) for c in report.changes] == [("DEGRADED", "UP")]
    # Back online: its source counts again at the next round.
    await heartbeat(client, s.b)
    await run_sweep(client, clock.now())
    assert (await _check(client, s))["status"] == "DEGRADED"


async def test_alert_after_failures_needs_that_many_failures_in_a_row(client: Any) -> None:
    s = await _setup(client, check_source_critical={}, alert_after_failures=3)
    await _all_up(client, s, s.t0)
    for n in (1, 2):
        await post_result(client, s.b, s.check_id, success=False, at=s.t0 + n * SECOND)
        check = await _check(client, s)
        assert check["agent_location_statuses"][s.source(s.b)] == "DEGRADED", n
        assert check["status"] == "DEGRADED"
    await post_result(client, s.b, s.check_id, success=False, at=s.t0 + 3 * SECOND)
    assert (await _check(client, s))["agent_location_statuses"][s.source(s.b)] == "DOWN"
    # A duplicate (the same result_id again) is not a fourth failure, and a success ends the run.
    await post_result(client, s.b, s.check_id, success=True, at=s.t0 + 4 * SECOND)
    await post_result(client, s.b, s.check_id, success=False, at=s.t0 + 5 * SECOND)
    assert (await _check(client, s))["agent_location_statuses"][s.source(s.b)] == "DEGRADED"


async def test_the_grace_period_holds_down_back_until_it_is_over(client: Any) -> None:
    s = await _setup(client, check_source_critical={}, grace_period=120)
    await _all_up(client, s, s.t0)
    for agent in (s.b, s.pl, s.de):
        await post_result(client, agent, s.check_id, success=False, at=s.t0 + SECOND)
    assert (await _check(client, s))["status"] == "DEGRADED", "failing within the grace period"

    clock = clock_of(client)
    clock.freeze(s.t0 + 60 * SECOND)
    for agent in s.agents:
        await heartbeat(client, agent)
    assert (await run_sweep(client, s.t0 + 120 * SECOND)).changes == []
    report = await run_sweep(client, s.t0 + 121 * SECOND)

    assert [(c.old_status, c.new_status, c.reason) for c in report.changes] == [
        ("DEGRADED", "DOWN", "3 of 4 reporting sources DOWN")
    ]
    assert (await _check(client, s))["status"] == "DOWN"
    assert len(await _incidents(client, s.check_id)) == 1


async def test_pausing_and_resuming_go_through_the_log(client: Any) -> None:
    s = await _setup(client)
    await _all_up(client, s, s.t0)
    with bus_of(client).subscribe(["status.change"]) as events:
        response = await client.patch(f"/api/checks/{s.check_id}", json={"is_active": False}, headers=s.owner.headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "PAUSED"
        response = await client.patch(f"/api/checks/{s.check_id}", json={"is_active": True}, headers=s.owner.headers)
        assert response.json()["status"] == "UP"
        published = events.pending()

    logs = (await check_logs(client, s.owner, s.check_id))["logs"]
    assert [(e["old_status"], e["new_status"], e["reason"]) for e in logs[:2]] == [
        ("PAUSED", "UP", "all reporting sources UP"),
        ("UP", "PAUSED", "paused"),
    ]
    assert [e.payload["new_status"] for e in published] == ["PAUSED", "UP"]


async def test_taking_an_agent_or_geo_away_removes_its_sources(client: Any) -> None:
    s = await _setup(client)
    await _all_up(client, s, s.t0)
    await post_result(client, s.a, s.check_id, success=False, at=s.t0 + SECOND)
    assert (await _check(client, s))["status"] == "DOWN"

    response = await client.patch(
        f"/api/checks/{s.check_id}",
        json={"assigned_agent_ids": [s.b.id], "geo_monitoring_enabled": False},
        headers=s.owner.headers,
    )
    assert response.status_code == 200, response.text
    check = response.json()
    assert check["status"] == "UP"
    assert check["agent_location_statuses"] == {s.source(s.b): "UP"}
    sources = await db_fetch(client, 'SELECT source FROM source_states WHERE "check" = {}', s.check_id)
    assert [r["source"] for r in sources] == [s.source(s.b)]
    incidents = await _incidents(client, s.check_id)
    assert len(incidents) == 1
    assert incidents[0]["ended_at"] is not None


async def test_the_log_reads_newest_first_a_page_at_a_time_for_viewers_only(client: Any) -> None:
    s = await _setup(client, check_source_critical={})
    await _all_up(client, s, s.t0)  # UNKNOWN -> UP
    await post_result(client, s.b, s.check_id, success=False, at=s.t0 + SECOND)  # -> DEGRADED
    await post_result(client, s.b, s.check_id, success=True, at=s.t0 + 2 * SECOND)  # -> UP

    page = await check_logs(client, s.owner, s.check_id, offset=1, limit=1)
    assert (page["total"], page["offset"], page["limit"]) == (3, 1, 1)
    assert [(e["old_status"], e["new_status"]) for e in page["logs"]] == [("UP", "DEGRADED")]
    assert set(page["logs"][0]) == {"id", "changed_at", "old_status", "new_status", "reason", "sources"}

    viewer = await make_person(client, "viewer@example.com", role=Role.VIEWER)
    assert (await check_logs(client, viewer, s.check_id))["total"] == 3
    stranger = await make_person(client, "stranger@example.com", org="elsewhere", role=Role.OWNER)
    response = await client.get(f"/api/checks/{s.check_id}/logs", headers=stranger.headers)
    assert response.status_code == 404
    response = await client.get(f"/api/checks/{s.check_id}/logs", params={"limit": 0}, headers=s.owner.headers)
    assert response.status_code in (400, 422)
    assert (await client.get(f"/api/checks/{s.check_id}/logs")).status_code == 401
