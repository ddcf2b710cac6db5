-- The initial schema. `{id}` is the dialect's auto-increment primary key; everything else is
-- plain SQL both SQLite and PostgreSQL take. Column types match what Piccolo reads back.

CREATE TABLE instance_secrets (
    id {id},
    name VARCHAR(64) NOT NULL UNIQUE,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id {id},
    email VARCHAR(254) NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_superadmin BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE organizations (
    id {id},
    name VARCHAR(200) NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE memberships (
    id {id},
    "user" INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    role VARCHAR(16) NOT NULL
);
CREATE UNIQUE INDEX memberships_user_organization ON memberships ("user", organization);
CREATE INDEX memberships_organization ON memberships (organization);

CREATE TABLE access_tokens (
    id {id},
    "user" INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name VARCHAR(100) NOT NULL,
    token_hash VARCHAR(64) NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX access_tokens_user ON access_tokens ("user");

CREATE TABLE geo_locations (
    id VARCHAR(32) PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    region VARCHAR(16) NOT NULL,
    country VARCHAR(2) NOT NULL
);

CREATE TABLE agents (
    id {id},
    organization INTEGER REFERENCES organizations (id) ON DELETE CASCADE,
    name VARCHAR(100) NOT NULL,
    mode VARCHAR(8) NOT NULL,
    location_id VARCHAR(32),
    hostname VARCHAR(255) NOT NULL DEFAULT '',
    version VARCHAR(64) NOT NULL DEFAULT '',
    capabilities JSON NOT NULL DEFAULT '[]',
    key_hash VARCHAR(64) NOT NULL UNIQUE,
    previous_key_hash VARCHAR(64),
    previous_key_expires_at TIMESTAMPTZ,
    heartbeat_interval INTEGER NOT NULL DEFAULT 30,
    last_seen TIMESTAMPTZ,
    clock_skew_seconds FLOAT,
    running_checks INTEGER NOT NULL DEFAULT 0,
    spool_depth INTEGER NOT NULL DEFAULT 0,
    revoked_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX agents_organization ON agents (organization);
CREATE INDEX agents_location_id ON agents (location_id);
CREATE INDEX agents_previous_key_hash ON agents (previous_key_hash);

CREATE TABLE registration_tokens (
    id {id},
    token_hash VARCHAR(64) NOT NULL UNIQUE,
    name VARCHAR(100) NOT NULL,
    mode VARCHAR(8) NOT NULL,
    organization INTEGER REFERENCES organizations (id) ON DELETE CASCADE,
    location_id VARCHAR(32),
    created_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    agent_id INTEGER
);

CREATE TABLE checks (
    id {id},
    uuid VARCHAR(36) NOT NULL UNIQUE,
    organization INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name VARCHAR(200) NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    type VARCHAR(16) NOT NULL,
    url TEXT,
    host VARCHAR(255),
    port INTEGER,
    interval INTEGER NOT NULL,
    timeout INTEGER NOT NULL,
    grace_period INTEGER NOT NULL DEFAULT 0,
    alert_after_failures INTEGER NOT NULL DEFAULT 1,
    degraded_threshold_ms FLOAT,
    expected_status_codes JSON NOT NULL DEFAULT '[]',
    content_match_enabled BOOLEAN NOT NULL DEFAULT false,
    content_match_text TEXT,
    content_match_type VARCHAR(16) NOT NULL DEFAULT 'contains',
    content_match_case_sensitive BOOLEAN NOT NULL DEFAULT true,
    http_method VARCHAR(8) NOT NULL DEFAULT 'GET',
    http_headers JSON NOT NULL DEFAULT '{}',
    http_body TEXT,
    http_follow_redirects BOOLEAN NOT NULL DEFAULT true,
    ssl_verify BOOLEAN NOT NULL DEFAULT true,
    auth_method VARCHAR(8) NOT NULL DEFAULT 'none',
    auth_username VARCHAR(255),
    auth_password TEXT,
    auth_bearer_token TEXT,
    send_text TEXT,
    expect_text TEXT,
    dns_record_type VARCHAR(8) NOT NULL DEFAULT 'A',
    dns_expected_value VARCHAR(255),
    dns_server VARCHAR(64),
    ping_count INTEGER NOT NULL DEFAULT 3,
    geo_monitoring_enabled BOOLEAN NOT NULL DEFAULT false,
    check_source_critical JSON NOT NULL DEFAULT '{}',
    agent_location_statuses JSON NOT NULL DEFAULT '{}',
    status VARCHAR(16) NOT NULL DEFAULT 'UNKNOWN',
    is_active BOOLEAN NOT NULL DEFAULT true,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX checks_organization ON checks (organization);
CREATE INDEX checks_type ON checks (type);
CREATE INDEX checks_status ON checks (status);
CREATE INDEX checks_geo_monitoring_enabled ON checks (geo_monitoring_enabled);

CREATE TABLE check_agents (
    id {id},
    "check" INTEGER NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
    agent INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    UNIQUE ("check", agent)
);
CREATE INDEX check_agents_agent ON check_agents (agent);
