"""POST /api/agents/results: each result judged alone, duplicates change nothing, sizes are capped."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from coordinator.auth.principal import Role
from tests.support import (
    AgentKey,
    Person,
    agent_settings,
    clock_of,
    create_check,
    db_fetch,
    make_person,
    probe_result,
    register_agent,
    run_jobs,
)

pytestmark = pytest.mark.asyncio


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Any:
    return agent_settings(database_url, tmp_path)


async def _setup(client: Any) -> tuple[Person, AgentKey, int]:
    admin = await make_person(client, "admin@example.com", role=Role.OWNER)
    agent = await register_agent(client, admin)
    check_id = await create_check(client, admin, assigned_agent_ids=[agent.id])
    return admin, agent, check_id


async def _post(client: Any, agent: AgentKey, results: list[Any]) -> Any:
    return await client.post("/api/agents/results", json={"results": results}, headers=agent.headers)


async def _stored(client: Any) -> list[dict[str, Any]]:
    return await db_fetch(
        client, 'SELECT result_id, "check", source, agent, started_at, received_at, success FROM results'
    )


async def test_results_are_stored_with_the_source_and_receive_time_the_server_decides(client: Any) -> None:
    _, agent, check_id = await _setup(client)
    now = clock_of(client).freeze()
    started = now - datetime.timedelta(seconds=42)
    results = [probe_result(check_id, started_at=started, source="geo:EU-PL") for _ in range(3)]

    response = await _post(client, agent, results)

    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    rows = await _stored(client)
    assert sorted(r["result_id"] for r in rows) == sorted(r["result_id"] for r in results)
    for row in rows:
        assert row["source"] == f"agent:{agent.id}"  # the agent's own "source" is ignored
        assert row["agent"] == agent.id
        assert row["check"] == check_id
        assert _utc(row["started_at"]) == started
        assert _utc(row["received_at"]) == now


async def test_duplicates_inside_a_batch_and_across_batches_change_nothing(client: Any) -> None:
    _, agent, check_id = await _setup(client)
    a, b, c = (probe_result(check_id) for _ in range(3))

    first = await _post(client, agent, [a, a, b])
    changed_a = dict(a, success=False)
    second = await _post(client, agent, [changed_a, b, c])

    assert first.json() == {"accepted": 2, "duplicates": 1, "rejected": []}
    assert second.json() == {"accepted": 1, "duplicates": 2, "rejected": []}
    rows = {r["result_id"]: r for r in await _stored(client)}
    assert len(rows) == 3
    assert bool(rows[a["result_id"]]["success"]) is True


async def test_a_uuid_written_differently_is_still_a_duplicate(client: Any) -> None:
    _, agent, check_id = await _setup(client)
    result = probe_result(check_id)
    await _post(client, agent, [result])
    shouting = dict(result, result_id=result["result_id"].upper())
    response = await _post(client, agent, [shouting])
    assert response.json() == {"accepted": 0, "duplicates": 1, "rejected": []}


async def test_a_result_for_a_check_not_assigned_to_the_agent_is_rejected_the_rest_taken(client: Any) -> None:
    admin, agent, check_id = await _setup(client)
    central = await create_check(client, admin, name="central")
    outsider = await make_person(client, "x@example.com", org="globex", role=Role.OWNER)
    foreign_agent = await register_agent(client, outsider)
    foreign = await create_check(client, outsider, assigned_agent_ids=[foreign_agent.id])
    good = probe_result(check_id)
    bad = [probe_result(central), probe_result(foreign), probe_result(999_999)]

    response = await _post(client, agent, [bad[0], good, bad[1], bad[2]])

    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1
    assert body["duplicates"] == 0
    expected = [{"result_id": r["result_id"], "reason": _not_assigned(r["check_id"])} for r in bad]
    assert body["rejected"] == expected
    assert [r["result_id"] for r in await _stored(client)] == [good["result_id"]]


MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({"result_id": "not-a-uuid"}, "result_id: must be a UUID"),
    ({"result_id": 17}, "Expected `str`, got `int` - at `$.result_id`"),
    ({"check_id": "5"}, "Expected `int`, got `str` - at `$.check_id`"),
    ({"check_id": 0}, "check_id: must be a positive check id"),
    ({"success": "yes"}, "Expected `bool`, got `str` - at `$.success`"),
    ({"started_at": "yesterday"}, "Invalid RFC3339 encoded datetime - at `$.started_at`"),
    ({"started_at": "2024-05-01T10:00:00"}, "started_at: must carry a UTC offset (RFC 3339)"),
    ({"response_time_ms": -1}, "response_time_ms: must be a non-negative number"),
    ({"status_code": 42}, "status_code: must be an HTTP status between 100 and 599"),
    ({"details": [1, 2]}, "Expected `object`, got `array` - at `$.details`"),
]


async def test_malformed_results_are_rejected_one_by_one_with_a_reason(client: Any) -> None:
    _, agent, check_id = await _setup(client)
    batch: list[Any] = [dict(probe_result(check_id), **fields) for fields, _ in MALFORMED]
    missing = probe_result(check_id)
    del missing["success"]
    good = probe_result(check_id, details=None, error="x" * 5000)
    batch += [missing, 17, good]

    response = await _post(client, agent, batch)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 1
    reasons = [r["reason"] for r in body["rejected"]]
    expected = [reason for _, reason in MALFORMED]
    expected += ["Object missing required field `success`", "a result must be a JSON object"]
    assert reasons == expected
    labels = [r["result_id"] for r in body["rejected"]]
    assert labels[0] == "not-a-uuid"
    assert labels[1] == ""  # not a string: nothing to name it by
    assert labels[-1] == ""
    rows = await db_fetch(client, "SELECT error, details FROM results")
    assert len(rows[0]["error"]) == 4096
    details = rows[0]["details"]
    assert (json.loads(details) if isinstance(details, str) else details) == {}


async def test_more_than_1000_results_answer_413_and_store_nothing(client: Any) -> None:
    _, agent, check_id = await _setup(client)
    response = await _post(client, agent, [probe_result(check_id) for _ in range(1001)])
    assert response.status_code == 413
    assert response.json()["status_code"] == 413
    assert "at most 1000" in response.json()["detail"]
    assert await _stored(client) == []


async def test_exactly_1000_results_are_taken(client: Any) -> None:
    _, agent, check_id = await _setup(client)
    response = await _post(client, agent, [probe_result(check_id) for _ in range(1000)])
    assert response.json() == {"accepted": 1000, "duplicates": 0, "rejected": []}


async def test_a_body_over_1_mib_answers_413_as_json(client: Any) -> None:
    _, agent, check_id = await _setup(client)
    results = [probe_result(check_id, error="e" * 4000) for _ in range(300)]
    body = json.dumps({"results": results}).encode()
    assert len(body) > 1_048_576

    response = await client.post(
        "/api/agents/results", content=body, headers={**agent.headers, "Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json()["status_code"] == 413
    assert await _stored(client) == []


async def test_a_body_that_is_not_a_batch_answers_400_or_422(client: Any) -> None:
    _, agent, _ = await _setup(client)
    not_json = await client.post(
        "/api/agents/results", content=b"{nope", headers={**agent.headers, "Content-Type": "application/json"}
    )
    not_a_list = await client.post("/api/agents/results", json={"results": "x"}, headers=agent.headers)
    assert not_json.status_code == 400
    assert not_a_list.status_code == 422
    assert not_a_list.json()["errors"][0]["field"] == "results"


async def test_a_result_from_the_future_flags_the_agents_clock_and_keeps_both_times(client: Any) -> None:
    admin, agent, check_id = await _setup(client)
    now = clock_of(client).freeze()
    future = now + datetime.timedelta(minutes=10)

    response = await _post(client, agent, [probe_result(check_id, started_at=future)])

    assert response.json()["accepted"] == 1
    shown = (await client.get(f"/api/agents/{agent.id}", headers=admin.headers)).json()
    assert shown["clock_suspect"] is True
    assert shown["clock_skew_seconds"] == pytest.approx(600)
    row = (await _stored(client))[0]
    assert (_utc(row["started_at"]), _utc(row["received_at"])) == (future, now)


async def test_an_old_result_replayed_from_the_spool_does_not_flag_the_clock(client: Any) -> None:
    admin, agent, check_id = await _setup(client)
    now = clock_of(client).freeze()
    await _post(client, agent, [probe_result(check_id, started_at=now - datetime.timedelta(days=2))])
    shown = (await client.get(f"/api/agents/{agent.id}", headers=admin.headers)).json()
    assert shown["clock_suspect"] is False


async def test_a_geo_agents_results_count_for_its_location(client: Any) -> None:
    root = await make_person(client, "root@example.com", org=None, superadmin=True)
    member = await make_person(client, "member@example.com", role=Role.OWNER)
    agent = await register_agent(client, root, mode="geo", location_id="EU-PL")
    geo_check = await create_check(client, member, geo_monitoring_enabled=True)
    plain = await create_check(client, member, name="plain")

    response = await _post(client, agent, [probe_result(geo_check), probe_result(plain)])

    assert response.json()["accepted"] == 1
    assert response.json()["rejected"][0]["reason"] == _not_assigned(plain)
    rows = await _stored(client)
    assert [(r["source"], r["agent"]) for r in rows] == [("geo:EU-PL", agent.id)]


async def test_results_older_than_the_retention_are_removed_by_the_job(client: Any) -> None:
    _, agent, check_id = await _setup(client)
    clock = clock_of(client)
    now = clock.freeze()
    old, recent = probe_result(check_id), probe_result(check_id)
    clock.freeze(now - datetime.timedelta(days=31))
    await _post(client, agent, [old])
    clock.freeze(now - datetime.timedelta(days=29))
    await _post(client, agent, [recent])

    report = await run_jobs(client, now)

    assert report.results_pruned == 1
    assert [r["result_id"] for r in await _stored(client)] == [recent["result_id"]]


def _not_assigned(check_id: int) -> str:
    return f"check_id: check {check_id} is not assigned to this agent"


def _utc(value: Any) -> datetime.datetime:
    parsed = value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))
    return parsed.astimezone(datetime.timezone.utc)

