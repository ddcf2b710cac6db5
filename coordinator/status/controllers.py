"""`GET /api/checks/{id}/logs`: a check's status changes, newest first."""

from __future__ import annotations

import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency

from coordinator.agents.rows import as_datetime, loads
from coordinator.auth.principal import Principal, Role
from coordinator.checks import service
from coordinator.context import app_context
from coordinator.db.sql import fetch
from coordinator.params import Limit, Offset, PathId


class CheckLogEntry(msgspec.Struct):
    id: int
    changed_at: datetime.datetime
    old_status: str
    new_status: str
    reason: str
    sources: dict[str, str]


class CheckLogPage(msgspec.Struct):
    total: int
    offset: int
    limit: int
    logs: list[CheckLogEntry]


class CheckLogsController(Controller):
    path = "/api/checks"
    tags = ["checks"]

    @get("/{check_id:int}/logs", operation_id="listCheckLogs")
    async def list_check_logs(
        self,
        request: Request[Any, Any, Any],
        caller: NamedDependency[Principal],
        check_id: PathId,
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> CheckLogPage:
        """Every change of the check's status, newest first, with its reason and each source's status."""
        engine = app_context(request).engine
        await service.get_check(engine, caller, check_id, Role.VIEWER)
        counted = await fetch(engine, 'SELECT COUNT(*) AS n FROM check_status_log WHERE "check" = {}', check_id)
        rows = await fetch(
            engine,
            "SELECT id, changed_at, old_status, new_status, reason, sources FROM check_status_log "
            'WHERE "check" = {} ORDER BY id DESC LIMIT {} OFFSET {}',
            check_id,
            limit,
            offset,
        )
        logs = []
        for row in rows:
            changed_at = as_datetime(row["changed_at"])
            assert changed_at is not None
            logs.append(
                CheckLogEntry(
                    id=int(row["id"]),
                    changed_at=changed_at,
                    old_status=str(row["old_status"]),
                    new_status=str(row["new_status"]),
                    reason=str(row["reason"]),
                    sources={str(k): str(v) for k, v in (loads(row["sources"]) or {}).items()},
                )
            )
        return CheckLogPage(total=int(counted[0]["n"]), offset=offset, limit=limit, logs=logs)
