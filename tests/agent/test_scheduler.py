"""agent.scheduler with fake probes: offsets, reconcile, the concurrency cap, outcomes, stopping.

Schedules run on real asyncio time scaled down (time_scale): an interval of 1 s lasts 20 ms here.
Assertions are about counts and order with generous bounds, never about exact timings.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone

import pytest

from agent.scheduler import LagMonitor, Scheduler, first_delay, offset_fraction
from shared.wire import CheckSpec, CheckType, ProbeResult

FAST = 0.02  # time_scale: a 1 s interval lasts 20 ms


def spec(check_id: int, interval: int = 1, **fields: object) -> CheckSpec:
    fields.setdefault("url", f"http://target/{check_id}")
    return CheckSpec(id=check_id, type=CheckType.UPTIME, interval=interval, timeout=1, **fields)  # type: ignore[arg-type]


def result_of(check: CheckSpec, success: bool = True, **details: object) -> ProbeResult:
    return ProbeResult(
        result_id=str(uuid.uuid4()),
        check_id=check.id,
        started_at=datetime.now(timezone.utc),
        success=success,
        details=dict(details),
    )


class Sink:
    """Collects (result, outcome_changed) as the scheduler hands them on."""

    def __init__(self) -> None:
        self.received: list[tuple[ProbeResult, bool]] = []

    async def __call__(self, result: ProbeResult, changed: bool) -> None:
        self.received.append((result, changed))

    def count(self, check_id: int) -> int:
        return sum(1 for r, _ in self.received if r.check_id == check_id)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Waits until `condition()` holds; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the condition did not come true in time")
        await asyncio.sleep(0.005)


async def instant_probe(check: CheckSpec) -> ProbeResult:
    return result_of(check, url=check.url)


# --- offsets -------------------------------------------------------------------------------------


def test_the_offset_of_a_check_is_the_same_in_every_process() -> None:
    code = "from agent.scheduler import offset_fraction; print(repr(offset_fraction(4242)))"
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert float(other.stdout) == offset_fraction(4242)


def test_offsets_spread_checks_over_the_interval() -> None:
    seconds = Counter(int(first_delay(check_id, 60.0, now=1_000_000.0)) for check_id in range(1, 3001))
    # 3000 checks over 60 s is 50 a second on average; no second may carry a herd.
    assert len(seconds) == 60
    assert max(seconds.values()) < 100


@pytest.mark.parametrize("now", [0.0, 17.25, 1_700_000_000.5])
def test_the_first_slot_keeps_the_checks_phase_whenever_the_agent_starts(now: float) -> None:
    delay = first_delay(7, 60.0, now)
    assert 0 <= delay < 60
    assert (now + delay) % 60 == pytest.approx(offset_fraction(7) * 60, abs=1e-6)


# --- running and reconciling ---------------------------------------------------------------------


async def test_a_check_runs_again_on_every_interval() -> None:
    sink = Sink()
    scheduler = Scheduler(on_result=sink, probe=instant_probe, time_scale=FAST)
    scheduler.reconcile([spec(1)])
    await until(lambda: sink.count(1) >= 5)
    await scheduler.stop(grace=1)
    assert scheduler.running_checks == 0


async def test_reconcile_starts_added_checks_and_stops_removed_ones() -> None:
    sink = Sink()
    scheduler = Scheduler(on_result=sink, probe=instant_probe, time_scale=FAST)
    scheduler.reconcile([spec(1), spec(2)])
    await until(lambda: sink.count(1) >= 2 and sink.count(2) >= 2)

    scheduler.reconcile([spec(2), spec(3)])
    removed_count = sink.count(1)
    await until(lambda: sink.count(3) >= 3)
    await scheduler.stop(grace=1)

    assert scheduler.check_ids == set()
    assert sink.count(1) == removed_count


async def test_reconcile_leaves_an_unchanged_check_and_its_probe_in_flight_alone() -> None:
    release = asyncio.Event()
    starts: list[int] = []

    async def slow_probe(check: CheckSpec) -> ProbeResult:
        starts.append(check.id)
        if check.id == 1:
            await release.wait()
        return result_of(check)

    sink = Sink()
    scheduler = Scheduler(on_result=sink, probe=slow_probe, time_scale=FAST)
    scheduler.reconcile([spec(1)])
    await until(lambda: 1 in starts)

    scheduler.reconcile([spec(1), spec(2)])
    scheduler.reconcile([spec(1), spec(2)])  # the same list again changes nothing
    await until(lambda: sink.count(2) >= 5)
    assert starts.count(1) == 1  # still the first probe: a restart would have begun another
    release.set()
    await until(lambda: sink.count(1) >= 1)
    await scheduler.stop(grace=1)


async def test_a_changed_check_restarts_with_its_new_spec_only() -> None:
    sink = Sink()
    scheduler = Scheduler(on_result=sink, probe=instant_probe, time_scale=FAST)
    scheduler.reconcile([spec(1, url="http://old/")])
    await until(lambda: sink.count(1) >= 2)

    scheduler.reconcile([spec(1, url="http://new/")])
    changed_at = len(sink.received)
    await until(lambda: sink.count(1) >= changed_at + 3)
    await scheduler.stop(grace=1)

    urls_after = {r.details["url"] for r, _ in sink.received[changed_at:]}
    assert urls_after == {"http://new/"}
    assert scheduler.check_ids == set()


async def test_the_concurrency_cap_holds_however_many_checks_are_due() -> None:
    in_flight = 0
    most = 0

    async def busy_probe(check: CheckSpec) -> ProbeResult:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.03)
        in_flight -= 1
        return result_of(check)

    sink = Sink()
    scheduler = Scheduler(on_result=sink, probe=busy_probe, concurrency=3, time_scale=FAST)
    scheduler.reconcile([spec(i) for i in range(1, 11)])  # each wants a probe every 20 ms
    await until(lambda: len(sink.received) >= 30)
    await scheduler.stop(grace=1)

    assert most == 3


async def test_the_outcome_change_is_flagged_on_the_first_result_and_on_every_flip() -> None:
    outcomes = iter([True, True, False, False, True] + [True] * 100)

    async def flipping_probe(check: CheckSpec) -> ProbeResult:
        return result_of(check, success=next(outcomes))

    sink = Sink()
    scheduler = Scheduler(on_result=sink, probe=flipping_probe, time_scale=FAST)
    scheduler.reconcile([spec(1)])
    await until(lambda: len(sink.received) >= 5)
    await scheduler.stop(grace=1)

    assert [changed for _, changed in sink.received[:5]] == [True, False, True, False, True]


async def test_a_failing_sink_does_not_stop_the_check() -> None:
    calls = 0

    async def broken_sink(result: ProbeResult, changed: bool) -> None:
        nonlocal calls
        calls += 1
        raise OSError("disk full")

    scheduler = Scheduler(on_result=broken_sink, probe=instant_probe, time_scale=FAST)
    scheduler.reconcile([spec(1)])
    await until(lambda: calls >= 3)
    await scheduler.stop(grace=1)


# --- stopping ------------------------------------------------------------------------------------


async def test_stop_lets_a_probe_in_flight_finish_and_hand_on_its_result() -> None:
    started = asyncio.Event()

    async def probe(check: CheckSpec) -> ProbeResult:
        started.set()
        await asyncio.sleep(0.1)
        return result_of(check)

    sink = Sink()
    scheduler = Scheduler(on_result=sink, probe=probe, time_scale=FAST)
    scheduler.reconcile([spec(1)])
    await asyncio.wait_for(started.wait(), 5)
    await scheduler.stop(grace=5)
    assert sink.count(1) == 1


async def test_stop_cancels_a_probe_that_outlasts_the_grace() -> None:
    started = asyncio.Event()

    async def hanging_probe(check: CheckSpec) -> ProbeResult:
        started.set()
        await asyncio.sleep(3600)
        return result_of(check)

    sink = Sink()
    scheduler = Scheduler(on_result=sink, probe=hanging_probe, time_scale=FAST)
    scheduler.reconcile([spec(1), spec(2)])
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(scheduler.stop(grace=0.05), timeout=5)
    assert sink.received == []
    scheduler.reconcile([spec(3)])  # a stopped scheduler starts nothing
    assert scheduler.running_checks == 0


# --- event loop lag ------------------------------------------------------------------------------


async def test_the_lag_monitor_sees_a_blocked_event_loop() -> None:
    monitor = LagMonitor(tick=0.01)
    task = asyncio.create_task(monitor.run())
    await asyncio.sleep(0.05)
    time.sleep(0.25)  # blocks the loop: the ticker wakes at least this late
    await asyncio.sleep(0.05)
    task.cancel()
    assert monitor.max_ms >= 200
    assert 0 <= monitor.p99_ms <= monitor.max_ms
