"""Reads behind geo-summary, geo-timeseries and check stats. Callers have checked access already.

- The summary's live fields come from `source_states` (kept by the status engine at ingest); its
  24-hour figures from the raw results of exactly the last 24 hours, one indexed range per source
  on ("check", source, started_at, success, response_time_ms), an index that covers both reads,
  with the p95 (nearest rank) picked inside the database.
- Time series and statistics read only `result_rollups`, never raw results: they lag behind ingest
  by up to one rollup round (coordinator/geo/rollups.py), and their p95 is read from the rollups'
  histogram (coordinator/geo/histogram.py), so it is approximate.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from typing import Any

from piccolo.engine.base import Engine

from coordinator.agents.rows import as_datetime, placeholders
from coordinator.checks.service import StoredCheck
from coordinator.db.sql import fetch, is_sqlite
from coordinator.errors import FieldError, Unprocessable
from coordinator.geo import histogram
from coordinator.geo.rollups import BUCKET_SECONDS
from coordinator.geo.schemas import (
    CheckStats,
    Figures,
    GeoSource,
    GeoSummary,
    GeoTimeseries,
    Period,
    Point,
    Series,
    SourceFigures,
)

DAY = datetime.timedelta(days=1)
MAX_SPAN = datetime.timedelta(days=90)
PERIODS: tuple[tuple[str, datetime.timedelta], ...] = (
    ("24h", DAY),
    ("7d", datetime.timedelta(days=7)),
    ("30d", datetime.timedelta(days=30)),
)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _percent(good: int, total: int) -> float | None:
    return round(100.0 * good / total, 3) if total else None


def _ms(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)


def kind_of(source: str) -> tuple[str, str | None, int | None]:
    """(kind, location_id, agent_id) as the source key says them."""
    prefix, _, rest = source.partition(":")
    if prefix == "geo":
        return "geo", rest, None
    if prefix == "agent":
        return "agent", None, int(rest) if rest.isdigit() else None
    return prefix, None, None


# --- geo-summary ----------------------------------------------------------------------------------


def expected_sources(check: StoredCheck) -> set[str]:
    """Sources the check's settings name, whether or not they have reported yet."""
    fields = check.fields
    sources = {f"agent:{agent_id}" for agent_id in fields.assigned_agent_ids}
    if not fields.assigned_agent_ids and not fields.geo_monitoring_enabled:
        sources.add("central")
    sources.update(key for key, critical in (fields.check_source_critical or {}).items() if critical)
    return sources


async def figures_24h(
    engine: Engine[Any], check_id: int, sources: Sequence[str], now: datetime.datetime
) -> dict[str, dict[str, Any]]:
    """source -> {n, failures, avg_ms, p95_ms} over the results that started in (now - 24 h, now]."""
    if not sources:
        return {}
    since = now - DAY
    rows = await fetch(
        engine,
        "SELECT source, COUNT(*) AS n, SUM(CASE WHEN success THEN 0 ELSE 1 END) AS failures, "  # noqa: S608
        "AVG(response_time_ms) AS avg_ms, COUNT(response_time_ms) AS n_ms FROM results "
        f'WHERE "check" = {{}} AND source IN ({placeholders(len(sources))}) '
        "AND started_at > {} AND started_at <= {} GROUP BY source",
        check_id,
        *sources,
        since,
        now,
    )
    found = {
        str(row["source"]): {"n": int(row["n"]), "failures": int(row["failures"] or 0), "avg_ms": row["avg_ms"]}
        for row in rows
    }
    # p95 by nearest rank: the ceil(0.95 n)-th smallest time, each found by the database walking the
    # source's index range in order of time taken (one statement for every source). A result stored
    # between the two statements can shift the rank by one; that is within what a p95 means.
    timed = [(str(row["source"]), int(row["n_ms"])) for row in rows if int(row["n_ms"])]
    if timed:
        parts, args = [], []
        for index, (source, n_ms) in enumerate(timed):
            parts.append(
                f"SELECT {index} AS i, ms FROM (SELECT response_time_ms AS ms FROM results "  # noqa: S608
                'WHERE "check" = {} AND source = {} AND started_at > {} AND started_at <= {} '
                f"AND response_time_ms IS NOT NULL ORDER BY response_time_ms LIMIT 1 OFFSET {{}}) p{index}"
            )
            args += [check_id, source, since, now, (95 * n_ms + 99) // 100 - 1]
        for row in await fetch(engine, " UNION ALL ".join(parts), *args):
            found[timed[int(row["i"])][0]]["p95_ms"] = row["ms"]
    return found


async def geo_summary(engine: Engine[Any], check: StoredCheck, now: datetime.datetime) -> GeoSummary:
    states = {
        str(row["source"]): row
        for row in await fetch(
            engine,
            "SELECT source, agent, status, last_result_at, last_response_time_ms, last_error "
            'FROM source_states WHERE "check" = {}',
            check.id,
        )
    }
    sources = sorted(set(states) | expected_sources(check))
    figures = await figures_24h(engine, check.id, sources, now)
    critical = check.fields.check_source_critical or {}
    out = []
    for source in sources:
        kind, location_id, agent_id = kind_of(source)
        state = states.get(source, {})
        seen = figures.get(source, {"n": 0, "failures": 0, "avg_ms": None})
        n = int(seen["n"])
        out.append(
            GeoSource(
                source=source,
                kind=kind,
                location_id=location_id,
                agent_id=int(state["agent"]) if state.get("agent") is not None else agent_id,
                status=str(state.get("status") or "UNKNOWN"),
                critical=bool(critical.get(source, False)),
                last_result_at=as_datetime(state.get("last_result_at")),
                last_response_time_ms=_ms(state.get("last_response_time_ms")),
                last_error=state.get("last_error"),
                uptime_24h=_percent(n - int(seen["failures"]), n),
                avg_response_time_ms_24h=_ms(seen["avg_ms"]),
                p95_response_time_ms_24h=_ms(seen.get("p95_ms")),
                results_24h=n,
            )
        )
    return GeoSummary(check_id=check.id, status=check.status, sources=out)


# --- geo-timeseries -------------------------------------------------------------------------------


def parse_time(field: str, raw: str) -> datetime.datetime:
    # A "+" left unencoded in a query string arrives as a space: "…T00:00:00 02:00".
    text = raw.strip()
    if re.fullmatch(r".*\d \d{2}:\d{2}", text):
        text = text[:-6] + "+" + text[-5:]
    if not _RFC3339.fullmatch(text):
        raise Unprocessable.for_fields([FieldError(field=field, message="expected an RFC 3339 time with an offset")])
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError as exc:
        raise Unprocessable.for_fields([FieldError(field=field, message=f"not a valid time: {exc}")]) from None
    return parsed.astimezone(datetime.timezone.utc)


def time_range(
    raw_from: str | None, raw_to: str | None, bucket: int, now: datetime.datetime
) -> tuple[datetime.datetime, datetime.datetime]:
    """(from rounded down to a whole bucket, to), or 422 naming the field at fault."""
    problems = []
    if bucket < BUCKET_SECONDS or bucket % BUCKET_SECONDS:
        problems.append(FieldError(field="bucket", message=f"must be a multiple of {BUCKET_SECONDS} seconds"))
    elif bucket > MAX_SPAN.total_seconds():
        problems.append(FieldError(field="bucket", message="may be at most 90 days"))
    end = parse_time("to", raw_to) if raw_to is not None else now
    start = parse_time("from", raw_from) if raw_from is not None else end - DAY
    if start >= end:
        problems.append(FieldError(field="from", message="must be before `to`"))
    elif end - start > MAX_SPAN:
        problems.append(FieldError(field="from", message="the range may span at most 90 days"))
    if problems:
        raise Unprocessable.for_fields(problems)
    return align(start, bucket), end


def align(moment: datetime.datetime, seconds: int) -> datetime.datetime:
    whole = int((moment - _EPOCH).total_seconds()) // seconds * seconds
    return _EPOCH + datetime.timedelta(seconds=whole)


async def geo_timeseries(
    engine: Engine[Any], check_id: int, start: datetime.datetime, end: datetime.datetime, bucket: int
) -> GeoTimeseries:
    # The database merges rollups into buckets and hands back one text row per source: a week of
    # 5-minute points is 8064 rows, and turning each into a Python dict costs more than the query.
    if is_sqlite(engine):
        epoch, joined = "CAST(strftime('%s', bucket_start) AS INTEGER)", "group_concat(point, ' ')"
    else:
        epoch, joined = "CAST(EXTRACT(EPOCH FROM bucket_start) AS BIGINT)", "string_agg(point, ' ')"
    size = int(bucket)
    rows = await fetch(
        engine,
        f"SELECT source, {joined} AS points FROM ("  # noqa: S608 - constants and a validated int
        "SELECT source, t || ',' || n || ',' || failures || ',' || n_ms || ',' || sum_ms || ',' || max_ms AS point "
        f"FROM (SELECT source, ({epoch} / {size}) * {size} AS t, SUM(count) AS n, SUM(failures) AS failures, "
        "SUM(count_ms) AS n_ms, SUM(sum_ms) AS sum_ms, MAX(max_ms) AS max_ms FROM result_rollups "
        'WHERE "check" = {} AND bucket_start >= {} AND bucket_start < {} GROUP BY source, t) merged'
        ") lines GROUP BY source ORDER BY source",
        check_id,
        start,
        end,
    )
    series = []
    for row in rows:
        parsed = sorted(
            (int(t), int(n), int(failures), int(n_ms), float(sum_ms), float(max_ms))
            for t, n, failures, n_ms, sum_ms, max_ms in (point.split(",") for point in str(row["points"]).split(" "))
        )
        points = [
            Point(
                t=_EPOCH + datetime.timedelta(seconds=t),
                count=n,
                failures=failures,
                avg_ms=round(sum_ms / n_ms, 2) if n_ms else None,
                max_ms=round(max_ms, 2) if n_ms else None,
            )
            for t, n, failures, n_ms, sum_ms, max_ms in parsed
        ]
        series.append(Series(source=str(row["source"]), points=points))
    return GeoTimeseries(check_id=check_id, bucket_seconds=bucket, series=series, from_=start, to=end)


# --- check stats ----------------------------------------------------------------------------------


class _Sums:
    def __init__(self) -> None:
        self.count = 0
        self.failures = 0
        self.count_ms = 0
        self.sum_ms = 0.0
        self.max_ms = 0.0
        self.hist = [0] * len(histogram.COLUMNS)

    def add(self, row: dict[str, Any]) -> None:
        self.count += int(row["n"] or 0)
        self.failures += int(row["failures"] or 0)
        self.count_ms += int(row["n_ms"] or 0)
        self.sum_ms += float(row["sum_ms"] or 0)
        self.max_ms = max(self.max_ms, float(row["max_ms"] or 0))
        for index, column in enumerate(histogram.COLUMNS):
            self.hist[index] += int(row[column] or 0)

    def figures(self) -> dict[str, Any]:
        p95 = histogram.percentile(self.hist, 0.95, self.max_ms) if self.count_ms else None
        return {
            "results": self.count,
            "failures": self.failures,
            "uptime_percent": _percent(self.count - self.failures, self.count),
            "avg_response_time_ms": round(self.sum_ms / self.count_ms, 2) if self.count_ms else None,
            "p95_response_time_ms": _ms(p95),
        }


async def check_stats(engine: Engine[Any], check: StoredCheck, now: datetime.datetime) -> CheckStats:
    hist_sums = ", ".join(f"SUM({column}) AS {column}" for column in histogram.COLUMNS)
    periods = []
    for name, length in PERIODS:
        rows = await fetch(
            engine,
            "SELECT source, SUM(count) AS n, SUM(failures) AS failures, SUM(count_ms) AS n_ms, "  # noqa: S608
            f"SUM(sum_ms) AS sum_ms, MAX(max_ms) AS max_ms, {hist_sums} FROM result_rollups "
            'WHERE "check" = {} AND bucket_start >= {} AND bucket_start <= {} GROUP BY source ORDER BY source',
            check.id,
            now - length,
            now,
        )
        overall = _Sums()
        sources = []
        for row in rows:
            one = _Sums()
            one.add(row)
            overall.add(row)
            sources.append(SourceFigures(source=str(row["source"]), **one.figures()))
        periods.append(
            Period(period=name, from_=now - length, to=now, overall=Figures(**overall.figures()), sources=sources)
        )
    return CheckStats(check_id=check.id, status=check.status, p95_method="histogram", periods=periods)
