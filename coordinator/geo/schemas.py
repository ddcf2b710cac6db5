"""What the read-back endpoints answer (CONTRACT §4 "Reading it back", and /api/checks/{id}/stats)."""

from __future__ import annotations

import datetime

import msgspec


class GeoSource(msgspec.Struct, kw_only=True):
    source: str
    kind: str  # "geo" | "agent" | "central"
    location_id: str | None
    agent_id: int | None
    status: str
    critical: bool
    last_result_at: datetime.datetime | None
    last_response_time_ms: float | None
    last_error: str | None
    uptime_24h: float | None  # percent of the last 24 h's results that succeeded; None without results
    avg_response_time_ms_24h: float | None
    p95_response_time_ms_24h: float | None  # exact, nearest rank, over the raw results
    results_24h: int


class GeoSummary(msgspec.Struct, kw_only=True):
    check_id: int
    status: str
    sources: list[GeoSource]


class Point(msgspec.Struct, kw_only=True):
    t: datetime.datetime  # start of the bucket; the point covers [t, t + bucket_seconds)
    count: int
    failures: int
    avg_ms: float | None
    max_ms: float | None


class Series(msgspec.Struct, kw_only=True):
    source: str
    points: list[Point]


class GeoTimeseries(msgspec.Struct, kw_only=True):
    check_id: int
    bucket_seconds: int
    series: list[Series]
    from_: datetime.datetime = msgspec.field(name="from")  # rounded down to a whole bucket
    to: datetime.datetime


class Figures(msgspec.Struct, kw_only=True):
    results: int
    failures: int
    uptime_percent: float | None
    avg_response_time_ms: float | None
    p95_response_time_ms: float | None  # approximate: read from the rollups' latency histogram


class SourceFigures(msgspec.Struct, kw_only=True):
    source: str
    results: int
    failures: int
    uptime_percent: float | None
    avg_response_time_ms: float | None
    p95_response_time_ms: float | None


class Period(msgspec.Struct, kw_only=True):
    period: str  # "24h" | "7d" | "30d"
    from_: datetime.datetime = msgspec.field(name="from")
    to: datetime.datetime
    overall: Figures
    sources: list[SourceFigures]


class CheckStats(msgspec.Struct, kw_only=True):
    check_id: int
    status: str
    p95_method: str  # how p95 figures were obtained: "histogram" (see coordinator/geo/histogram.py)
    periods: list[Period]
