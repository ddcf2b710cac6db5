"""Periodic jobs stop between rounds: a round under way finishes, it is not cut off mid-query."""

from __future__ import annotations

import asyncio

from coordinator.jobs import Periodic


async def test_stop_lets_the_round_under_way_finish() -> None:
    started, finished = asyncio.Event(), []

    async def round_() -> None:
        started.set()
        await asyncio.sleep(0.05)  # stands for a query in flight
        finished.append(True)

    job = Periodic("test", 0.001, round_)
    job.start()
    await asyncio.wait_for(started.wait(), 5)
    await job.stop()
    assert finished == [True]


async def test_a_failing_round_is_logged_and_the_next_one_runs() -> None:
    calls: list[int] = []

    async def round_() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database hiccup")

    job = Periodic("test", 0.001, round_)
    job.start()
    while len(calls) < 2:
        await asyncio.sleep(0.005)
    await job.stop()
    assert len(calls) >= 2


async def test_a_round_past_the_grace_period_is_cancelled() -> None:
    started = asyncio.Event()

    async def round_() -> None:
        started.set()
        await asyncio.sleep(3600)

    job = Periodic("test", 0.001, round_)
    job.start()
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(job.stop(grace=0.05), 5)
