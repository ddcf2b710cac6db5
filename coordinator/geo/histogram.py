"""The fixed latency histogram kept in every rollup, and the percentile read back from it.

A histogram whose buckets are fixed columns adds up with plain SQL (`h_100 = h_100 + excluded.h_100`),
the same on SQLite and PostgreSQL, which a JSON sketch would not. The price is precision: a
percentile read from it is interpolated inside one bucket, so it is off by at most that bucket's
width (about ±15 % of the value between 100 ms and 10 s), and never above the largest time seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Upper bounds (ms, inclusive) of every bucket but the last, which holds whatever is slower.
BOUNDS_MS: tuple[int, ...] = (
    10, 25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000,
)  # fmt: skip
COLUMNS: tuple[str, ...] = (*(f"h_{bound}" for bound in BOUNDS_MS), "h_inf")


def bucket_sums_sql(value: str) -> str:
    """`SUM(CASE …) AS h_…` for every bucket, counting `value` (a SQL expression; NULL counts nowhere)."""
    parts = []
    for index, column in enumerate(COLUMNS):
        conditions = []
        if index > 0:
            conditions.append(f"{value} > {BOUNDS_MS[index - 1]}")
        if index < len(BOUNDS_MS):
            conditions.append(f"{value} <= {BOUNDS_MS[index]}")
        parts.append(f"SUM(CASE WHEN {' AND '.join(conditions)} THEN 1 ELSE 0 END) AS {column}")
    return ", ".join(parts)


def percentile(counts: Sequence[int], fraction: float, max_ms: float) -> float | None:
    """The `fraction` percentile (nearest rank), interpolated linearly inside its bucket.

    `max_ms` is the largest value counted: it closes the open last bucket and caps the answer.
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index, count in enumerate(counts):
        if count <= 0:
            continue
        if seen + count >= rank:
            lower = float(BOUNDS_MS[index - 1]) if index > 0 else 0.0
            upper = float(BOUNDS_MS[index]) if index < len(BOUNDS_MS) else max(max_ms, lower)
            value = lower + (upper - lower) * (rank - seen) / count
            return min(value, max_ms)
        seen += count
    return max_ms
