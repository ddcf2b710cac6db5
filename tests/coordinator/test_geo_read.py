"""Reading statuses back: rollups, geo-summary, geo-timeseries and check stats, on both engines.

Every expected number below is worked out by hand from the results the test writes, at times
fixed relative to NOW (a future instant, so that the app's own background rounds, which run on
the real clock, leave these rows alone).
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from pathlib import Path
from typing import Any

import pytest

from coordinator.auth.principal import Role
from coordinator.geo import histogram
from coordinator.geo.rollups import RollupJob
from tests.support import (
    Person,
    agent_settings,
    clock_of,
    create_check,
    db_fetch,
    in_app,
    insert_agent,
    make_person,
)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2030, 1, 2, tzinfo=UTC)
MIN = datetime.timedelta(minutes=1)
LATER = NOW + datetime.timedelta(hours=1)  # when the rollup job runs: every result has settled


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Any:
    return agent_settings(database_url, tmp_path)


def rollups_of(client: Any) -> RollupJob:
    job: RollupJob = client.app.state["rollups"]
    return job


async def roll(client: Any, at: datetime.datetime = LATER) -> Any:
    return await in_app(client, rollups_of(client).run_once, at)


async def add_result(
    client: Any,
    check_id: int,
    source: str,
    started_at: datetime.datetime,
    ms: float | None,
    *,
    success: bool = True,
    agent: int | None = None,
    error: str | None = None,
) -> None:
    await db_fetch(
        client,
        'INSERT INTO results (result_id, "check", source, agent, started_at, received_at, success, '
        "response_time_ms, status_code, error, details) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        str(uuid.uuid4()),
        check_id,
        source,
        agent,
        started_at,
        started_at + datetime.timedelta(seconds=2),
        success,
        ms,
        200 if success else None,
        error,
        "{}",
    )


async def add_state(client: Any, check_id: int, source: str, agent: int, status: str, **fields: Any) -> None:
    values = {"last_result_at": None, "last_response_time_ms": None, "last_error": None, **fields}
    await db_fetch(
        client,
        'INSERT INTO source_states ("check", source, agent, status, last_result_at, last_response_time_ms, '
        "last_error, updated_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
        check_id,
        source,
        agent,
        status,
        values["last_result_at"],
        values["last_response_time_ms"],
        values["last_error"],
        NOW,
    )


class World:
    def __init__(self, owner: Person, check_id: int, other_check_id: int, eu_agent: int, us_agent: int) -> None:
        self.owner = owner
        self.check_id = check_id
        self.other_check_id = other_check_id
        self.eu_agent = eu_agent
        self.us_agent = us_agent


async def _world(client: Any) -> World:
    """One geo check with two reporting sources (and one critical source that never reported).

    geo:EU-PL, 24 h: 100 ms, 200 ms, a failure, 400 ms -> 4 results, 75 % up, mean 233.33, p95 400
              older: 80 ms at exactly NOW - 24 h (outside the summary's window), 1000 ms at NOW - 25 h
    geo:US-EAST, 24 h: 50 ms, 70 ms -> 2 results, 100 % up, mean 60, p95 70
    """
    clock_of(client).freeze(NOW)
    owner = await make_person(client, "owner@example.com", role=Role.OWNER)
    eu_agent = await insert_agent(client, None, mode="geo", location="EU-PL")
    us_agent = await insert_agent(client, None, mode="geo", location="US-EAST")
    check_id = await create_check(
        client,
        owner,
        geo_monitoring_enabled=True,
        check_source_critical={"geo:EU-PL": True, "geo:AP-SG": True},
    )
    other_check_id = await create_check(client, owner, name="other", geo_monitoring_enabled=True)
    eu, us = "geo:EU-PL", "geo:US-EAST"
    await add_result(client, check_id, eu, NOW - 10 * MIN, 100.0, agent=eu_agent)
    await add_result(client, check_id, eu, NOW - 9 * MIN, 200.0, agent=eu_agent)
    await add_result(client, check_id, eu, NOW - 8 * MIN, None, success=False, agent=eu_agent, error="timeout")
    await add_result(client, check_id, eu, NOW - 3 * MIN, 400.0, agent=eu_agent)
    await add_result(client, check_id, eu, NOW - datetime.timedelta(hours=24), 80.0, agent=eu_agent)
    await add_result(client, check_id, eu, NOW - datetime.timedelta(hours=25), 1000.0, agent=eu_agent)
    await add_result(client, check_id, us, NOW - 2 * MIN, 50.0, agent=us_agent)
    await add_result(client, check_id, us, NOW - 1 * MIN, 70.0, agent=us_agent)
    # Another check's results count for nothing here.
    await add_result(client, other_check_id, eu, NOW - 5 * MIN, 9000.0, success=False, agent=eu_agent)
    await add_state(client, check_id, eu, eu_agent, "DOWN", last_result_at=NOW - 3 * MIN, last_response_time_ms=400.0)
    await add_state(
        client, check_id, us, us_agent, "UP", last_result_at=NOW - MIN, last_response_time_ms=70.0, last_error=None
    )
    await db_fetch(client, "UPDATE checks SET status = 'DEGRADED' WHERE id = {}", check_id)
    return World(owner, check_id, other_check_id, eu_agent, us_agent)


def _points(body: dict[str, Any]) -> dict[str, list[tuple[str, int, int, float | None, float | None]]]:
    return {
        s["source"]: [(p["t"], p["count"], p["failures"], p["avg_ms"], p["max_ms"]) for p in s["points"]]
        for s in body["series"]
    }


# --- geo-summary ----------------------------------------------------------------------------------


async def test_geo_summary_reports_each_source_with_its_last_24_hours(client: Any) -> None:
    world = await _world(client)
    response = await client.get(f"/api/agents/checks/{world.check_id}/geo-summary", headers=world.owner.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["check_id"] == world.check_id
    assert body["status"] == "DEGRADED"
    sources = {s["source"]: s for s in body["sources"]}
    assert list(sources) == ["geo:AP-SG", "geo:EU-PL", "geo:US-EAST"]
    assert sources["geo:EU-PL"] == {
        "source": "geo:EU-PL",
        "kind": "geo",
        "location_id": "EU-PL",
        "agent_id": world.eu_agent,
        "status": "DOWN",
        "critical": True,
        "last_result_at": "2030-01-01T23:57:00Z",
        "last_response_time_ms": 400.0,
        "last_error": None,
        "uptime_24h": 75.0,
        "avg_response_time_ms_24h": 233.33,
        "p95_response_time_ms_24h": 400.0,
        "results_24h": 4,
    }
    us = sources["geo:US-EAST"]
    assert (us["status"], us["critical"], us["agent_id"]) == ("UP", False, world.us_agent)
    assert (us["uptime_24h"], us["avg_response_time_ms_24h"], us["p95_response_time_ms_24h"]) == (100.0, 60.0, 70.0)
    assert us["results_24h"] == 2
    # Named critical but never heard from: listed, UNKNOWN, with nothing to count.
    silent = sources["geo:AP-SG"]
    assert (silent["status"], silent["critical"], silent["results_24h"]) == ("UNKNOWN", True, 0)
    assert silent["uptime_24h"] is None
    assert silent["p95_response_time_ms_24h"] is None
    assert silent["last_result_at"] is None


async def test_geo_summary_p95_is_the_nearest_rank_of_raw_results(client: Any) -> None:
    world = await _world(client)
    source = "geo:EU-DE"
    await add_state(client, world.check_id, source, world.eu_agent, "UP")
    for ms in range(1, 41):  # 1 … 40 ms: the 38th smallest (ceil(0.95 * 40)) is 38
        await add_result(client, world.check_id, source, NOW - ms * MIN, float(ms))
    response = await client.get(f"/api/agents/checks/{world.check_id}/geo-summary", headers=world.owner.headers)
    found = {s["source"]: s for s in response.json()["sources"]}[source]
    assert (found["results_24h"], found["p95_response_time_ms_24h"], found["avg_response_time_ms_24h"]) == (
        40,
        38.0,
        20.5,
    )


# --- rollups --------------------------------------------------------------------------------------


async def _rollup_rows(client: Any, check_id: int) -> dict[tuple[str, str], tuple[Any, ...]]:
    rows = await db_fetch(
        client,
        "SELECT source, bucket_start, count, failures, count_ms, sum_ms, max_ms, h_100, h_200, h_400, h_1000 "
        'FROM result_rollups WHERE "check" = {} ORDER BY source, bucket_start',
        check_id,
    )
    out = {}
    for r in rows:
        at = r["bucket_start"]
        at = at if isinstance(at, datetime.datetime) else datetime.datetime.fromisoformat(at)
        key = (r["source"], at.astimezone(UTC).strftime("%m-%d %H:%M"))
        out[key] = (
            r["count"], r["failures"], r["count_ms"], float(r["sum_ms"]), float(r["max_ms"]),
            r["h_100"], r["h_200"], r["h_400"], r["h_1000"],
        )  # fmt: skip
    return out


async def test_rollups_fold_results_into_five_minute_buckets_once(client: Any) -> None:
    world = await _world(client)
    await roll(client)
    expected = {
        ("geo:EU-PL", "12-31 23:00"): (1, 0, 1, 1000.0, 1000.0, 0, 0, 0, 1),
        ("geo:EU-PL", "01-01 00:00"): (1, 0, 1, 80.0, 80.0, 1, 0, 0, 0),
        ("geo:EU-PL", "01-01 23:50"): (3, 1, 2, 300.0, 200.0, 1, 1, 0, 0),
        ("geo:EU-PL", "01-01 23:55"): (1, 0, 1, 400.0, 400.0, 0, 0, 1, 0),
        ("geo:US-EAST", "01-01 23:55"): (2, 0, 2, 120.0, 70.0, 0, 0, 0, 0),
    }
    assert await _rollup_rows(client, world.check_id) == expected
    # A second round finds nothing new and changes nothing.
    await roll(client)
    assert await _rollup_rows(client, world.check_id) == expected
    # A late result lands in a bucket that already exists: its figures are added to it.
    await add_result(client, world.check_id, "geo:EU-PL", NOW - 2 * MIN, 600.0, success=False)
    report = await roll(client)
    assert report.slices == 1
    rows = await _rollup_rows(client, world.check_id)
    assert rows[("geo:EU-PL", "01-01 23:55")] == (2, 1, 2, 1000.0, 600.0, 0, 0, 1, 0)
    assert sum(row[0] for row in rows.values()) == 9
    progress = await db_fetch(client, "SELECT last_id FROM rollup_progress")
    top = await db_fetch(client, "SELECT MAX(id) AS top FROM results")
    assert progress[0]["last_id"] == top[0]["top"]


async def test_rollups_two_coordinators_at_once_count_each_result_once(client: Any) -> None:
    world = await _world(client)
    engine = client.app.state["ctx"].engine
    first, second = RollupJob(engine), RollupJob(engine)
    await asyncio.gather(first.run_once(LATER), second.run_once(LATER))
    rows = await _rollup_rows(client, world.check_id)
    assert sum(row[0] for row in rows.values()) == 8


async def test_rollups_stop_short_of_results_that_may_still_be_committing(client: Any) -> None:
    world = await _world(client)
    # The newest result (largest id) was received at NOW + 2 s: a round any earlier than that
    # (SQLite), or than SETTLE after it (PostgreSQL), must not move the mark past it.
    await add_result(client, world.check_id, "geo:US-EAST", NOW, 90.0)
    newest = (await db_fetch(client, "SELECT MAX(id) AS top FROM results"))[0]["top"]
    report = await roll(client, NOW + datetime.timedelta(seconds=1))
    assert 0 < report.last_id < newest
    rows = await _rollup_rows(client, world.check_id)
    assert sum(row[0] for row in rows.values()) == 8
    report = await roll(client, NOW + datetime.timedelta(seconds=40))
    assert report.last_id == newest
    rows = await _rollup_rows(client, world.check_id)
    assert rows[("geo:US-EAST", "01-02 00:00")] == (1, 0, 1, 90.0, 90.0, 1, 0, 0, 0)


def test_histogram_columns_match_the_migration() -> None:
    from coordinator.db.migrate import available_migrations

    sql = dict(available_migrations("sqlite"))["0004_rollups"]
    for column in histogram.COLUMNS:
        assert f"    {column} INTEGER NOT NULL DEFAULT 0" in sql


def test_histogram_percentile_interpolates_inside_its_bucket() -> None:
    counts = [0] * len(histogram.COLUMNS)
    counts[histogram.COLUMNS.index("h_200")] = 10  # ten results in (150, 200]
    assert histogram.percentile(counts, 0.95, max_ms=190.0) == 190.0  # 150 + 50 * 10/10, capped at the max
    assert histogram.percentile(counts, 0.5, max_ms=190.0) == 175.0  # 150 + 50 * 5/10
    assert histogram.percentile([0] * len(counts), 0.95, max_ms=0.0) is None


# --- geo-timeseries -------------------------------------------------------------------------------


async def test_geo_timeseries_defaults_to_the_last_24_hours_in_5_minute_buckets(client: Any) -> None:
    world = await _world(client)
    await roll(client)
    response = await client.get(f"/api/agents/checks/{world.check_id}/geo-timeseries", headers=world.owner.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["check_id"], body["bucket_seconds"]) == (world.check_id, 300)
    assert (body["from"], body["to"]) == ("2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z")
    assert _points(body) == {
        "geo:EU-PL": [
            ("2030-01-01T00:00:00Z", 1, 0, 80.0, 80.0),
            ("2030-01-01T23:50:00Z", 3, 1, 150.0, 200.0),
            ("2030-01-01T23:55:00Z", 1, 0, 400.0, 400.0),
        ],
        "geo:US-EAST": [("2030-01-01T23:55:00Z", 2, 0, 60.0, 70.0)],
    }


async def test_geo_timeseries_merges_rollups_into_larger_buckets(client: Any) -> None:
    world = await _world(client)
    await roll(client)
    response = await client.get(
        f"/api/agents/checks/{world.check_id}/geo-timeseries",
        params={"from": "2029-12-31T22:30:00Z", "to": "2030-01-02T01:00:00+01:00", "bucket": 3600},
        headers=world.owner.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"], body["bucket_seconds"]) == ("2029-12-31T22:00:00Z", "2030-01-02T00:00:00Z", 3600)
    assert _points(body) == {
        "geo:EU-PL": [
            ("2029-12-31T23:00:00Z", 1, 0, 1000.0, 1000.0),
            ("2030-01-01T00:00:00Z", 1, 0, 80.0, 80.0),
            ("2030-01-01T23:00:00Z", 4, 1, 233.33, 400.0),
        ],
        "geo:US-EAST": [("2030-01-01T23:00:00Z", 2, 0, 60.0, 70.0)],
    }


async def test_geo_timeseries_reads_rollups_not_raw_results(client: Any) -> None:
    world = await _world(client)
    response = await client.get(f"/api/agents/checks/{world.check_id}/geo-timeseries", headers=world.owner.headers)
    assert response.json()["series"] == []  # nothing rolled up yet


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"from": "2030-01-01"}, "from"),
        ({"to": "2030-01-01T00:00:00"}, "to"),  # no offset
        ({"from": "2030-01-01T00:00:00Z", "to": "2029-12-31T00:00:00Z"}, "from"),
        ({"from": "2030-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, "from"),
        ({"from": "2029-10-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, "from"),  # 92 days
        ({"bucket": "301"}, "bucket"),
        ({"bucket": "0"}, "bucket"),
        ({"bucket": "-300"}, "bucket"),
        ({"bucket": "five"}, "bucket"),
    ],
)
async def test_geo_timeseries_rejects_bad_ranges_naming_the_field(
    client: Any, params: dict[str, str], field: str
) -> None:
    clock_of(client).freeze(NOW)
    owner = await make_person(client, "owner@example.com", role=Role.OWNER)
    check_id = await create_check(client, owner, geo_monitoring_enabled=True)
    response = await client.get(f"/api/agents/checks/{check_id}/geo-timeseries", params=params, headers=owner.headers)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_geo_timeseries_accepts_exactly_90_days_and_an_unencoded_plus(client: Any) -> None:
    clock_of(client).freeze(NOW)
    owner = await make_person(client, "owner@example.com", role=Role.OWNER)
    check_id = await create_check(client, owner, geo_monitoring_enabled=True)
    url = f"/api/agents/checks/{check_id}/geo-timeseries"
    response = await client.get(
        url, params={"from": "2029-10-03T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    response = await client.get(f"{url}?to=2030-01-01T02:00:00+02:00", headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["to"] == "2030-01-01T00:00:00Z"


# --- stats ----------------------------------------------------------------------------------------


async def test_check_stats_cover_24h_7d_and_30d_from_rollups(client: Any) -> None:
    world = await _world(client)
    await roll(client)
    response = await client.get(f"/api/checks/{world.check_id}/stats", headers=world.owner.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["check_id"], body["status"], body["p95_method"]) == (world.check_id, "DEGRADED", "histogram")
    periods = {p["period"]: p for p in body["periods"]}
    assert list(periods) == ["24h", "7d", "30d"]
    day = periods["24h"]
    assert (day["from"], day["to"]) == ("2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z")

    def figures(f: dict[str, Any]) -> tuple[Any, ...]:
        return (f["results"], f["failures"], f["uptime_percent"], f["avg_response_time_ms"], f["p95_response_time_ms"])

    # 24 h holds the buckets that start within it: the 80 ms result at NOW - 24 h is one of them.
    # EU-PL p95: 4 times (80, 100 | 200 | 400); the 4th is in (300, 400] -> 400.
    # US-EAST p95: the 2nd of (50 | 70) is in (50, 75] -> 75, capped at the largest seen, 70.
    assert figures(day["overall"]) == (7, 1, 85.714, 150.0, 400.0)
    assert {s["source"]: figures(s) for s in day["sources"]} == {
        "geo:EU-PL": (5, 1, 80.0, 195.0, 400.0),
        "geo:US-EAST": (2, 0, 100.0, 60.0, 70.0),
    }
    # 7 d adds the 1000 ms result of NOW - 25 h: the 5th of 5 times is in (750, 1000] -> 1000.
    for name in ("7d", "30d"):
        assert {s["source"]: figures(s) for s in periods[name]["sources"]}["geo:EU-PL"] == (6, 1, 83.333, 356.0, 1000.0)
        assert figures(periods[name]["overall"]) == (8, 1, 87.5, 271.43, 1000.0)


# --- who may read ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/agents/checks/{}/geo-summary", "/api/agents/checks/{}/geo-timeseries",
                                  "/api/checks/{}/stats"])  # fmt: skip
async def test_read_back_is_for_viewers_of_the_check_and_404_for_others(client: Any, path: str) -> None:
    world = await _world(client)
    viewer = await make_person(client, "viewer@example.com", org="acme", role=Role.VIEWER)
    stranger = await make_person(client, "stranger@example.com", org="globex", role=Role.OWNER)
    url = path.format(world.check_id)
    assert (await client.get(url, headers=viewer.headers)).status_code == 200
    response = await client.get(url, headers=stranger.headers)
    assert response.status_code == 404, response.text
    # Even a malformed range answers 404 to someone who may not see the check.
    assert (await client.get(url, params={"bucket": "7"}, headers=stranger.headers)).status_code == 404
    assert (await client.get(path.format(999_999), headers=viewer.headers)).status_code == 404
    assert (await client.get(url)).status_code == 401


async def test_deleting_a_check_deletes_its_rollups(client: Any) -> None:
    world = await _world(client)
    await roll(client)
    response = await client.delete(f"/api/checks/{world.check_id}", headers=world.owner.headers)
    assert response.status_code == 204
    rows = await db_fetch(client, 'SELECT COUNT(*) AS n FROM result_rollups WHERE "check" = {}', world.check_id)
    assert rows[0]["n"] == 0
