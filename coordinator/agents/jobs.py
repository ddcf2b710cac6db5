"""Background jobs of the agent side: publish agents going offline, prune old results.

`run_once(now)` does one round and is what tests call, with the time they choose; the app's
lifespan calls it every few seconds (`coordinator.jobs.Periodic`). A failing round is logged and the next one
runs anyway: a database hiccup must not stop offline detection for good.

Both jobs are safe with several coordinators on one database: a status change is published by the
one coordinator whose compare-and-set matched, and deleting what is already deleted is a no-op.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any

from piccolo.engine.base import Engine

from coordinator.agents.auth import AuthenticatedAgent
from coordinator.agents.clock import Clock
from coordinator.agents.liveness import status_of
from coordinator.agents.service import publish_status_change
from coordinator.db.sql import execute, fetch
from coordinator.events.bus import EventBus
from coordinator.settings import Settings

log = logging.getLogger(__name__)

RETENTION_EVERY = datetime.timedelta(hours=1)
# Deleting in slices keeps each write short, so that ingest is not held up behind the SQLite lock.
_DELETE_SLICE = 5000
# Unused registration tokens are kept a day past expiry, to answer "expired" rather than "unknown".
_EXPIRED_TOKENS_KEPT = datetime.timedelta(days=1)


@dataclasses.dataclass
class JobReport:
    status_changes: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    results_pruned: int | None = None  # None: retention did not run this round


async def publish_status_changes(engine: Engine[Any], bus: EventBus, now: datetime.datetime) -> list[tuple[int, str]]:
    """Publishes `agent.status` for every agent whose status differs from the one last published."""
    rows = await fetch(
        engine,
        "SELECT id, name, mode, organization, location_id, heartbeat_interval, last_seen, published_status "
        "FROM agents WHERE revoked_at IS NULL ORDER BY id",
    )
    changes = []
    for row in rows:
        status = status_of(row["last_seen"], int(row["heartbeat_interval"]), False, now)
        if status != row["published_status"] and await publish_status_change(
            engine, bus, AuthenticatedAgent.from_row(row), status, now
        ):
            changes.append((int(row["id"]), status))
    return changes


async def prune_results(engine: Engine[Any], now: datetime.datetime, retention_days: int) -> int:
    """Deletes results received more than `retention_days` ago; returns how many."""
    cutoff = now - datetime.timedelta(days=retention_days)
    deleted = 0
    while True:
        rows = await fetch(
            engine,
            "DELETE FROM results WHERE id IN (SELECT id FROM results WHERE received_at < {} LIMIT {}) RETURNING id",
            cutoff,
            _DELETE_SLICE,
        )
        deleted += len(rows)
        if len(rows) < _DELETE_SLICE:
            break
    await execute(
        engine,
        "DELETE FROM registration_tokens WHERE used_at IS NULL AND expires_at < {}",
        now - _EXPIRED_TOKENS_KEPT,
    )
    return deleted


class AgentJobs:
    def __init__(self, engine: Engine[Any], settings: Settings, bus: EventBus, clock: Clock) -> None:
        self._engine = engine
        self._settings = settings
        self._bus = bus
        self._clock = clock
        self._last_retention: datetime.datetime | None = None

    async def run_once(self, now: datetime.datetime | None = None) -> JobReport:
        now = now if now is not None else self._clock.now()
        report = JobReport(status_changes=await publish_status_changes(self._engine, self._bus, now))
        if self._last_retention is None or now - self._last_retention >= RETENTION_EVERY:
            report.results_pruned = await prune_results(self._engine, now, self._settings.results_retention_days)
            self._last_retention = now
        return report
