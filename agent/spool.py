"""The durable outbox: results wait here, in a SQLite file, until the coordinator has them.

One sender takes a batch, posts it and acks what the coordinator answered for; nothing is removed
before the ack, so a crash between post and ack sends the batch again, and the coordinator drops
the repeats by `result_id`. Batches come newest first: after an outage the current statuses reach
the coordinator at once, and the backlog follows.

Every call runs on one worker thread that owns the connection, so the event loop never waits on
the disk and the SQLite calls never overlap.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import msgspec

from shared.wire import ProbeResult

log = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- insert order, the tie-break among equal times
    result_id  TEXT    NOT NULL UNIQUE,
    started_at REAL    NOT NULL,                   -- unix seconds
    size       INTEGER NOT NULL,                   -- len(payload), summed by prune()
    payload    BLOB    NOT NULL                    -- the ProbeResult as JSON, as it goes on the wire
);
CREATE INDEX IF NOT EXISTS results_by_time ON results (started_at, seq);
"""

# The bytes a batch adds around its results: {"results":[ … ]} and a comma between two results.
_ENVELOPE_BYTES = len(b'{"results":[]}')


class Spool:
    """Results not yet delivered, kept in the SQLite file at `path`.

    Opening happens in the constructor, once at start-up: an agent that cannot keep its results
    should fail before it starts probing.
    """

    def __init__(self, path: Path, max_age_s: float, max_bytes: int) -> None:
        self.path = path
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(ProbeResult)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hc-spool")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._executor.submit(self._connect).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; each write says where its own begins.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        # Must come before the first table exists; lets prune() give freed pages back to the disk.
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on the disk when it returns, power loss included. add() promises that.
        db.execute("PRAGMA synchronous = FULL")
        db.executescript(_SCHEMA)
        return db

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._run(self._db.close)
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> Spool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- writing ---------------------------------------------------------------------------------

    async def add(self, results: Sequence[ProbeResult]) -> None:
        """Keep `results`; committed to the disk when this returns. A known result_id is ignored."""
        rows = []
        for result in results:
            payload = self._encoder.encode(result)
            rows.append((result.result_id, _timestamp(result.started_at), len(payload), payload))

        def insert() -> None:
            with _transaction(self._db):
                self._db.executemany(
                    "INSERT OR IGNORE INTO results (result_id, started_at, size, payload)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                )

        if rows:
            await self._run(insert)

    async def ack(self, result_ids: Sequence[str]) -> None:
        """Forget results the coordinator has answered for (accepted, duplicate or rejected)."""
        ids = [(result_id,) for result_id in result_ids]

        def delete() -> None:
            with _transaction(self._db):
                self._db.executemany("DELETE FROM results WHERE result_id = ?", ids)

        if ids:
            await self._run(delete)

    async def prune(self, now: datetime | None = None) -> int:
        """Drop results older than max_age, then the oldest until the payload fits max_bytes.

        Returns how many were dropped. The daemon calls this on a timer, so the file may outgrow
        max_bytes by what arrives between two calls.
        """
        cutoff = _timestamp(now or datetime.now(timezone.utc)) - self.max_age_s

        def drop() -> tuple[int, int]:
            with _transaction(self._db):
                too_old = self._db.execute("DELETE FROM results WHERE started_at < ?", (cutoff,)).rowcount
                (total,) = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM results").fetchone()
                too_big = 0
                if total > self.max_bytes:
                    # The shortest run of oldest results whose sizes add up to the excess.
                    too_big = self._db.execute(
                        """
                        DELETE FROM results WHERE seq IN (
                            SELECT seq FROM (
                                SELECT seq, SUM(size) OVER (ORDER BY started_at, seq) - size AS before
                                FROM results
                            ) WHERE before < ?
                        )
                        """,
                        (total - self.max_bytes,),
                    ).rowcount
            if too_old or too_big:
                # Each step of this pragma frees one page, and execute() steps once;
                # executescript() runs it to the end.
                self._db.executescript("PRAGMA incremental_vacuum;")
            return too_old, too_big

        too_old, too_big = await self._run(drop)
        if too_old:
            log.warning(
                "spool: dropped %d undelivered results older than %.0fs (%s)",
                too_old,
                self.max_age_s,
                self.path,
            )
        if too_big:
            log.warning(
                "spool: dropped the %d oldest undelivered results to stay under %d bytes (%s)",
                too_big,
                self.max_bytes,
                self.path,
            )
        return too_old + too_big

    # --- reading ---------------------------------------------------------------------------------

    async def take_batch(self, limit: int = 1000, max_bytes: int = 1_000_000) -> list[ProbeResult]:
        """Up to `limit` results, newest first, whose request body stays within `max_bytes`.

        Leaves them in the spool until ack(). A single result bigger than `max_bytes` still comes
        alone, so the sender learns (413) that it must drop it, rather than being stuck behind it.
        """

        def select() -> list[bytes]:
            cursor = self._db.execute(
                "SELECT size, payload FROM results ORDER BY started_at DESC, seq DESC LIMIT ?", (limit,)
            )
            payloads: list[bytes] = []
            used = _ENVELOPE_BYTES
            for size, payload in cursor:
                used += size + (1 if payloads else 0)
                if payloads and used > max_bytes:
                    break
                payloads.append(payload)
            cursor.close()
            return payloads

        return [self._decoder.decode(payload) for payload in await self._run(select)]

    async def depth(self) -> int:
        """How many results wait for delivery."""
        row = await self._run(lambda: self._db.execute("SELECT COUNT(*) FROM results").fetchone())
        return int(row[0])

    async def oldest(self) -> datetime | None:
        """When the oldest waiting result was taken, or None when the spool is empty."""
        row = await self._run(lambda: self._db.execute("SELECT MIN(started_at) FROM results").fetchone())
        return None if row[0] is None else datetime.fromtimestamp(row[0], timezone.utc)


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK when the block raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _timestamp(moment: datetime) -> float:
    # Probes stamp results in UTC; a naive time is taken as UTC rather than as local time.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
