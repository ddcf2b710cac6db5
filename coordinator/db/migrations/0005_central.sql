-- Central execution (CONTRACT §4, source `central`): when the coordinator next probes a check that
-- no agent runs. NULL: as soon as possible. A coordinator claims a due run by moving this value
-- forward with a compare-and-set, so that coordinators sharing a database run it once.
ALTER TABLE checks ADD COLUMN central_next_run_at TIMESTAMPTZ;
