"""The staleness sweep: statuses that change with no result arriving.

A source turns UNKNOWN when its results stop for longer than the staleness bound, or when the
agent that runs it goes offline or is revoked; a failing source turns DOWN when its grace period
ends. None of these comes with a request, so a job looks for them: the sources whose `recheck_at`
(`rules.next_status_change_at`, stored with each state) has passed, and the sources whose agent's
availability changed since the last round. Their checks are settled through the same
compare-and-set, log, incident and event as ingest (`coordinator.status.engine`).

`run_once(now)` is one round, what tests call with the time they choose; the lifespan runs it
on a timer (`coordinator.jobs.Periodic`). With several coordinators on one PostgreSQL, an advisory lock lets one of them
claim a round (the others skip it); settling then takes each check's row lock and compare-and-set
like any writer, so a round racing ingest, or a second sweep, still logs each change once.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any

from piccolo.engine.base import Engine

from coordinator.agents.clock import Clock
from coordinator.agents.liveness import is_online
from coordinator.agents.rows import placeholders, write_transaction
from coordinator.db.sql import fetch, is_sqlite
from coordinator.events.bus import EventBus
from coordinator.settings import Settings
from coordinator.status.engine import StatusChange, publish, recompute_checks

log = logging.getLogger(__name__)

_ADVISORY_LOCK_KEY = 0x48_43_53_57_50  # "HCSWP"
# Checks settled per transaction: short transactions keep ingest from waiting on the SQLite lock.
_CHECKS_PER_TRANSACTION = 200


@dataclasses.dataclass
class SweepReport:
    changes: list[StatusChange] = dataclasses.field(default_factory=list)
    checks_settled: int = 0
    skipped: bool = False  # another coordinator was sweeping


async def _available_agents(engine: Engine[Any], now: datetime.datetime) -> list[int]:
    rows = await fetch(
        engine,
        "SELECT id, last_seen, heartbeat_interval FROM agents "
        "WHERE revoked_at IS NULL AND id IN (SELECT agent FROM source_states WHERE agent IS NOT NULL)",
    )
    return sorted(int(r["id"]) for r in rows if is_online(r["last_seen"], int(r["heartbeat_interval"]), now))


async def _availability_changed(engine: Engine[Any], now: datetime.datetime) -> set[int]:
    """Brings `agent_available` up to date; returns the checks whose sources it changed."""
    available = await _available_agents(engine, now)
    touched: set[int] = set()
    # An agent offline, revoked or deleted: its sources are UNKNOWN.
    if available:
        went = await fetch(
            engine,
            "UPDATE source_states SET agent_available = false WHERE agent_available AND agent IS NOT NULL "  # noqa: S608
            f'AND agent NOT IN ({placeholders(len(available))}) RETURNING "check"',
            *available,
        )
        came = await fetch(
            engine,
            "UPDATE source_states SET agent_available = true WHERE NOT agent_available "  # noqa: S608
            f'AND agent IN ({placeholders(len(available))}) RETURNING "check"',
            *available,
        )
        touched.update(int(r["check"]) for r in went + came)
    else:
        went = await fetch(
            engine,
            "UPDATE source_states SET agent_available = false WHERE agent_available AND agent IS NOT NULL "
            'RETURNING "check"',
        )
        touched.update(int(r["check"]) for r in went)
    return touched


async def sweep(engine: Engine[Any], bus: EventBus | None, now: datetime.datetime) -> SweepReport:
    """One round: availability, then every check with a source due, settled in short transactions."""
    report = SweepReport()
    async with write_transaction(engine):
        if not await _claim(engine):
            report.skipped = True
            return report
        due = await _availability_changed(engine, now)
        rows = await fetch(
            engine,
            'SELECT DISTINCT "check" FROM source_states WHERE recheck_at IS NOT NULL AND recheck_at <= {}',
            now,
        )
        due.update(int(r["check"]) for r in rows)
    ordered = sorted(due)
    for start in range(0, len(ordered), _CHECKS_PER_TRANSACTION):
        chunk = ordered[start : start + _CHECKS_PER_TRANSACTION]
        async with write_transaction(engine):
            changes = await recompute_checks(engine, chunk, now)
        publish(changes, bus, engine)  # after the commit: the changes are stored
        report.changes += changes
        report.checks_settled += len(chunk)
    return report


async def _claim(engine: Engine[Any]) -> bool:
    """Whether this coordinator sweeps this round; on SQLite the IMMEDIATE transaction already decided."""
    if is_sqlite(engine):
        return True
    rows = await fetch(engine, "SELECT pg_try_advisory_xact_lock({}) AS claimed", _ADVISORY_LOCK_KEY)
    return bool(rows[0]["claimed"])


class StatusJobs:
    def __init__(self, engine: Engine[Any], settings: Settings, bus: EventBus, clock: Clock) -> None:
        self._engine = engine
        self._settings = settings
        self._bus = bus
        self._clock = clock

    async def run_once(self, now: datetime.datetime | None = None) -> SweepReport:
        return await sweep(self._engine, self._bus, now if now is not None else self._clock.now())
