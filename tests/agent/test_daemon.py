"""agent.daemon against a coordinator mocked with respx: spool first, acks, outages, 413, 401, stop.

The probes are fakes that make a result at once; the schedule runs on real time scaled down, so an
interval of 5 s lasts 100 ms. The coordinator is the outside world here: `FakeCoordinator` answers
the agent endpoints of CONTRACT §3 the way the real one does (duplicates by result_id, rejections
per result) and records what it got.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import respx

from agent.client import RetryPolicy
from agent.config import AgentSettings, Credentials, load_credentials, save_credentials
from agent.daemon import Daemon, DaemonError, NotRegistered
from agent.spool import Spool
from shared.wire import CheckSpec, CheckType, ProbeResult

URL = "http://coordinator.test"
KEY = "agk_first_key_0000000000"
NEW_KEY = "agk_second_key_000000000"
FAST = 0.02  # time_scale: an interval of 5 s lasts 100 ms
QUICK_BACKOFF = RetryPolicy(attempts=0, initial_wait=0.01, max_wait=0.05)


def spec(check_id: int, interval: int = 5) -> CheckSpec:
    return CheckSpec(id=check_id, type=CheckType.UPTIME, interval=interval, timeout=1, url=f"http://t/{check_id}")


def result_of(check_id: int, *, success: bool = True, started_at: datetime | None = None) -> ProbeResult:
    return ProbeResult(
        result_id=str(uuid.uuid4()),
        check_id=check_id,
        started_at=started_at or datetime.now(timezone.utc),
        success=success,
        response_time_ms=1.0,
    )


class Prober:
    """The fake probe: a result at once, successful unless `outcomes` says otherwise."""

    def __init__(self, outcomes: list[bool] | None = None) -> None:
        self.produced: list[ProbeResult] = []
        self._outcomes = iter(outcomes or [])

    async def __call__(self, check: CheckSpec) -> ProbeResult:
        result = result_of(check.id, success=next(self._outcomes, True))
        self.produced.append(result)
        return result

    @property
    def ids(self) -> set[str]:
        return {r.result_id for r in self.produced}


class FakeCoordinator:
    """The agent endpoints, answered from memory."""

    def __init__(self, router: respx.MockRouter, checks: list[CheckSpec]) -> None:
        self.checks = checks
        self.etag = '"etag-1"'
        self.keys = {KEY}  # the keys it accepts
        self.heartbeats: list[dict[str, Any]] = []
        self.heartbeat_keys: list[str] = []
        self.posts: list[list[dict[str, Any]]] = []  # the batches it answered 200 for
        self.accepted: set[str] = set()
        self.duplicates = 0
        self.unavailable = 0  # answer this many result posts with 503 first
        self.reject_checks: set[int] = set()
        self.max_batch: int | None = None  # 413 past this many results
        self.too_large: set[str] = set()  # result_ids that make any batch 413
        self.on_post: Callable[[list[dict[str, Any]]], None] | None = None
        self.on_refused: Callable[[], None] | None = None
        router.post(f"{URL}/api/agents/heartbeat").mock(side_effect=self._heartbeat)
        router.get(f"{URL}/api/agents/checks").mock(side_effect=self._checks)
        router.post(f"{URL}/api/agents/results").mock(side_effect=self._results)

    def _refused(self, request: httpx.Request) -> httpx.Response | None:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        if key not in self.keys:
            if self.on_refused is not None:
                self.on_refused()
            return httpx.Response(401, json={"status_code": 401, "detail": "unknown agent key"})
        return None

    def _heartbeat(self, request: httpx.Request) -> httpx.Response:
        self.heartbeat_keys.append(request.headers.get("authorization", ""))
        if (refused := self._refused(request)) is not None:
            return refused
        self.heartbeats.append(json.loads(request.content))
        now = datetime.now(timezone.utc).isoformat()
        return httpx.Response(200, json={"server_time": now, "checks_etag": self.etag, "heartbeat_interval": 1})

    def _checks(self, request: httpx.Request) -> httpx.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        if request.headers.get("if-none-match") == self.etag:
            return httpx.Response(304, headers={"ETag": self.etag})
        body = {"checks": msgspec.to_builtins(self.checks)}
        return httpx.Response(200, json=body, headers={"ETag": self.etag})

    def _results(self, request: httpx.Request) -> httpx.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        if self.unavailable:
            self.unavailable -= 1
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"detail": "restarting"})
        results = json.loads(request.content)["results"]
        too_many = self.max_batch is not None and len(results) > self.max_batch
        if too_many or any(r["result_id"] in self.too_large for r in results):
            return httpx.Response(413, json={"status_code": 413, "detail": "request too large"})
        if self.on_post is not None:
            self.on_post(results)
        self.posts.append(results)
        accepted, rejected = 0, []
        for r in results:
            if r["check_id"] in self.reject_checks:
                rejected.append({"result_id": r["result_id"], "reason": "check not assigned to this agent"})
            elif r["result_id"] in self.accepted:
                self.duplicates += 1
            else:
                self.accepted.add(r["result_id"])
                accepted += 1
        return httpx.Response(200, json={"accepted": accepted, "duplicates": 0, "rejected": rejected})

    def posted_ids(self) -> list[str]:
        return [r["result_id"] for batch in self.posts for r in batch]


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def settings(tmp_path: Path) -> AgentSettings:
    save_credentials(tmp_path, Credentials(agent_id=7, api_key=KEY, coordinator_url=URL, heartbeat_interval=1))
    return AgentSettings(state_dir=tmp_path, results_flush_interval=0.05, status_address="")


def daemon_for(settings: AgentSettings, prober: Prober) -> Daemon:
    return Daemon(
        settings, probe=prober, backoff=QUICK_BACKOFF, time_scale=FAST, hostname="probe-test", version="1.2.3"
    )


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the condition did not come true in time")
        await asyncio.sleep(0.01)


async def stop(daemon: Daemon, running: asyncio.Task[None]) -> None:
    daemon.stop()
    await asyncio.wait_for(running, timeout=10)


async def spool_depth(settings: AgentSettings) -> int:
    async with Spool(settings.spool_file, settings.spool_max_age, settings.spool_max_bytes) as spool:
        return await spool.depth()


# --- delivery ------------------------------------------------------------------------------------


async def test_every_result_is_in_the_spool_before_it_is_posted(
    router: respx.MockRouter, settings: AgentSettings
) -> None:
    coordinator = FakeCoordinator(router, [spec(1), spec(2)])
    not_spooled: list[str] = []

    def check_spooled(results: list[dict[str, Any]]) -> None:
        with sqlite3.connect(settings.spool_file) as db:
            spooled = {row[0] for row in db.execute("SELECT result_id FROM results")}
        not_spooled.extend(r["result_id"] for r in results if r["result_id"] not in spooled)

    coordinator.on_post = check_spooled
    prober = Prober()
    daemon = daemon_for(settings, prober)
    running = asyncio.create_task(daemon.run())
    await until(lambda: len(coordinator.accepted) >= 6)
    await stop(daemon, running)

    assert not_spooled == []
    assert coordinator.accepted == prober.ids
    assert await spool_depth(settings) == 0


async def test_accepted_duplicate_and_rejected_results_all_leave_the_spool(
    router: respx.MockRouter, settings: AgentSettings, caplog: pytest.LogCaptureFixture
) -> None:
    coordinator = FakeCoordinator(router, [spec(1), spec(2)])
    coordinator.reject_checks = {2}
    known = result_of(1, started_at=datetime.now(timezone.utc) - timedelta(minutes=5))
    coordinator.accepted.add(known.result_id)  # delivered before a crash, never acked
    async with Spool(settings.spool_file, settings.spool_max_age, settings.spool_max_bytes) as spool:
        await spool.add([known])
    prober = Prober()
    daemon = daemon_for(settings, prober)

    caplog.set_level(logging.WARNING, logger="agent.daemon")
    running = asyncio.create_task(daemon.run())
    await until(lambda: sum(r.check_id == 2 for r in prober.produced) >= 3)
    await stop(daemon, running)

    posted = coordinator.posted_ids()
    assert len(posted) == len(set(posted))  # nothing answered for was sent again
    assert set(posted) == prober.ids | {known.result_id}
    assert coordinator.duplicates == 1
    assert await spool_depth(settings) == 0
    assert "check not assigned to this agent" in caplog.text


async def test_an_outage_loses_nothing_and_the_newest_results_go_first(
    router: respx.MockRouter, settings: AgentSettings
) -> None:
    coordinator = FakeCoordinator(router, [spec(1), spec(2), spec(3)])
    coordinator.unavailable = 8
    prober = Prober()
    daemon = daemon_for(settings, prober)
    running = asyncio.create_task(daemon.run())
    await until(lambda: coordinator.unavailable == 0 and len(coordinator.accepted) >= 10)
    await stop(daemon, running)

    assert coordinator.accepted == prober.ids
    assert coordinator.duplicates == 0
    first = [r["started_at"] for r in coordinator.posts[0]]
    assert first == sorted(first, reverse=True)
    assert await spool_depth(settings) == 0


async def test_a_changed_outcome_is_posted_without_waiting_for_the_flush_interval(
    router: respx.MockRouter, tmp_path: Path
) -> None:
    save_credentials(tmp_path, Credentials(agent_id=7, api_key=KEY, coordinator_url=URL))
    settings = AgentSettings(state_dir=tmp_path, results_flush_interval=3600.0)
    coordinator = FakeCoordinator(router, [spec(1)])
    prober = Prober(outcomes=[True, True, True, True, False])
    daemon = daemon_for(settings, prober)
    running = asyncio.create_task(daemon.run())
    await until(lambda: len(prober.produced) >= 5 and prober.produced[4].result_id in coordinator.accepted)
    posts_before_stop = len(coordinator.posts)
    await stop(daemon, running)

    first, down = prober.produced[0].result_id, prober.produced[4].result_id
    assert posts_before_stop == 2  # the first result, then the failure with the backlog; no ticks
    assert [r["result_id"] for r in coordinator.posts[0]] == [first]
    assert down in {r["result_id"] for r in coordinator.posts[1]}


async def test_a_413_halves_the_batch_and_a_result_too_large_alone_is_dropped(
    router: respx.MockRouter, settings: AgentSettings, caplog: pytest.LogCaptureFixture
) -> None:
    coordinator = FakeCoordinator(router, [])
    coordinator.max_batch = 3
    backlog = [result_of(1) for _ in range(10)]
    coordinator.too_large = {backlog[4].result_id}
    async with Spool(settings.spool_file, settings.spool_max_age, settings.spool_max_bytes) as spool:
        await spool.add(backlog)
    daemon = daemon_for(settings, Prober())

    caplog.set_level(logging.ERROR, logger="agent.daemon")
    running = asyncio.create_task(daemon.run())
    await until(lambda: len(coordinator.accepted) == 9)
    await stop(daemon, running)

    assert coordinator.accepted == {r.result_id for r in backlog} - coordinator.too_large
    assert max(len(batch) for batch in coordinator.posts) <= 3
    assert f"dropping result {backlog[4].result_id}" in caplog.text
    assert await spool_depth(settings) == 0


# --- heartbeats and checks -----------------------------------------------------------------------


async def test_heartbeats_report_checks_spool_and_loop_lag_and_a_new_etag_pulls_the_checks(
    router: respx.MockRouter, settings: AgentSettings
) -> None:
    coordinator = FakeCoordinator(router, [spec(1), spec(2)])
    prober = Prober()
    daemon = daemon_for(settings, prober)
    running = asyncio.create_task(daemon.run())
    await until(lambda: len(coordinator.heartbeats) >= 2)

    coordinator.checks, coordinator.etag = [spec(2), spec(3)], '"etag-2"'
    await until(lambda: any(r.check_id == 3 for r in prober.produced), timeout=15)
    await stop(daemon, running)

    later = coordinator.heartbeats[1]
    assert later["running_checks"] == 2
    assert later["hostname"] == "probe-test"
    assert later["version"] == "1.2.3"
    assert isinstance(later["spool_depth"], int)
    assert later["loop_lag_max_ms"] >= later["loop_lag_p99_ms"] >= 0


async def test_an_agent_that_is_not_registered_refuses_to_start(tmp_path: Path) -> None:
    daemon = Daemon(AgentSettings(state_dir=tmp_path / "nowhere"), probe=Prober())
    with pytest.raises(NotRegistered, match="hc-agent register") as raised:
        await daemon.run()
    assert raised.value.exit_code == 2


# --- a refused key -------------------------------------------------------------------------------


async def test_a_refused_key_is_read_again_once_then_the_daemon_stops_with_exit_code_1(
    router: respx.MockRouter, settings: AgentSettings
) -> None:
    coordinator = FakeCoordinator(router, [spec(1)])
    coordinator.keys = set()  # revoked
    daemon = daemon_for(settings, Prober())
    with pytest.raises(DaemonError, match="Register the agent again") as raised:
        await asyncio.wait_for(daemon.run(), timeout=10)
    assert raised.value.exit_code == 1
    assert coordinator.heartbeat_keys == [f"Bearer {KEY}"]  # the file held the same key: no retry


async def test_a_key_rotated_in_its_file_is_picked_up_after_a_401(
    router: respx.MockRouter, settings: AgentSettings
) -> None:
    coordinator = FakeCoordinator(router, [spec(1)])
    coordinator.keys = {NEW_KEY}
    coordinator.on_refused = lambda: rotate_key_file(settings, NEW_KEY)  # the operator was quicker
    daemon = daemon_for(settings, Prober())
    running = asyncio.create_task(daemon.run())
    await until(lambda: len(coordinator.accepted) >= 1)
    await stop(daemon, running)

    assert coordinator.heartbeat_keys[:2] == [f"Bearer {KEY}", f"Bearer {NEW_KEY}"]


async def test_a_rotated_key_that_is_refused_too_stops_the_daemon(
    router: respx.MockRouter, settings: AgentSettings
) -> None:
    coordinator = FakeCoordinator(router, [spec(1)])
    coordinator.keys = set()
    coordinator.on_refused = lambda: rotate_key_file(settings, NEW_KEY)
    daemon = daemon_for(settings, Prober())
    with pytest.raises(DaemonError) as raised:
        await asyncio.wait_for(daemon.run(), timeout=10)
    assert raised.value.exit_code == 1
    assert coordinator.heartbeat_keys == [f"Bearer {KEY}", f"Bearer {NEW_KEY}"]


def rotate_key_file(settings: AgentSettings, key: str) -> None:
    current = load_credentials(settings.state_dir)
    assert current is not None
    save_credentials(settings.state_dir, msgspec.structs.replace(current, api_key=key))


async def test_reload_reads_the_settings_and_the_key_file_again(
    router: respx.MockRouter, settings: AgentSettings
) -> None:
    coordinator = FakeCoordinator(router, [spec(1)])
    coordinator.keys = {KEY, NEW_KEY}
    reloaded: list[AgentSettings] = []

    def reload_settings() -> AgentSettings:
        reloaded.append(dataclasses.replace(settings, concurrency=5))
        return reloaded[-1]

    daemon = Daemon(settings, reload_settings=reload_settings, probe=Prober(), time_scale=FAST)
    running = asyncio.create_task(daemon.run())
    await until(lambda: len(coordinator.heartbeats) >= 1)
    rotate_key_file(settings, NEW_KEY)
    daemon.reload()
    await until(lambda: f"Bearer {NEW_KEY}" in coordinator.heartbeat_keys)
    await stop(daemon, running)

    assert daemon.settings.concurrency == 5
    assert len(reloaded) == 1


# --- restarts ------------------------------------------------------------------------------------


async def test_a_restart_while_the_coordinator_is_away_keeps_probing_the_last_checks(
    router: respx.MockRouter, settings: AgentSettings
) -> None:
    coordinator = FakeCoordinator(router, [spec(1), spec(2)])
    first = daemon_for(settings, Prober())
    running = asyncio.create_task(first.run())
    await until(lambda: len(coordinator.accepted) >= 2)
    await stop(first, running)
    assert settings.checks_file.exists()
    assert oct(settings.checks_file.stat().st_mode & 0o777) == "0o600"  # check secrets live in it

    # The coordinator goes away; the agent starts again and has never pulled in this process.
    router.routes.clear()
    router.route(host="coordinator.test").mock(side_effect=httpx.ConnectError("connection refused"))
    prober = Prober()
    second = daemon_for(settings, prober)
    running = asyncio.create_task(second.run())
    await until(lambda: {r.check_id for r in prober.produced} == {1, 2})
    await stop(second, running)
    assert await spool_depth(settings) >= 2  # kept for delivery once the coordinator is back
