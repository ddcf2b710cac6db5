"""Geo checks run on exactly one agent per location, and only a lost agent's checks move."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from coordinator.agents import geo
from coordinator.auth.principal import Role
from tests.support import (
    AgentKey,
    agent_check_ids,
    agent_settings,
    clock_of,
    create_check,
    heartbeat,
    make_person,
    register_agent,
    run_jobs,
)

GEO_CHECKS = 30


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Any:
    return agent_settings(database_url, tmp_path)


async def _assignments(client: Any, agents: list[AgentKey]) -> dict[int, set[int]]:
    return {agent.id: set(await agent_check_ids(client, agent)) for agent in agents}


def _assert_one_agent_per_check(assigned: dict[int, set[int]], checks: set[int]) -> None:
    runs = [check for mine in assigned.values() for check in mine]
    assert sorted(runs) == sorted(checks), "every geo check runs exactly once in the location"


async def test_each_geo_check_runs_on_one_agent_per_location_and_only_a_lost_agents_checks_move(
    client: Any,
) -> None:
    root = await make_person(client, "root@example.com", org=None, superadmin=True)
    owner = await make_person(client, "owner@example.com", role=Role.OWNER)
    checks = {
        await create_check(client, owner, name=f"g{n}", geo_monitoring_enabled=True)
        for n in range(GEO_CHECKS)
    }
    await create_check(client, owner, name="paused", geo_monitoring_enabled=True, is_active=False)
    await create_check(client, owner, name="central only")
    warsaw = [
        await register_agent(client, root, name=f"waw-{n}", mode="geo", location_id="EU-PL") for n in range(3)
    ]
    frankfurt = [
        await register_agent(client, root, name=f"fra-{n}", mode="geo", location_id="EU-DE") for n in range(2)
    ]
    clock = clock_of(client)
    t0 = clock.freeze()
    for agent in warsaw + frankfurt:
        await heartbeat(client, agent)

    before_pl = await _assignments(client, warsaw)
    before_de = await _assignments(client, frankfurt)
    _assert_one_agent_per_check(before_pl, checks)
    _assert_one_agent_per_check(before_de, checks)
    assert all(before_pl.values()), "with 30 checks every Warsaw agent has a share"

    # The Warsaw agent with the most checks stops heartbeating; the others go on.
    lost = max(warsaw, key=lambda a: len(before_pl[a.id]))
    staying = [a for a in warsaw if a is not lost]
    etags_before = {a.id: (await heartbeat(client, a))["checks_etag"] for a in staying}
    clock.freeze(t0 + datetime.timedelta(seconds=60))
    for agent in staying + frankfurt:
        await heartbeat(client, agent)
    clock.freeze(t0 + datetime.timedelta(seconds=100))  # lost: 100 s silent > 3 x 30 s
    report = await run_jobs(client, clock.now())

    assert report.status_changes == [(lost.id, "offline")]
    during_pl = await _assignments(client, staying)
    assert await agent_check_ids(client, lost) == []
    _assert_one_agent_per_check(during_pl, checks)
    for agent in staying:
        gained = during_pl[agent.id] - before_pl[agent.id]
        assert before_pl[agent.id] <= during_pl[agent.id], "a staying agent keeps every check it had"
        assert gained <= before_pl[lost.id], "it gains only checks of the lost agent"
    assert await _assignments(client, frankfurt) == before_de, "another location is untouched"
    etags_during = {a.id: (await heartbeat(client, a))["checks_etag"] for a in staying}
    assert all(
        etags_during[a.id] != etags_before[a.id] for a in staying if during_pl[a.id] != before_pl[a.id]
    )
    counts = (await client.get("/api/agents/geo-locations", headers=root.headers)).json()
    assert {c["id"]: c["agents_online"] for c in counts if c["id"] in ("EU-PL", "EU-DE")} == {
        "EU-PL": 2,
        "EU-DE": 2,
    }

    # It comes back: exactly its checks return to it.
    clock.freeze(t0 + datetime.timedelta(seconds=110))
    await heartbeat(client, lost)
    assert await _assignments(client, warsaw) == before_pl
    assert await _assignments(client, frankfurt) == before_de


async def test_a_geo_agent_that_never_heartbeated_runs_nothing(client: Any) -> None:
    root = await make_person(client, "root@example.com", org=None, superadmin=True)
    owner = await make_person(client, "owner@example.com", role=Role.OWNER)
    await create_check(client, owner, geo_monitoring_enabled=True)
    agent = await register_agent(client, root, mode="geo", location_id="AP-SG")
    assert await agent_check_ids(client, agent) == []
    await heartbeat(client, agent)
    assert len(await agent_check_ids(client, agent)) == 1


def test_removing_an_agent_that_was_not_chosen_changes_no_choice() -> None:
    agents = [3, 8, 21, 34, 55]
    for check_id in range(1, 500):
        chosen = geo.choose(agents, check_id)
        for gone in agents:
            remaining = [a for a in agents if a != gone]
            if gone != chosen:
                assert geo.choose(remaining, check_id) == chosen
            else:
                assert geo.choose(remaining, check_id) != chosen


def test_the_choice_does_not_depend_on_order_and_spreads_the_checks() -> None:
    agents = [1, 2, 3]
    shares = {a: 0 for a in agents}
    for check_id in range(1, 3001):
        chosen = geo.choose(agents, check_id)
        assert chosen == geo.choose(list(reversed(agents)), check_id)
        assert chosen is not None
        shares[chosen] += 1
    assert all(800 < share < 1200 for share in shares.values()), shares
    assert geo.choose([], 1) is None
