"""Folds raw results into 5-minute rollups, each result once, however many coordinators run.

`rollup_progress.last_id` is a high-water mark: every result with a smaller or equal id is already
counted in `result_rollups`. A round reads the mark, picks the next slice of ids, moves the mark by
compare-and-set, and adds the slice's per-(check, source, bucket) sums into the rollups with an
upsert that adds, all in one transaction. A coordinator whose compare-and-set matches nothing lost
the race to another one and rolls back having written nothing; a crash rolls back the whole
round. Either way no result is counted twice or skipped.

`run_once(now)` does what is due and is what tests call; the lifespan runs it on a timer (`coordinator.jobs.Periodic`).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any

from piccolo.engine.base import Engine

from coordinator.agents.rows import write_transaction
from coordinator.db.sql import execute, fetch, is_sqlite
from coordinator.geo.histogram import COLUMNS, bucket_sums_sql

log = logging.getLogger(__name__)

BUCKET_SECONDS = 300
INTERVAL_SECONDS = 15.0
# Results folded per transaction: the SQLite write lock is held for the whole fold, and ingest
# waits behind it, so a backlog (the first run over old results) goes in short slices.
SLICE = 20_000
# Rollups outlive the raw results (30 days): time series reach back 90 days.
RETENTION = datetime.timedelta(days=90)
PRUNE_EVERY = datetime.timedelta(hours=1)
_PRUNE_SLICE = 5000
# On PostgreSQL ids come from a sequence when a row is inserted, not when it commits: a result
# with a smaller id may still become visible after a larger one. Results received in the last
# SETTLE are left for a later round, which assumes that an ingest transaction commits within
# SETTLE of the time it stamped as received_at. On SQLite writers take turns, so ids commit in
# order and there is nothing to wait for.
SETTLE = datetime.timedelta(seconds=30)

_ADDED = ("count", "failures", "count_ms", "sum_ms", *COLUMNS)
_TARGET = '"check", source, bucket_start, count, failures, count_ms, sum_ms, max_ms, ' + ", ".join(COLUMNS)


class LostRace(Exception):
    """Another coordinator moved the mark first: roll this round back."""


@dataclasses.dataclass
class RollupReport:
    last_id: int = 0  # the mark after this call
    slices: int = 0  # transactions that folded something
    pruned: int | None = None  # rollups deleted for age; None when pruning did not run


def _fold_sql(sqlite: bool) -> str:
    if sqlite:
        bucket = f"(CAST(strftime('%s', started_at) AS INTEGER) / {BUCKET_SECONDS}) * {BUCKET_SECONDS}"
        # The text Piccolo writes for an aware datetime in UTC, so that comparisons stay textual.
        bucket_start = "datetime(b, 'unixepoch') || '+00:00'"
    else:
        bucket = f"(FLOOR(EXTRACT(EPOCH FROM started_at) / {BUCKET_SECONDS}) * {BUCKET_SECONDS})::BIGINT"
        bucket_start = "to_timestamp(b)"
    added = ", ".join(f"{column} = result_rollups.{column} + excluded.{column}" for column in _ADDED)
    return (
        f"INSERT INTO result_rollups ({_TARGET}) "  # noqa: S608 - every piece is a constant of this module
        f'SELECT "check", source, {bucket_start}, n, failures, n_ms, sum_ms, max_ms, {", ".join(COLUMNS)} FROM ('
        f'SELECT "check", source, {bucket} AS b, COUNT(*) AS n, '
        "SUM(CASE WHEN success THEN 0 ELSE 1 END) AS failures, COUNT(response_time_ms) AS n_ms, "
        "COALESCE(SUM(response_time_ms), 0) AS sum_ms, COALESCE(MAX(response_time_ms), 0) AS max_ms, "
        f"{bucket_sums_sql('response_time_ms')} "
        'FROM results WHERE id > {} AND id <= {} GROUP BY "check", source, b'
        # `WHERE true`: without it SQLite could read ON CONFLICT as the ON of a join.
        ") folded WHERE true "
        'ON CONFLICT ("check", source, bucket_start) DO UPDATE SET '
        f"{added}, max_ms = CASE WHEN excluded.max_ms > result_rollups.max_ms "
        "THEN excluded.max_ms ELSE result_rollups.max_ms END"
    )


async def fold_slice(engine: Engine[Any], now: datetime.datetime) -> tuple[int, int]:
    """Folds the next slice of results; returns (mark after, results ids covered)."""
    sqlite = is_sqlite(engine)
    cutoff = now if sqlite else now - SETTLE
    async with write_transaction(engine):
        rows = await fetch(engine, "SELECT last_id FROM rollup_progress WHERE id = 1")
        mark = int(rows[0]["last_id"])
        top_rows = await fetch(
            engine,
            "SELECT MAX(id) AS top FROM (SELECT id FROM results WHERE id > {} AND received_at <= {} "
            "ORDER BY id LIMIT {}) slice",
            mark,
            cutoff,
            SLICE,
        )
        top = top_rows[0]["top"]
        if top is None:
            return mark, 0
        top = int(top)
        # Claim the slice first: on PostgreSQL the row lock taken here makes a second coordinator
        # wait, and then find the mark moved and give up before it has added anything.
        claimed = await fetch(
            engine,
            "UPDATE rollup_progress SET last_id = {}, updated_at = {} WHERE id = 1 AND last_id = {} RETURNING last_id",
            top,
            now,
            mark,
        )
        if not claimed:
            raise LostRace
        await execute(engine, _fold_sql(sqlite), mark, top)
    return top, top - mark


async def prune(engine: Engine[Any], now: datetime.datetime) -> int:
    """Deletes rollups older than RETENTION, a slice at a time so that ingest is not held up."""
    deleted = 0
    while True:
        rows = await fetch(
            engine,
            "DELETE FROM result_rollups WHERE id IN "
            "(SELECT id FROM result_rollups WHERE bucket_start < {} LIMIT {}) RETURNING id",
            now - RETENTION,
            _PRUNE_SLICE,
        )
        deleted += len(rows)
        if len(rows) < _PRUNE_SLICE:
            return deleted


class RollupJob:
    def __init__(self, engine: Engine[Any], interval_seconds: float = INTERVAL_SECONDS) -> None:
        self._engine = engine
        self.interval_seconds = interval_seconds
        self._last_prune: datetime.datetime | None = None

    async def run_once(self, now: datetime.datetime | None = None) -> RollupReport:
        now = now if now is not None else datetime.datetime.now(datetime.timezone.utc)
        report = RollupReport()
        while True:
            try:
                report.last_id, covered = await fold_slice(self._engine, now)
            except LostRace:
                log.info("rollups: another coordinator folded this slice")
                break
            if covered == 0:
                break
            report.slices += 1
            if covered < SLICE:
                break
        if self._last_prune is None or now - self._last_prune >= PRUNE_EVERY:
            report.pruned = await prune(self._engine, now)
            self._last_prune = now
        return report
