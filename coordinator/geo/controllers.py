"""Routes that read statuses back: per-source summary and time series of a check, and its stats.

Anyone who may read the check (VIEWER+) may read these; another organization's check answers 404.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from coordinator.agents.clock import clock_of
from coordinator.auth.principal import Principal, Role
from coordinator.checks import service
from coordinator.context import app_context
from coordinator.geo import queries
from coordinator.geo.rollups import BUCKET_SECONDS
from coordinator.geo.schemas import CheckStats, GeoSummary, GeoTimeseries
from coordinator.params import PathId


def _now(request: Request[Any, Any, Any]) -> datetime.datetime:
    return clock_of(request).now()


class GeoController(Controller):
    path = "/api/agents/checks"
    tags = ["status"]

    @get("/{check_id:int}/geo-summary", operation_id="getGeoSummary")
    async def geo_summary(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal], check_id: PathId
    ) -> GeoSummary:
        """Every source of the check: its live status and last result, and its last 24 hours."""
        engine = app_context(request).engine
        check = await service.get_check(engine, caller, check_id, Role.VIEWER)
        return await queries.geo_summary(engine, check, _now(request))

    @get("/{check_id:int}/geo-timeseries", operation_id="getGeoTimeseries")
    async def geo_timeseries(
        self,
        request: Request[Any, Any, Any],
        caller: NamedDependency[Principal],
        check_id: PathId,
        from_: Annotated[str | None, QueryParameter(name="from", max_length=64)] = None,
        to: Annotated[str | None, QueryParameter(max_length=64)] = None,
        bucket: Annotated[int, QueryParameter(ge=-(2**31), le=2**31)] = BUCKET_SECONDS,
    ) -> GeoTimeseries:
        """Per source, results per bucket (a multiple of 300 s) from `from` (default: 24 h before `to`)
        to `to` (default: now), at most 90 days. Read from the 5-minute rollups, so the newest
        results show up after the next rollup round; buckets without results are left out."""
        engine = app_context(request).engine
        await service.get_check(engine, caller, check_id, Role.VIEWER)
        start, end = queries.time_range(from_, to, bucket, _now(request))
        return await queries.geo_timeseries(engine, check_id, start, end, bucket)


class CheckStatsController(Controller):
    path = "/api/checks"
    tags = ["checks"]

    @get("/{check_id:int}/stats", operation_id="getCheckStats")
    async def check_stats(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal], check_id: PathId
    ) -> CheckStats:
        """Uptime, mean and p95 response time over 24 h, 7 d and 30 d, overall and per source.

        Read from the 5-minute rollups: p95 is interpolated in a latency histogram (within one
        histogram bucket of the exact value), and the newest results count after the next round.
        """
        engine = app_context(request).engine
        check = await service.get_check(engine, caller, check_id, Role.VIEWER)
        return await queries.check_stats(engine, check, _now(request))
