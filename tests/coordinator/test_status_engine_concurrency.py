"""A status flips once: twenty writers at one check log, open and publish each real change once."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from pathlib import Path
from typing import Any

import pytest

from coordinator.auth.principal import Role
from coordinator.db import engine as db_engine
from coordinator.events.bus import EventBus
from coordinator.status import engine as status_engine
from coordinator.status.engine import apply_results
from shared.wire import ProbeResult, Status
from tests.support import (
    AgentKey,
    agent_settings,
    bus_of,
    check_logs,
    clock_of,
    create_check,
    db_fetch,
    engine_of,
    heartbeat,
    in_app,
    make_person,
    probe_result,
    register_agent,
)

pytestmark = pytest.mark.asyncio

WRITERS = 20


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Any:
    return agent_settings(database_url, tmp_path)


async def _twenty_agents_on_one_check(client: Any) -> tuple[Any, list[AgentKey], int]:
    owner = await make_person(client, "owner@example.com", role=Role.OWNER)
    agents = [await register_agent(client, owner, name=f"probe-{n}") for n in range(WRITERS)]
    check_id = await create_check(
        client,
        owner,
        assigned_agent_ids=[a.id for a in agents],
        # Every source critical: the first failure stored turns the check DOWN, so each burst below
        # is exactly one real change however the writers interleave.
        check_source_critical={f"agent:{a.id}": True for a in agents},
    )
    clock_of(client).freeze()
    for agent in agents:
        await heartbeat(client, agent)
    return owner, agents, check_id


async def _burst(client: Any, agents: list[AgentKey], check_id: int, *, success: bool) -> None:
    at = clock_of(client).now()

    async def post(agent: AgentKey) -> None:
        result = probe_result(check_id, started_at=at, success=success)
        response = await client.post("/api/agents/results", json={"results": [result]}, headers=agent.headers)
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1

    await asyncio.gather(*(post(agent) for agent in agents))


async def test_twenty_concurrent_batches_log_open_and_publish_each_change_once(client: Any) -> None:
    owner, agents, check_id = await _twenty_agents_on_one_check(client)

    with bus_of(client).subscribe(["status.change"]) as events:
        await _burst(client, agents, check_id, success=True)
        await _burst(client, agents, check_id, success=False)
        published = events.pending()

    logs = (await check_logs(client, owner, check_id))["logs"]
    assert [(e["old_status"], e["new_status"]) for e in reversed(logs)] == [("UNKNOWN", "UP"), ("UP", "DOWN")]
    assert [(e.payload["old_status"], e.payload["new_status"]) for e in published] == [
        ("UNKNOWN", "UP"),
        ("UP", "DOWN"),
    ]
    assert [e.payload["log_id"] for e in published] == [e["id"] for e in reversed(logs)]
    incidents = await db_fetch(client, 'SELECT id, ended_at FROM incidents WHERE "check" = {}', check_id)
    assert len(incidents) == 1
    assert incidents[0]["ended_at"] is None
    check = (await client.get(f"/api/checks/{check_id}", headers=owner.headers)).json()
    assert check["status"] == "DOWN"
    assert set(check["agent_location_statuses"].values()) == {"DOWN"}, "the last writer saw every source"
    states = await db_fetch(client, 'SELECT consecutive_failures FROM source_states WHERE "check" = {}', check_id)
    assert sorted(int(r["consecutive_failures"]) for r in states) == [1] * WRITERS


async def test_twenty_writers_on_their_own_connections_flip_the_status_once(client: Any, database_url: str) -> None:
    """apply_results straight from twenty engines (twenty connections), no HTTP in between."""
    owner, agents, check_id = await _twenty_agents_on_one_check(client)
    now = clock_of(client).now()
    engines = [db_engine.make_engine(database_url) for _ in agents]
    bus = EventBus()

    async def write(engine: Any, agent: AgentKey, success: bool) -> None:
        result = ProbeResult(
            result_id=str(uuid.uuid4()), check_id=check_id, started_at=now, success=success, response_time_ms=5.0
        )
        await apply_results(engine, f"agent:{agent.id}", agent.id, [result], now, bus=bus)

    try:
        with bus.subscribe(["status.change"]) as events:
            for success in (True, False):
                await asyncio.gather(*(write(e, a, success) for e, a in zip(engines, agents, strict=True)))
                now += datetime.timedelta(seconds=1)
            published = events.pending()
    finally:
        for engine in engines:
            await db_engine.stop(engine)  # closes their pooled connections (and threads)

    logs = (await check_logs(client, owner, check_id))["logs"]
    assert logs[0]["reason"].startswith("critical source")
    assert [(e["old_status"], e["new_status"]) for e in reversed(logs)] == [("UNKNOWN", "UP"), ("UP", "DOWN")]
    assert [e.payload["log_id"] for e in published] == [e["id"] for e in reversed(logs)]
    assert len(await db_fetch(client, 'SELECT id FROM incidents WHERE "check" = {}', check_id)) == 1


async def test_a_writer_whose_view_is_stale_logs_only_what_it_actually_flipped(client: Any) -> None:
    """The compare-and-set without the row lock: a writer that read UNKNOWN while another flipped it."""
    owner, agents, check_id = await _twenty_agents_on_one_check(client)
    engine = engine_of(client)
    now = clock_of(client).now()
    stale = (await in_app(client, status_engine._lock_checks, engine, [check_id]))[check_id]
    assert stale.status == "UNKNOWN"
    sources = {f"agent:{a.id}": Status.UP for a in agents}

    # Someone else flipped it to UP first: computing UP too, the stale writer has nothing to log.
    await db_fetch(client, "UPDATE checks SET status = 'UP' WHERE id = {}", check_id)
    assert await in_app(client, status_engine._settle, engine, stale, sources, now) is None
    # Someone else flipped it to DEGRADED: the change logged is DEGRADED -> UP, not UNKNOWN -> UP.
    await db_fetch(client, "UPDATE checks SET status = 'DEGRADED' WHERE id = {}", check_id)
    change = await in_app(client, status_engine._settle, engine, stale, sources, now)
    assert change is not None
    assert (change.old_status, change.new_status) == ("DEGRADED", "UP")
    logs = (await check_logs(client, owner, check_id))["logs"]
    assert [(e["old_status"], e["new_status"]) for e in logs] == [("DEGRADED", "UP")]
