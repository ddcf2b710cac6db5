"""agent.spool on a real SQLite file: durable, newest first, pruned by age and size."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest

from agent.spool import Spool
from shared.wire import ProbeResult

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


def result(minute: int, check_id: int = 5, **extra: object) -> ProbeResult:
    return ProbeResult(
        result_id=str(uuid.uuid4()),
        check_id=check_id,
        started_at=T0 + timedelta(minutes=minute),
        success=True,
        response_time_ms=12.5,
        status_code=200,
        **extra,  # type: ignore[arg-type]
    )


def wire_size(r: ProbeResult) -> int:
    return len(msgspec.json.encode(r))


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    async with Spool(tmp_path / "spool.db", max_age_s=3600, max_bytes=10_000_000) as s:
        yield s


async def test_an_empty_spool(spool: Spool) -> None:
    assert await spool.take_batch() == []
    assert await spool.depth() == 0
    assert await spool.oldest() is None
    assert await spool.prune() == 0


async def test_batches_come_newest_first_and_whole(spool: Spool) -> None:
    older, newest, middle = result(0), result(10, details={"timings": {"dns": 1.5}}), result(5)
    await spool.add([older, newest, middle])

    batch = await spool.take_batch()

    assert batch == [newest, middle, older]
    assert batch[0].details == {"timings": {"dns": 1.5}}


async def test_equal_times_come_in_reverse_insert_order(spool: Spool) -> None:
    first, second = result(0), result(0)
    await spool.add([first])
    await spool.add([second])

    assert await spool.take_batch() == [second, first]


async def test_results_stay_until_acked(spool: Spool) -> None:
    a, b, c = result(0), result(1), result(2)
    await spool.add([a, b, c])

    assert len(await spool.take_batch()) == 3
    assert await spool.depth() == 3  # taking is not removing: a crash before the ack loses nothing

    await spool.ack([c.result_id, a.result_id, "unknown-id"])

    assert await spool.depth() == 1
    assert await spool.take_batch() == [b]


async def test_the_same_result_id_is_kept_once(spool: Spool) -> None:
    r = result(0)

    await spool.add([r])
    await spool.add([r])

    assert await spool.depth() == 1


async def test_results_are_committed_when_add_returns(tmp_path: Path, spool: Spool) -> None:
    await spool.add([result(0), result(1)])

    # Another connection sees them at once: nothing waits in an open transaction.
    with sqlite3.connect(tmp_path / "spool.db") as other:
        (count,) = other.execute("SELECT COUNT(*) FROM results").fetchone()
        (mode,) = other.execute("PRAGMA journal_mode").fetchone()
    assert count == 2
    assert mode == "wal"


async def test_results_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "spool.db"
    kept = [result(1), result(0)]
    first = Spool(path, max_age_s=3600, max_bytes=10_000_000)
    await first.add(kept)
    await first.close()

    async with Spool(path, max_age_s=3600, max_bytes=10_000_000) as reopened:
        assert await reopened.take_batch() == kept
        assert await reopened.oldest() == T0


async def test_take_batch_respects_the_count_limit(spool: Spool) -> None:
    results = [result(m) for m in range(10)]
    await spool.add(results)

    batch = await spool.take_batch(limit=3)

    assert [r.started_at for r in batch] == [T0 + timedelta(minutes=m) for m in (9, 8, 7)]


async def test_take_batch_keeps_the_request_body_within_max_bytes(spool: Spool) -> None:
    results = [result(m) for m in range(10)]
    await spool.add(results)
    one = wire_size(results[0])
    # The body is {"results":[r1,r2,r3]}: three results, two commas and the envelope.
    body_of_three = len(b'{"results":[]}') + 3 * one + 2

    batch = await spool.take_batch(max_bytes=body_of_three)

    assert len(batch) == 3
    assert len(msgspec.json.encode({"results": batch})) == body_of_three
    assert len(await spool.take_batch(max_bytes=body_of_three - 1)) == 2


async def test_a_result_bigger_than_max_bytes_still_comes_alone(spool: Spool) -> None:
    huge = result(1, error="x" * 5000)
    await spool.add([huge, result(0)])

    assert await spool.take_batch(max_bytes=1000) == [huge]


async def test_oldest_is_the_earliest_start(spool: Spool) -> None:
    await spool.add([result(30), result(-20), result(10)])

    assert await spool.oldest() == T0 - timedelta(minutes=20)


async def test_prune_drops_results_older_than_max_age(spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    stale, fresh = result(0), result(30)
    await spool.add([stale, fresh])

    with caplog.at_level(logging.WARNING, logger="agent.spool"):
        dropped = await spool.prune(now=T0 + timedelta(minutes=75))  # max_age is 60 minutes

    assert dropped == 1
    assert await spool.take_batch() == [fresh]
    assert "dropped 1 undelivered results older than 3600s" in caplog.text


async def test_prune_drops_the_oldest_first_when_over_max_bytes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    results = [result(m) for m in range(10)]
    size = wire_size(results[0])
    async with Spool(tmp_path / "spool.db", max_age_s=3600, max_bytes=4 * size) as spool:
        await spool.add(results)

        with caplog.at_level(logging.WARNING, logger="agent.spool"):
            dropped = await spool.prune(now=T0)

        assert dropped == 6
        assert await spool.take_batch() == [results[m] for m in (9, 8, 7, 6)]
        assert "dropped the 6 oldest undelivered results to stay under" in caplog.text
        assert await spool.prune(now=T0) == 0


async def test_naive_times_are_taken_as_utc(spool: Spool) -> None:
    naive = ProbeResult(result_id="r1", check_id=1, started_at=datetime(2025, 1, 1, 12, 0), success=False)

    await spool.add([naive])

    assert await spool.oldest() == T0


async def test_pruned_space_is_given_back_to_the_disk(tmp_path: Path) -> None:
    async with Spool(tmp_path / "spool.db", max_age_s=60, max_bytes=10_000_000) as spool:
        await spool.add([result(0, error="x" * 2000) for _ in range(200)])

        assert await spool.prune(now=T0 + timedelta(hours=1)) == 200

        with sqlite3.connect(tmp_path / "spool.db") as other:
            (free_pages,) = other.execute("PRAGMA freelist_count").fetchone()
        assert free_pages == 0
