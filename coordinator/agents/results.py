"""POST /api/agents/results: a batch of probe results in, one transaction, each result judged alone.

A result is rejected (with its reason) when it is malformed or its check is not this agent's; the
rest of the batch is still taken. A result_id seen before, in this batch or an earlier one, is a
duplicate and changes nothing: the unique index on result_id decides, so a batch replayed after a
lost answer, or two coordinators receiving the same batch, store each result once.
"""

from __future__ import annotations

import datetime
import math
import uuid
from typing import Any

import msgspec
from piccolo.engine.base import Engine

from coordinator.agents.assignment import accepted_check_ids
from coordinator.agents.auth import AuthenticatedAgent
from coordinator.agents.rows import write_transaction
from coordinator.agents.schemas import RejectedResult, ResultsOut
from coordinator.agents.service import CLOCK_AHEAD_LIMIT_S
from coordinator.db.sql import fetch
from coordinator.errors import PayloadTooLarge
from coordinator.params import MAX_ID
from coordinator.status.engine import apply_results
from shared.wire import ProbeResult

MAX_RESULTS = 1000
MAX_BYTES = 1_048_576
# Rows per INSERT: 11 parameters each keeps a statement well under both engines' parameter limits.
_ROWS_PER_INSERT = 500
_ERROR_MAX_CHARS = 4096
_LABEL_MAX_CHARS = 64
_COLUMNS = (
    'result_id, "check", source, agent, started_at, received_at, success, response_time_ms, status_code, error, details'
)
_ROW = "(" + ", ".join("{}" for _ in range(11)) + ")"


def parse_result(raw: Any) -> ProbeResult | RejectedResult:
    """A well-formed result (result_id made canonical, started_at in UTC), or why it is not one."""
    if not isinstance(raw, dict):
        return RejectedResult("", "a result must be a JSON object")
    raw_id = raw.get("result_id")
    label = raw_id[:_LABEL_MAX_CHARS] if isinstance(raw_id, str) else ""
    if raw.get("details", {}) is None:
        raw = {**raw, "details": {}}
    try:
        result = msgspec.convert(raw, ProbeResult)
    except msgspec.ValidationError as exc:
        return RejectedResult(label, str(exc))
    try:
        canonical_id = str(uuid.UUID(result.result_id))
    except ValueError:
        return RejectedResult(label, "result_id: must be a UUID")
    problem = _field_problem(result)
    if problem:
        return RejectedResult(label, problem)
    return msgspec.structs.replace(
        result,
        result_id=canonical_id,
        started_at=result.started_at.astimezone(datetime.timezone.utc),
        error=None if result.error is None else result.error[:_ERROR_MAX_CHARS],
    )


def _field_problem(result: ProbeResult) -> str | None:
    if not 1 <= result.check_id <= MAX_ID:
        return "check_id: must be a positive check id"
    if result.started_at.tzinfo is None:
        return "started_at: must carry a UTC offset (RFC 3339)"
    if result.response_time_ms is not None and not (
        math.isfinite(result.response_time_ms) and result.response_time_ms >= 0
    ):
        return "response_time_ms: must be a non-negative number"
    if result.status_code is not None and not 100 <= result.status_code <= 599:
        return "status_code: must be an HTTP status between 100 and 599"
    return None


async def ingest(
    engine: Engine[Any], agent: AuthenticatedAgent, batch: list[Any], now: datetime.datetime
) -> ResultsOut:
    if len(batch) > MAX_RESULTS:
        raise PayloadTooLarge(f"{len(batch)} results: at most {MAX_RESULTS} a request, send the rest in another")
    rejected: list[RejectedResult] = []
    parsed: list[ProbeResult] = []
    for raw in batch:
        outcome = parse_result(raw)
        if isinstance(outcome, RejectedResult):
            rejected.append(outcome)
        else:
            parsed.append(outcome)
    assigned = await accepted_check_ids(engine, agent, sorted({r.check_id for r in parsed}))
    fresh: dict[str, ProbeResult] = {}
    repeated_in_batch = 0
    for result in parsed:
        if result.check_id not in assigned:
            rejected.append(
                RejectedResult(result.result_id, f"check_id: check {result.check_id} is not assigned to this agent")
            )
        elif result.result_id in fresh:
            repeated_in_batch += 1
        else:
            fresh[result.result_id] = result
    stored: list[ProbeResult] = []
    if fresh:
        stored = await store_results(engine, agent.source, agent.id, list(fresh.values()), now)
        await _flag_clock_ahead(engine, agent, list(fresh.values()), now)
    return ResultsOut(accepted=len(stored), duplicates=repeated_in_batch + len(fresh) - len(stored), rejected=rejected)


async def store_results(
    engine: Engine[Any], source: str, agent_id: int | None, results: list[ProbeResult], now: datetime.datetime
) -> list[ProbeResult]:
    """Stores results of one source, received at `now`; returns those that were new.

    The one path of every result into the database, an agent's batch as well as the coordinator's
    own (`central`) probes: a result_id already stored is skipped, and the status hook sees exactly
    the new results, in the same write transaction as their rows. `results` must not repeat a
    result_id.
    """
    if not results:
        return []
    async with write_transaction(engine):
        inserted = await _insert(engine, source, agent_id, results, now)
        stored = [result for result in results if result.result_id in inserted]
        await update_source_states(engine, source, agent_id, stored, now)
    return stored


async def _insert(
    engine: Engine[Any], source: str, agent_id: int | None, results: list[ProbeResult], now: datetime.datetime
) -> set[str]:
    """Inserts what is new; returns the result_ids actually inserted (known ones are skipped)."""
    inserted: set[str] = set()
    for start in range(0, len(results), _ROWS_PER_INSERT):
        chunk = results[start : start + _ROWS_PER_INSERT]
        args: list[Any] = []
        for r in chunk:
            args += [
                r.result_id,
                r.check_id,
                source,
                agent_id,
                r.started_at,
                now,
                r.success,
                None if r.response_time_ms is None else float(r.response_time_ms),
                r.status_code,
                r.error,
                msgspec.json.encode(r.details).decode(),
            ]
        rows = await fetch(
            engine,
            f"INSERT INTO results ({_COLUMNS}) VALUES {', '.join(_ROW for _ in chunk)} "  # noqa: S608 - constants
            "ON CONFLICT (result_id) DO NOTHING RETURNING result_id",
            *args,
        )
        inserted.update(str(row["result_id"]) for row in rows)
    return inserted


async def _flag_clock_ahead(
    engine: Engine[Any], agent: AuthenticatedAgent, results: list[ProbeResult], now: datetime.datetime
) -> None:
    """A result that started in the future says the agent's clock runs ahead: flag it, keep both times.

    Only "ahead" can be told from results: a result that started long ago may be a spooled replay
    after an outage. The heartbeat's sent_at, always sent live, measures the clock both ways.
    """
    ahead = max((r.started_at - now).total_seconds() for r in results)
    if ahead > CLOCK_AHEAD_LIMIT_S:
        await fetch(
            engine,
            "UPDATE agents SET clock_suspect = {}, clock_skew_seconds = {} WHERE id = {}",
            True,
            float(ahead),
            agent.id,
        )


async def update_source_states(
    engine: Engine[Any], source: str, agent_id: int | None, stored: list[ProbeResult], now: datetime.datetime
) -> None:
    """After insert, update source states: the status engine hooks in here.

    It runs inside the batch's transaction with the results just stored (duplicates excluded), so
    that the touched (check, source) states and check statuses change together with the rows that
    explain them. The status engine folds them and settles the touched checks' statuses.
    """
    await apply_results(engine, source, agent_id, stored, now)
