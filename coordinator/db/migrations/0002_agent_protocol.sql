-- The agent protocol (CONTRACT §3): raw probe results, the agent columns that heartbeats and the
-- status job keep, and the seeded geo locations. Portable SQL, as 0001.

-- One row per probe result. `result_id` is the agent's UUID: the unique index is what makes a
-- replayed batch change nothing. `source` is decided by the coordinator (agent:<id> / geo:<loc>);
-- `agent` has no foreign key so that a result outlives the agent that sent it.
CREATE TABLE results (
    id {id},
    result_id VARCHAR(36) NOT NULL UNIQUE,
    "check" INTEGER NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
    source VARCHAR(64) NOT NULL,
    agent INTEGER,
    started_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    success BOOLEAN NOT NULL,
    response_time_ms FLOAT,
    status_code INTEGER,
    error TEXT,
    details JSON NOT NULL DEFAULT '{}'
);
CREATE INDEX results_check_source_started_at ON results ("check", source, started_at);
CREATE INDEX results_received_at ON results (received_at);

-- Set when the agent's clock is too far off to be trusted (5 minutes ahead, 24 hours behind).
ALTER TABLE agents ADD COLUMN clock_suspect BOOLEAN NOT NULL DEFAULT false;
-- The status last published as `agent.status`: compare-and-set on it decides who publishes a change.
ALTER TABLE agents ADD COLUMN published_status VARCHAR(8) NOT NULL DEFAULT 'offline';

CREATE INDEX registration_tokens_expires_at ON registration_tokens (expires_at);

INSERT INTO geo_locations (id, name, region, country) VALUES ('EU-PL', 'Warsaw', 'EU', 'PL');
INSERT INTO geo_locations (id, name, region, country) VALUES ('EU-DE', 'Frankfurt', 'EU', 'DE');
INSERT INTO geo_locations (id, name, region, country) VALUES ('EU-GB', 'London', 'EU', 'GB');
INSERT INTO geo_locations (id, name, region, country) VALUES ('EU-FR', 'Paris', 'EU', 'FR');
INSERT INTO geo_locations (id, name, region, country) VALUES ('EU-NL', 'Amsterdam', 'EU', 'NL');
INSERT INTO geo_locations (id, name, region, country) VALUES ('US-EAST', 'Ashburn', 'NA', 'US');
INSERT INTO geo_locations (id, name, region, country) VALUES ('US-WEST', 'San Jose', 'NA', 'US');
INSERT INTO geo_locations (id, name, region, country) VALUES ('CA-CENTRAL', 'Toronto', 'NA', 'CA');
INSERT INTO geo_locations (id, name, region, country) VALUES ('SA-BR', 'Sao Paulo', 'SA', 'BR');
INSERT INTO geo_locations (id, name, region, country) VALUES ('AP-SG', 'Singapore', 'AP', 'SG');
INSERT INTO geo_locations (id, name, region, country) VALUES ('AP-JP', 'Tokyo', 'AP', 'JP');
INSERT INTO geo_locations (id, name, region, country) VALUES ('AP-AU', 'Sydney', 'AP', 'AU');
INSERT INTO geo_locations (id, name, region, country) VALUES ('AP-IN', 'Mumbai', 'AP', 'IN');
