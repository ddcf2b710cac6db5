-- Rollups of probe results (issue 4): per (check, source, 5-minute bucket) counts, latency sums and a
-- fixed latency histogram, folded in by coordinator/geo/rollups.py. The time series and the 7/30-day
-- statistics read these rows instead of scanning raw results, and they outlive the raw results'
-- retention. Every column is additive (or a maximum), so folding a later batch into an existing
-- bucket is an upsert that adds: the same SQL on SQLite (>= 3.24) and PostgreSQL.

-- `bucket_start` is the start of the 5-minute bucket (UTC, a multiple of 300 s since the epoch) that
-- holds the results' started_at. `count_ms` counts the results that had a response time: `sum_ms`
-- over it is the mean, and `max_ms` is 0 while it is 0. h_<n> counts response times in
-- (previous bound, n] ms, h_inf those above 30000 ms; the bounds live in coordinator/geo/histogram.py.
CREATE TABLE result_rollups (
    id {id},
    "check" INTEGER NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
    source VARCHAR(64) NOT NULL,
    bucket_start TIMESTAMPTZ NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    count_ms INTEGER NOT NULL DEFAULT 0,
    sum_ms FLOAT NOT NULL DEFAULT 0,
    max_ms FLOAT NOT NULL DEFAULT 0,
    h_10 INTEGER NOT NULL DEFAULT 0,
    h_25 INTEGER NOT NULL DEFAULT 0,
    h_50 INTEGER NOT NULL DEFAULT 0,
    h_75 INTEGER NOT NULL DEFAULT 0,
    h_100 INTEGER NOT NULL DEFAULT 0,
    h_150 INTEGER NOT NULL DEFAULT 0,
    h_200 INTEGER NOT NULL DEFAULT 0,
    h_250 INTEGER NOT NULL DEFAULT 0,
    h_300 INTEGER NOT NULL DEFAULT 0,
    h_400 INTEGER NOT NULL DEFAULT 0,
    h_500 INTEGER NOT NULL DEFAULT 0,
    h_750 INTEGER NOT NULL DEFAULT 0,
    h_1000 INTEGER NOT NULL DEFAULT 0,
    h_1500 INTEGER NOT NULL DEFAULT 0,
    h_2000 INTEGER NOT NULL DEFAULT 0,
    h_3000 INTEGER NOT NULL DEFAULT 0,
    h_5000 INTEGER NOT NULL DEFAULT 0,
    h_10000 INTEGER NOT NULL DEFAULT 0,
    h_30000 INTEGER NOT NULL DEFAULT 0,
    h_inf INTEGER NOT NULL DEFAULT 0,
    UNIQUE ("check", source, bucket_start)
);
-- Reading a time range of every source of one check.
CREATE INDEX result_rollups_check_bucket ON result_rollups ("check", bucket_start);
-- Pruning old buckets.
CREATE INDEX result_rollups_bucket ON result_rollups (bucket_start);

-- The high-water mark: every result with id <= last_id is folded into result_rollups. One row; the
-- job moves it by compare-and-set in the transaction that folds, so two coordinators never fold
-- the same results twice.
CREATE TABLE rollup_progress (
    id INTEGER PRIMARY KEY,
    last_id INTEGER NOT NULL,
    updated_at TIMESTAMPTZ
);
INSERT INTO rollup_progress (id, last_id) VALUES (1, 0);

-- geo-summary counts, averages and ranks the last 24 hours of raw results per (check, source).
-- A source's results are spread over the table (they arrive between every other check's), so an
-- index that only locates them costs one table page per result; carrying success and the
-- response time in the index answers from the index alone (scripts/bench/geo_queries.py, 2,000
-- checks on SQLite: geo-summary p95 39 ms without it, 18 ms with it). It replaces the index of
-- 0002, which is its prefix, so ingest still maintains one index here.
CREATE INDEX results_check_source_started_at_covering ON results ("check", source, started_at, success, response_time_ms);
DROP INDEX results_check_source_started_at;
