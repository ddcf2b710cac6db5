"""Online or offline (CONTRACT §3): an agent is offline once it has missed three heartbeat intervals.

The status is computed from `last_seen` whenever it is read, so an answer is never staler than the
clock; the background job only notices the change, to publish it.
"""

from __future__ import annotations

import datetime
from typing import Any

from piccolo.engine.base import Engine

from coordinator.agents.rows import as_datetime
from coordinator.db.sql import fetch

MISSED_HEARTBEATS_OFFLINE = 3


def is_online(last_seen: Any, heartbeat_interval: int, now: datetime.datetime) -> bool:
    seen = as_datetime(last_seen)
    if seen is None:
        return False
    return now - seen <= datetime.timedelta(seconds=MISSED_HEARTBEATS_OFFLINE * heartbeat_interval)


def status_of(last_seen: Any, heartbeat_interval: int, revoked: bool, now: datetime.datetime) -> str:
    return "online" if not revoked and is_online(last_seen, heartbeat_interval, now) else "offline"


async def online_geo_agents(
    engine: Engine[Any], now: datetime.datetime, location_id: str | None = None
) -> dict[str, list[int]]:
    """location id → its online geo agents' ids; every location when `location_id` is None."""
    sql = (
        "SELECT id, location_id, last_seen, heartbeat_interval FROM agents "
        "WHERE mode = 'geo' AND revoked_at IS NULL AND last_seen IS NOT NULL"
    )
    args: list[Any] = []
    if location_id is not None:
        sql += " AND location_id = {}"
        args.append(location_id)
    online: dict[str, list[int]] = {}
    for row in await fetch(engine, sql + " ORDER BY id", *args):
        if is_online(row["last_seen"], int(row["heartbeat_interval"]), now):
            online.setdefault(str(row["location_id"]), []).append(int(row["id"]))
    return online
