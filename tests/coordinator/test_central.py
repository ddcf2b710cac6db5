"""Central execution: checks that no agent runs are probed by the coordinator, as source `central`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from litestar import Litestar

from coordinator.app import create_app
from coordinator.auth.principal import Role
from coordinator.central.runner import is_due, next_run_after, offset_of
from coordinator.db.sql import fetch
from coordinator.settings import Settings
from tests.support import Person, agent_settings, create_check, db_fetch, make_person, register_agent

T0 = datetime.datetime(2030, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
MINUTE = datetime.timedelta(seconds=60)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Loopback targets are allowed here; the refusal test starts a second, stricter coordinator.
    result: Settings = agent_settings(database_url, tmp_path, central_allow_private=True)
    return result


class Target:
    """A local HTTP server that counts requests and the most it served at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.requests = 0
        self.running = 0
        self.most_at_once = 0

    async def handle(self, _: web.Request) -> web.Response:
        self.requests += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.delay)
            return web.Response(text="ok")
        finally:
            self.running -= 1


@contextlib.asynccontextmanager
async def serving(target: Target) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/", target.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def another_coordinator(settings: Settings) -> AsyncIterator[Litestar]:
    """A second coordinator on the same database, started in this task."""
    app = create_app(settings)
    async with app.lifespan():
        yield app


def http_client(app: Litestar) -> httpx.AsyncClient:
    """A client on `app`, carrying it as `.app` the way the `client` fixture does."""
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    http = httpx.AsyncClient(transport=transport, base_url="http://hc.local")
    http.app = app  # type: ignore[attr-defined]
    return http


def runner_of(app: Litestar) -> Any:
    return app.state["central"]


async def _owner(client: Any) -> Person:
    return await make_person(client, "owner@example.com", role=Role.OWNER)


async def _results(client: Any) -> list[dict[str, Any]]:
    return await db_fetch(
        client, 'SELECT "check", source, agent, success, status_code, error, received_at FROM results ORDER BY id'
    )


async def test_a_check_nobody_runs_is_probed_by_the_coordinator_as_central(client: Any) -> None:
    owner = await _owner(client)
    target = Target()
    async with serving(target) as url:
        check_id = await create_check(client, owner, url=url, interval=60)
        runner = runner_of(client.app)

        first = await runner.run_once(T0)
        again = await runner.run_once(T0 + datetime.timedelta(seconds=1))
        later = await runner.run_once(T0 + 2 * MINUTE)

    assert [r.check_id for r in first] == [check_id]
    assert again == []  # not due again within its interval
    assert [r.check_id for r in later] == [check_id]
    assert target.requests == 2
    rows = await _results(client)
    assert len(rows) == 2
    for row in rows:
        assert row["check"] == check_id
        assert row["source"] == "central"
        assert row["agent"] is None
        assert row["success"] in (True, 1)
        assert row["status_code"] == 200
        assert row["error"] is None


async def test_without_allow_private_a_loopback_target_is_refused_and_the_coordinator_goes_on(
    client: Any, settings: Settings
) -> None:
    owner = await _owner(client)
    target = Target()
    strict = dataclasses.replace(settings, central_allow_private=False)
    async with serving(target) as url, another_coordinator(strict) as app:
        check_id = await create_check(client, owner, url=url, interval=60)

        first = await runner_of(app).run_once(T0)
        second = await runner_of(app).run_once(T0 + MINUTE)
        async with http_client(app) as http:
            health = await http.get("/healthz")

    assert target.requests == 0  # refused before connecting
    assert [r.check_id for r in first + second] == [check_id, check_id]
    rows = await _results(client)
    assert len(rows) == 2
    for row in rows:
        assert row["source"] == "central"
        assert row["success"] in (False, 0)
        assert "address 127.0.0.1 refused: loopback" in row["error"]
    assert health.status_code == 200


async def test_only_active_probe_checks_without_agents_or_geo_run_centrally(client: Any) -> None:
    owner = await _owner(client)
    agent = await register_agent(client, owner)
    target = Target()
    async with serving(target) as url:
        central = await create_check(client, owner, name="central", url=url)
        await create_check(client, owner, name="assigned", url=url, assigned_agent_ids=[agent.id])
        await create_check(client, owner, name="geo", url=url, geo_monitoring_enabled=True)
        await create_check(client, owner, name="paused", url=url, is_active=False)
        await create_check(client, owner, name="job", type="heartbeat")

        results = await runner_of(client.app).run_once(T0)

    assert [r.check_id for r in results] == [central]
    assert {row["check"] for row in await _results(client)} == {central}
    assert target.requests == 1


async def test_a_check_paused_or_given_an_agent_stops_running_centrally(client: Any) -> None:
    owner = await _owner(client)
    agent = await register_agent(client, owner)
    target = Target()
    async with serving(target) as url:
        paused = await create_check(client, owner, name="paused", url=url)
        assigned = await create_check(client, owner, name="assigned", url=url)
        runner = runner_of(client.app)
        assert len(await runner.run_once(T0)) == 2

        response = await client.patch(f"/api/checks/{paused}", json={"is_active": False}, headers=owner.headers)
        assert response.status_code == 200, response.text
        response = await client.patch(
            f"/api/checks/{assigned}", json={"assigned_agent_ids": [agent.id]}, headers=owner.headers
        )
        assert response.status_code == 200, response.text
        later = await runner.run_once(T0 + 2 * MINUTE)

    assert later == []
    assert target.requests == 2


async def test_probes_run_at_most_central_concurrency_at_once(database_url: str, tmp_path: Path) -> None:
    settings = agent_settings(database_url, tmp_path, central_allow_private=True, central_concurrency=2)
    target = Target(delay=0.2)
    async with serving(target) as url, another_coordinator(settings) as app:
        async with http_client(app) as http:
            owner = await _owner(http)
            for i in range(5):
                await create_check(http, owner, name=f"site {i}", url=url)
        results = await runner_of(app).run_once(T0)

    assert len(results) == 5
    assert target.requests == 5
    assert target.most_at_once == 2


async def test_stopping_cuts_a_probe_short_and_stores_nothing(client: Any) -> None:
    owner = await _owner(client)
    target = Target(delay=30)
    async with serving(target) as url:
        await create_check(client, owner, url=url)
        runner = runner_of(client.app)
        run = asyncio.create_task(runner.run_once(T0))
        for _ in range(200):
            if target.running:
                break
            await asyncio.sleep(0.02)
        assert target.running == 1

        await asyncio.wait_for(runner.stop(), timeout=5)

    with pytest.raises(asyncio.CancelledError):
        await run
    assert await _results(client) == []


async def test_two_coordinators_on_one_database_run_each_due_check_once(client: Any, settings: Settings) -> None:
    owner = await _owner(client)
    target = Target(delay=0.05)
    async with serving(target) as url, another_coordinator(settings) as other:
        checks = [await create_check(client, owner, name=f"site {i}", url=url) for i in range(8)]
        mine, theirs = runner_of(client.app), runner_of(other)

        for now in (T0, T0 + 2 * MINUTE):
            first, second = await asyncio.gather(mine.run_once(now), theirs.run_once(now))
            assert len(first) + len(second) == len(checks)

        rows = await fetch(
            other.state["ctx"].engine, 'SELECT "check", COUNT(*) AS n FROM results GROUP BY "check" ORDER BY "check"'
        )

    assert [(row["check"], int(row["n"])) for row in rows] == [(check, 2) for check in checks]
    assert target.requests == 2 * len(checks)


def test_each_check_has_a_stable_place_within_its_interval() -> None:
    offsets = {offset_of(check_id, 60) for check_id in range(1, 201)}
    assert all(0 <= offset < 60 for offset in offsets)
    assert len(offsets) > 30  # spread out, not herded
    assert offset_of(17, 60) == offset_of(17, 60)

    now = T0 + datetime.timedelta(seconds=12.5)
    following = next_run_after(17, 60, now)
    assert now < following <= now + MINUTE
    assert following.microsecond == 0
    assert int(following.timestamp()) % 60 == offset_of(17, 60)
    assert next_run_after(17, 60, following) == following + MINUTE


def test_a_run_is_due_when_never_run_when_its_time_came_or_when_planned_too_far_ahead() -> None:
    assert is_due(None, 60, T0)
    assert is_due(T0, 60, T0)
    assert not is_due(T0 + MINUTE, 60, T0)
    # The interval was shortened from an hour to a minute: the old plan is dropped.
    assert is_due(T0 + datetime.timedelta(minutes=30), 60, T0)


def test_central_settings_come_from_the_environment() -> None:
    from coordinator.settings import SettingsError, settings_from_env

    env = {"HC_DATABASE_URL": "sqlite:///hc.db"}
    default = settings_from_env(env)
    assert (default.central_allow_private, default.central_concurrency) == (False, 50)
    tuned = settings_from_env(
        {
            **env,
            "HC_CENTRAL_ALLOW_PRIVATE": "on",
            "HC_CENTRAL_CONCURRENCY": "5",
            "HC_CENTRAL_JOBS_INTERVAL_SECONDS": "3",
        }
    )
    assert (tuned.central_allow_private, tuned.central_concurrency, tuned.central_jobs_interval_seconds) == (
        True,
        5,
        3.0,
    )
    with pytest.raises(SettingsError, match="HC_CENTRAL_CONCURRENCY"):
        settings_from_env({**env, "HC_CENTRAL_CONCURRENCY": "0"})
