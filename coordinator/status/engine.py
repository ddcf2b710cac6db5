"""The status engine's database side: source states in, check statuses, logs, incidents and events out.

The rules themselves are pure (`coordinator.status.rules`); this module keeps their inputs and
outputs in the database. Three callers:

- ingest (`apply_results`), inside the batch's write transaction, with only the results that
  batch actually inserted: `apply_result` counts a failure each time it is folded;
- the staleness sweep (`coordinator.status.jobs`), when time alone or an agent going away changes
  a source's status (`recompute_checks`);
- a change of a check's settings (`check_changed`): a source taken away, the check paused.

A status flips once. Every writer first locks the check's row (`FOR NO KEY UPDATE` on PostgreSQL;
SQLite's IMMEDIATE transaction already holds the file's write lock), then reads the sources, so
writers of one check take turns and each sees the states the ones before it committed: the last
writer of a burst computes from everything. The flip itself is a compare-and-set
(`UPDATE checks SET status = new WHERE id = … AND status = old`), and only the writer whose
UPDATE matched appends to the log, opens or closes the incident and publishes `status.change`:
that holds even for a writer that did not take the lock, or a second coordinator on the database.

Events go out after the commit when this module owns the transaction (the sweep, a standalone
call). Inside a caller's transaction (ingest, a check update) they go out once the row is
written, just before the caller commits: the only window is a commit that fails after the
publish, and then the change is not stored, so the next writer flips it again and publishes it
again (at least once, never silently lost).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from piccolo.engine.base import Engine

from coordinator.agents.rows import as_datetime, loads, placeholders, write_transaction
from coordinator.db.sql import execute, fetch, is_sqlite
from coordinator.events.bus import EventBus
from coordinator.status import rules
from shared.wire import CENTRAL_SOURCE, ProbeResult, Status

__all__ = [
    "STATUS_CHANGE",
    "StatusChange",
    "apply_results",
    "attach_bus",
    "check_changed",
    "detach_bus",
    "publish",
    "recompute_checks",
]

log = logging.getLogger(__name__)

STATUS_CHANGE = "status.change"

# A compare-and-set that lost (someone flipped the status without the row lock) is retried this
# many times against the status it lost to.
_CAS_ATTEMPTS = 3

_CHECK_COLUMNS = (
    "id, organization, name, status, is_active, interval, timeout, grace_period, alert_after_failures, "
    "degraded_threshold_ms, check_source_critical, agent_location_statuses, geo_monitoring_enabled"
)
_STATE_COLUMNS = (
    '"check", source, agent, status, consecutive_failures, failing_since, last_result_at, last_success_at, '
    "last_success, last_response_time_ms, last_error, agent_available, recheck_at, updated_at"
)
_STATE_ROW = "(" + placeholders(14) + ")"
# Rows per upsert: 14 parameters each stays far below both engines' parameter limits.
_ROWS_PER_UPSERT = 200
_UPSERT_TAIL = ' ON CONFLICT ("check", source) DO UPDATE SET ' + ", ".join(
    f"{column} = excluded.{column}"
    for column in (
        "agent",
        "status",
        "consecutive_failures",
        "failing_since",
        "last_result_at",
        "last_success_at",
        "last_success",
        "last_response_time_ms",
        "last_error",
        "agent_available",
        "recheck_at",
        "updated_at",
    )
)

# The bus each engine's changes are published on: the app attaches its bus at start-up, so that
# callers deep in ingest or the checks service need not carry it. Keyed by id(): engines take
# neither attributes nor weak references.
_buses: dict[int, EventBus] = {}


def attach_bus(engine: Engine[Any], bus: EventBus) -> None:
    _buses[id(engine)] = bus


def detach_bus(engine: Engine[Any]) -> None:
    _buses.pop(id(engine), None)


@dataclasses.dataclass(frozen=True)
class StatusChange:
    """One flip of a check's status, as logged and published."""

    check_id: int
    organization_id: int
    check_name: str
    old_status: str
    new_status: str
    reason: str
    sources: dict[str, str]
    changed_at: datetime.datetime
    log_id: int
    incident_id: int | None

    def payload(self) -> dict[str, Any]:
        return {
            "check_id": self.check_id,
            "check_name": self.check_name,
            "old_status": self.old_status,
            "new_status": self.new_status,
            "reason": self.reason,
            "sources": self.sources,
            "changed_at": self.changed_at.isoformat(),
            "log_id": self.log_id,
            "incident_id": self.incident_id,
        }


def publish(changes: Iterable[StatusChange], bus: EventBus | None, engine: Engine[Any]) -> None:
    """Publishes each change as `status.change` to its check's organization."""
    target = bus if bus is not None else _buses.get(id(engine))
    for change in changes:
        if target is None:
            log.warning("status of check %s changed but no event bus is attached", change.check_id)
            continue
        target.publish(STATUS_CHANGE, change.payload(), change.organization_id)


# --- what is read --------------------------------------------------------------------------------


@dataclasses.dataclass
class _Check:
    id: int
    organization_id: int
    name: str
    status: str
    is_active: bool
    timing: rules.CheckTiming
    critical: dict[str, bool]
    location_statuses: dict[str, str]
    geo: bool
    agents: list[int] = dataclasses.field(default_factory=list)

    def allows(self, source: str) -> bool:
        """Whether `source` is one of the check's sources as it is configured now."""
        kind, _, rest = source.partition(":")
        if kind == "agent":
            return rest.isdigit() and int(rest) in self.agents
        if kind == "geo":
            return self.geo
        if source == CENTRAL_SOURCE:
            return not self.agents and not self.geo
        return True  # a kind this module does not know (heartbeats): not ours to drop


@dataclasses.dataclass
class _Source:
    state: rules.SourceState
    agent: int | None
    status: str  # as stored
    recheck_at: datetime.datetime | None
    dirty: bool = False


def _timing(row: dict[str, Any]) -> rules.CheckTiming:
    threshold = row["degraded_threshold_ms"]
    return rules.CheckTiming(
        interval=float(row["interval"]),
        timeout=max(0.0, float(row["timeout"] or 0)),
        grace_period=max(0.0, float(row["grace_period"] or 0)),
        alert_after_failures=max(1, int(row["alert_after_failures"] or 1)),
        degraded_threshold_ms=None if threshold is None else float(threshold),
    )


async def _lock_checks(engine: Engine[Any], check_ids: Sequence[int]) -> dict[int, _Check]:
    """The checks' rows, locked until the transaction ends (in id order, so writers never deadlock).

    NO KEY UPDATE rather than UPDATE: the results just inserted hold KEY SHARE locks on these rows
    through their foreign key, which UPDATE would wait for across concurrent batches.
    """
    if not check_ids:
        return {}
    ids = sorted(set(check_ids))
    lock = "" if is_sqlite(engine) else " FOR NO KEY UPDATE"
    rows = await fetch(
        engine,
        f"SELECT {_CHECK_COLUMNS} FROM checks WHERE id IN ({placeholders(len(ids))}) ORDER BY id{lock}",  # noqa: S608
        *ids,
    )
    checks = {
        int(row["id"]): _Check(
            id=int(row["id"]),
            organization_id=int(row["organization"]),
            name=str(row["name"]),
            status=str(row["status"]),
            is_active=bool(row["is_active"]),
            timing=_timing(row),
            critical={str(k): v is True for k, v in (loads(row["check_source_critical"]) or {}).items()},
            location_statuses=dict(loads(row["agent_location_statuses"]) or {}),
            geo=bool(row["geo_monitoring_enabled"]),
        )
        for row in rows
    }
    if checks:
        agent_rows = await fetch(
            engine,
            f'SELECT "check", agent FROM check_agents WHERE "check" IN ({placeholders(len(checks))}) ORDER BY id',  # noqa: S608
            *checks,
        )
        for row in agent_rows:
            checks[int(row["check"])].agents.append(int(row["agent"]))
    return checks


def _optional_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


async def _read_sources(engine: Engine[Any], check_ids: Sequence[int]) -> dict[int, dict[str, _Source]]:
    found: dict[int, dict[str, _Source]] = {cid: {} for cid in check_ids}
    if not check_ids:
        return found
    rows = await fetch(
        engine,
        f'SELECT {_STATE_COLUMNS} FROM source_states WHERE "check" IN ({placeholders(len(check_ids))})',  # noqa: S608
        *check_ids,
    )
    for row in rows:
        rt = row["last_response_time_ms"]
        state = rules.SourceState(
            last_result_at=as_datetime(row["last_result_at"]),
            last_success=_optional_bool(row["last_success"]),
            last_response_time_ms=None if rt is None else float(rt),
            last_error=row["last_error"],
            consecutive_failures=int(row["consecutive_failures"] or 0),
            failing_since=as_datetime(row["failing_since"]),
            last_success_at=as_datetime(row["last_success_at"]),
            agent_available=bool(row["agent_available"]),
        )
        found[int(row["check"])][str(row["source"])] = _Source(
            state=state,
            agent=None if row["agent"] is None else int(row["agent"]),
            status=str(row["status"]),
            recheck_at=as_datetime(row["recheck_at"]),
        )
    return found


# --- what is written -----------------------------------------------------------------------------


async def _upsert(engine: Engine[Any], rows: list[tuple[int, str, _Source]], now: datetime.datetime) -> None:
    for start in range(0, len(rows), _ROWS_PER_UPSERT):
        chunk = rows[start : start + _ROWS_PER_UPSERT]
        args: list[Any] = []
        for check_id, source, src in chunk:
            s = src.state
            args += [
                check_id,
                source,
                src.agent,
                src.status,
                s.consecutive_failures,
                s.failing_since,
                s.last_result_at,
                s.last_success_at,
                s.last_success,
                s.last_response_time_ms,
                s.last_error,
                s.agent_available,
                src.recheck_at,
                now,
            ]
        await execute(
            engine,
            f"INSERT INTO source_states ({_STATE_COLUMNS}) VALUES {', '.join(_STATE_ROW for _ in chunk)}"  # noqa: S608
            + _UPSERT_TAIL,
            *args,
        )


def _evaluate(check: _Check, sources: dict[str, _Source], now: datetime.datetime) -> dict[str, Status]:
    """Every current source's status at `now`; marks the rows whose stored status or recheck moved."""
    statuses: dict[str, Status] = {}
    for source, src in sources.items():
        if not check.allows(source):
            continue
        status = rules.source_status(src.state, check.timing, now)
        recheck = rules.next_status_change_at(src.state, check.timing, now)
        if status.value != src.status or recheck != src.recheck_at:
            src.status, src.recheck_at, src.dirty = status.value, recheck, True
        statuses[source] = status
    return statuses


def _location_map(check: _Check, statuses: dict[str, Status]) -> dict[str, str]:
    shown = {source: status.value for source, status in statuses.items()}
    for agent_id in check.agents:
        shown.setdefault(f"agent:{agent_id}", Status.UNKNOWN.value)
    return dict(sorted(shown.items()))


async def _settle(
    engine: Engine[Any], check: _Check, statuses: dict[str, Status], now: datetime.datetime
) -> StatusChange | None:
    """Stores the check's sources map and, when its status changes, flips it by compare-and-set."""
    new_status, reason = rules.check_status(check.is_active, statuses, check.critical)
    new = new_status.value
    shown = _location_map(check, statuses)
    shown_json = json.dumps(shown)
    old = check.status
    for _ in range(_CAS_ATTEMPTS):
        if new == old:
            if shown != check.location_statuses:
                await execute(
                    engine, "UPDATE checks SET agent_location_statuses = {} WHERE id = {}", shown_json, check.id
                )
            return None
        # The race is decided here: of several writers that saw `old`, one UPDATE matches.
        flipped = await fetch(
            engine,
            "UPDATE checks SET status = {}, agent_location_statuses = {} WHERE id = {} AND status = {} RETURNING id",
            new,
            shown_json,
            check.id,
            old,
        )
        if flipped:
            return await _record_change(engine, check, old, new, reason, shown, now)
        rows = await fetch(engine, "SELECT status FROM checks WHERE id = {}", check.id)
        if not rows:
            return None  # deleted meanwhile
        old = str(rows[0]["status"])
    log.warning("check %s: status kept changing under the compare-and-set; the next writer settles it", check.id)
    return None


async def _record_change(
    engine: Engine[Any], check: _Check, old: str, new: str, reason: str, shown: dict[str, str], now: datetime.datetime
) -> StatusChange:
    rows = await fetch(
        engine,
        'INSERT INTO check_status_log ("check", changed_at, old_status, new_status, reason, sources) '
        "VALUES ({}, {}, {}, {}, {}, {}) RETURNING id",
        check.id,
        now,
        old,
        new,
        reason,
        json.dumps(shown),
    )
    log_id = int(rows[0]["id"])
    incident_id: int | None = None
    down = Status.DOWN.value
    if new == down and old != down:
        opened = await fetch(
            engine,
            'INSERT INTO incidents ("check", start_log_id, started_at, max_status) '
            "VALUES ({}, {}, {}, {}) RETURNING id",
            check.id,
            log_id,
            now,
            down,
        )
        incident_id = int(opened[0]["id"])
    elif old == down and new != down:
        closed = await fetch(
            engine,
            'UPDATE incidents SET ended_at = {}, end_log_id = {} WHERE "check" = {} AND ended_at IS NULL RETURNING id',
            now,
            log_id,
            check.id,
        )
        incident_id = int(closed[0]["id"]) if closed else None
    check.status = new
    check.location_statuses = shown
    return StatusChange(
        check_id=check.id,
        organization_id=check.organization_id,
        check_name=check.name,
        old_status=old,
        new_status=new,
        reason=reason,
        sources=shown,
        changed_at=now,
        log_id=log_id,
        incident_id=incident_id,
    )


async def _settle_all(
    engine: Engine[Any],
    checks: dict[int, _Check],
    sources: dict[int, dict[str, _Source]],
    now: datetime.datetime,
) -> list[StatusChange]:
    dirty: list[tuple[int, str, _Source]] = []
    statuses: dict[int, dict[str, Status]] = {}
    for check_id, check in checks.items():
        statuses[check_id] = _evaluate(check, sources[check_id], now)
        dirty += [(check_id, source, src) for source, src in sorted(sources[check_id].items()) if src.dirty]
    await _upsert(engine, dirty, now)
    changes = []
    for check_id, check in checks.items():
        change = await _settle(engine, check, statuses[check_id], now)
        if change is not None:
            changes.append(change)
    return changes


def _in_transaction(engine: Engine[Any]) -> bool:
    current = getattr(engine, "current_transaction", None)
    return current is not None and current.get() is not None


# --- the entry points ----------------------------------------------------------------------------


async def apply_results(
    engine: Engine[Any],
    source: str,
    agent_id: int | None,
    stored: list[ProbeResult],
    now: datetime.datetime,
    *,
    bus: EventBus | None = None,
) -> None:
    """Folds newly stored results of one source into its states and settles the touched checks.

    `stored` must hold only results this call's transaction inserted (never a duplicate): a
    failure folded twice counts twice. Results of checks deleted meanwhile are skipped. Called
    inside the ingest transaction; outside one, it opens its own and publishes after the commit.
    """
    if not stored:
        return
    if _in_transaction(engine):
        publish(await _apply(engine, source, agent_id, stored, now), bus, engine)
        return
    async with write_transaction(engine):
        changes = await _apply(engine, source, agent_id, stored, now)
    publish(changes, bus, engine)


async def _apply(
    engine: Engine[Any], source: str, agent_id: int | None, stored: list[ProbeResult], now: datetime.datetime
) -> list[StatusChange]:
    by_check: dict[int, list[ProbeResult]] = {}
    for result in stored:
        by_check.setdefault(result.check_id, []).append(result)
    checks = await _lock_checks(engine, list(by_check))
    sources = await _read_sources(engine, list(checks))
    for check_id in checks:
        previous = sources[check_id].get(source)
        # Whether the agent is there is the sweep's call (heartbeats), not the results': an agent
        # whose heartbeats fail while its results get through would otherwise flap. A source that
        # another agent now runs (a geo location's work moved) starts out available.
        state = None
        if previous is not None:
            available = previous.state.agent_available or previous.agent != agent_id
            state = msgspec.structs.replace(previous.state, agent_available=available)
        for result in sorted(by_check[check_id], key=lambda r: r.started_at):
            state = rules.apply_result(
                state,
                started_at=result.started_at,
                success=result.success,
                response_time_ms=result.response_time_ms,
                error=result.error,
            )
        assert state is not None
        sources[check_id][source] = _Source(
            state=state,
            agent=agent_id,
            status=previous.status if previous else Status.UNKNOWN.value,
            recheck_at=previous.recheck_at if previous else None,
            dirty=True,
        )
    return await _settle_all(engine, checks, sources, now)


async def recompute_checks(
    engine: Engine[Any], check_ids: Sequence[int], now: datetime.datetime, *, drop_removed: bool = False
) -> list[StatusChange]:
    """Re-reads the checks' sources at `now` and settles their statuses; returns the changes.

    Runs in the caller's transaction and publishes nothing: the caller publishes after its commit.
    With `drop_removed`, the states of sources the checks no longer have are deleted.
    """
    checks = await _lock_checks(engine, check_ids)
    if drop_removed:
        for check in checks.values():
            await _drop_removed_sources(engine, check)
    sources = await _read_sources(engine, list(checks))
    return await _settle_all(engine, checks, sources, now)


async def _drop_removed_sources(engine: Engine[Any], check: _Check) -> None:
    rows = await fetch(engine, 'SELECT source FROM source_states WHERE "check" = {}', check.id)
    removed = sorted(str(r["source"]) for r in rows if not check.allows(str(r["source"])))
    if removed:
        await execute(
            engine,
            f'DELETE FROM source_states WHERE "check" = {{}} AND source IN ({placeholders(len(removed))})',  # noqa: S608
            check.id,
            *removed,
        )


async def check_changed(
    engine: Engine[Any], check_id: int, now: datetime.datetime, *, bus: EventBus | None = None
) -> None:
    """After a check's settings changed: drop the sources it no longer has, settle its status.

    Pausing (`is_active` false) gives PAUSED and resuming gives what the sources say, through the
    same compare-and-set, log and event as any other change. Call it in the update's transaction.
    """
    if _in_transaction(engine):
        publish(await recompute_checks(engine, [check_id], now, drop_removed=True), bus, engine)
        return
    async with write_transaction(engine):
        changes = await recompute_checks(engine, [check_id], now, drop_removed=True)
    publish(changes, bus, engine)
