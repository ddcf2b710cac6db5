"""Which checks an agent runs, as the CheckSpecs it is handed, and their ETag.

A private agent runs the active checks that list it in `assigned_agent_ids`. A geo agent runs the
active geo-enabled checks that rendezvous hashing gives it among its location's online agents.
Heartbeat checks are passive (they wait for pings) and go to no agent.
A check with neither assigned agents nor geo monitoring is probed by the coordinator itself
(`CENTRAL`, `central_specs`; coordinator.central.runner).
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

import msgspec
from piccolo.engine.base import Engine

from coordinator.agents import geo
from coordinator.agents.auth import AuthenticatedAgent
from coordinator.agents.liveness import online_geo_agents
from coordinator.agents.rows import loads, placeholders
from coordinator.db.sql import fetch
from shared.wire import CheckSpec

# Every CheckSpec field the checks table stores; the others keep the spec's defaults.
_NOT_STORED = frozenset({"ssl_ca_pem", "max_response_bytes"})
_SPEC_COLUMNS = tuple(f for f in CheckSpec.__struct_fields__ if f not in _NOT_STORED)
_JSON_COLUMNS = ("http_headers", "expected_status_codes")
_SELECT = ", ".join(f'c."{column}"' for column in _SPEC_COLUMNS)
_RUNNABLE = "c.is_active AND c.type <> 'heartbeat'"


def _spec(row: dict[str, Any]) -> CheckSpec:
    values = {column: row[column] for column in _SPEC_COLUMNS if row[column] is not None}
    for column in _JSON_COLUMNS:
        if column in values:
            values[column] = loads(values[column])
    return msgspec.convert(values, CheckSpec, strict=False)


async def _private_specs(engine: Engine[Any], agent_id: int) -> list[CheckSpec]:
    rows = await fetch(
        engine,
        f'SELECT {_SELECT} FROM checks c JOIN check_agents ca ON ca."check" = c.id '  # noqa: S608 - column names are constants
        f"WHERE ca.agent = {{}} AND {_RUNNABLE} ORDER BY c.id",
        agent_id,
    )
    return [_spec(row) for row in rows]


async def _geo_specs(engine: Engine[Any], agent: AuthenticatedAgent, now: datetime.datetime) -> list[CheckSpec]:
    online = (await online_geo_agents(engine, now, agent.location_id)).get(agent.location_id or "", [])
    if agent.id not in online:
        # An agent that has not heartbeated lately runs nothing: its location's other agents,
        # which do count as online, have taken its share.
        return []
    candidates = await fetch(
        engine,
        f"SELECT c.id FROM checks c WHERE c.geo_monitoring_enabled AND {_RUNNABLE} ORDER BY c.id",  # noqa: S608
    )
    mine = geo.checks_of(agent.id, online, [int(row["id"]) for row in candidates])
    if not mine:
        return []
    rows = await fetch(
        engine,
        f"SELECT {_SELECT} FROM checks c WHERE c.id IN ({placeholders(len(mine))}) ORDER BY c.id",  # noqa: S608
        *mine,
    )
    return [_spec(row) for row in rows]


async def assigned_specs(engine: Engine[Any], agent: AuthenticatedAgent, now: datetime.datetime) -> list[CheckSpec]:
    if agent.mode == "geo":
        return await _geo_specs(engine, agent, now)
    return await _private_specs(engine, agent.id)


def etag_of(specs: list[CheckSpec]) -> str:
    """A strong ETag over the exact list handed out: any change of any field changes it."""
    digest = hashlib.sha256(msgspec.json.encode(specs)).hexdigest()
    return f'"{digest[:32]}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: a list of tags, weak ones compared weakly, or `*`."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip().removeprefix("W/")
        if tag in ("*", etag):
            return True
    return False


async def accepted_check_ids(engine: Engine[Any], agent: AuthenticatedAgent, check_ids: list[int]) -> set[int]:
    """Those of `check_ids` this agent's results are taken for.

    A private agent: the checks that list it. A geo agent: any geo-enabled check, not only the ones
    hashed to it right now. Its share moves whenever a peer of its location comes or goes, and the
    results it spooled before the move were still measured from that location; the source is the
    location either way.
    """
    if not check_ids:
        return set()
    if agent.mode == "geo":
        rows = await fetch(
            engine,
            f"SELECT id FROM checks WHERE geo_monitoring_enabled AND id IN ({placeholders(len(check_ids))})",  # noqa: S608
            *check_ids,
        )
        return {int(row["id"]) for row in rows}
    rows = await fetch(
        engine,
        'SELECT "check" FROM check_agents WHERE agent = {} '  # noqa: S608 - only placeholders added
        f'AND "check" IN ({placeholders(len(check_ids))})',
        agent.id,
        *check_ids,
    )
    return {int(row["check"]) for row in rows}


# Checks that no agent runs, which the coordinator probes itself (source `central`): no assigned
# agent and geo monitoring off.
CENTRAL = (
    f"{_RUNNABLE} AND NOT c.geo_monitoring_enabled "  # noqa: S608 - constants only
    'AND NOT EXISTS (SELECT 1 FROM check_agents ca WHERE ca."check" = c.id)'
)


async def central_specs(engine: Engine[Any], check_ids: list[int]) -> list[CheckSpec]:
    """The CheckSpecs of those of `check_ids` that are still central, as an agent would get them."""
    if not check_ids:
        return []
    rows = await fetch(
        engine,
        f"SELECT {_SELECT} FROM checks c WHERE {CENTRAL} "  # noqa: S608 - column names are constants
        f"AND c.id IN ({placeholders(len(check_ids))}) ORDER BY c.id",
        *check_ids,
    )
    return [_spec(row) for row in rows]
