-- The status engine (CONTRACT §4): what each source of a check last said, every change of a
-- check's status, and the incidents those changes open and close. Portable SQL, as 0001.

-- One row per (check, source): the fold of that source's results (coordinator.status.rules
-- SourceState) and the status read from it when it was last computed. `agent` is the agent whose
-- result came last (for a geo source, whichever agent of the location ran it); no foreign key,
-- so a row outlives its agent as results do. `agent_available` is false while that agent is
-- offline or revoked; `recheck_at` is when time alone changes the status (a grace period ends,
-- results go stale), for the staleness sweep.
CREATE TABLE source_states (
    id {id},
    "check" INTEGER NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
    source VARCHAR(64) NOT NULL,
    agent INTEGER,
    status VARCHAR(16) NOT NULL DEFAULT 'UNKNOWN',
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    failing_since TIMESTAMPTZ,
    last_result_at TIMESTAMPTZ,
    last_success_at TIMESTAMPTZ,
    last_success BOOLEAN,
    last_response_time_ms FLOAT,
    last_error TEXT,
    agent_available BOOLEAN NOT NULL DEFAULT true,
    recheck_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE ("check", source)
);
CREATE INDEX source_states_agent ON source_states (agent);
CREATE INDEX source_states_recheck_at ON source_states (recheck_at);

-- Every change of a check's status, written only by the writer whose compare-and-set flipped it.
-- `sources` is every source's status at that moment (JSON object source -> status).
CREATE TABLE check_status_log (
    id {id},
    "check" INTEGER NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
    changed_at TIMESTAMPTZ NOT NULL,
    old_status VARCHAR(16) NOT NULL,
    new_status VARCHAR(16) NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    sources JSON NOT NULL DEFAULT '{}'
);
CREATE INDEX check_status_log_check_id ON check_status_log ("check", id);

-- Opened when a check enters DOWN, closed when it leaves DOWN; at most one open per check.
CREATE TABLE incidents (
    id {id},
    "check" INTEGER NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
    start_log_id INTEGER,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ,
    end_log_id INTEGER,
    max_status VARCHAR(16) NOT NULL DEFAULT 'DOWN',
    acknowledged BOOLEAN NOT NULL DEFAULT false,
    resolved BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX incidents_check_ended_at ON incidents ("check", ended_at);
