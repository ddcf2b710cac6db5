"""Piccolo tables: small classes, one per stored thing. Services own the queries."""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    OnDelete,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class InstanceSecret(Table, tablename="instance_secrets"):
    """Secrets every coordinator sharing this database must agree on (the JWT signing key)."""

    name = Varchar(length=64, unique=True)
    value = Text()


class User(Table, tablename="users"):
    id = Serial(primary_key=True)
    email = Varchar(length=254, unique=True)
    password_hash = Text()
    is_superadmin = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())


class Organization(Table, tablename="organizations"):
    id = Serial(primary_key=True)
    name = Varchar(length=200, unique=True)
    created_at = Timestamptz(default=TimestamptzNow())


class Membership(Table, tablename="memberships"):
    id = Serial(primary_key=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    organization = ForeignKey(Organization, on_delete=OnDelete.cascade, index=True)
    role = Varchar(length=16)


class AccessToken(Table, tablename="access_tokens"):
    """A personal access token (`pat_…`); only its SHA-256 is stored."""

    id = Serial(primary_key=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    name = Varchar(length=100)
    token_hash = Varchar(length=64, unique=True)
    created_at = Timestamptz(default=TimestamptzNow())
    last_used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class GeoLocation(Table, tablename="geo_locations"):
    id = Varchar(length=32, primary_key=True)
    name = Varchar(length=100)
    region = Varchar(length=16)
    country = Varchar(length=2)


class Agent(Table, tablename="agents"):
    """A probe agent: private (of one organization) or geo (of one location, shared by all)."""

    id = Serial(primary_key=True)
    organization = ForeignKey(Organization, on_delete=OnDelete.cascade, null=True, index=True)
    name = Varchar(length=100)
    mode = Varchar(length=8)
    location_id = Varchar(length=32, null=True, default=None, index=True)
    hostname = Varchar(length=255, default="")
    version = Varchar(length=64, default="")
    capabilities = JSON(default="[]")
    key_hash = Varchar(length=64, unique=True)
    # During a key rotation the previous key keeps working until this time.
    previous_key_hash = Varchar(length=64, null=True, default=None, index=True)
    previous_key_expires_at = Timestamptz(null=True, default=None)
    heartbeat_interval = Integer(default=30)
    last_seen = Timestamptz(null=True, default=None)
    clock_skew_seconds = Float(null=True, default=None)
    running_checks = Integer(default=0)
    spool_depth = Integer(default=0)
    revoked_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    clock_suspect = Boolean(default=False)
    published_status = Varchar(length=8, default="offline")


class RegistrationToken(Table, tablename="registration_tokens"):
    id = Serial(primary_key=True)
    token_hash = Varchar(length=64, unique=True)
    name = Varchar(length=100)
    mode = Varchar(length=8)
    organization = ForeignKey(Organization, on_delete=OnDelete.cascade, null=True)
    location_id = Varchar(length=32, null=True, default=None)
    created_by = ForeignKey(User, on_delete=OnDelete.set_null, null=True)
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
    agent_id = Integer(null=True, default=None)


class Check(Table, tablename="checks"):
    id = Serial(primary_key=True)
    uuid = Varchar(length=36, unique=True)
    organization = ForeignKey(Organization, on_delete=OnDelete.cascade, index=True)
    name = Varchar(length=200)
    description = Text(default="")
    type = Varchar(length=16, index=True)
    url = Text(null=True, default=None)
    host = Varchar(length=255, null=True, default=None)
    port = Integer(null=True, default=None)
    interval = Integer(default=60)
    timeout = Integer(default=10)
    grace_period = Integer(default=0)
    alert_after_failures = Integer(default=1)
    degraded_threshold_ms = Float(null=True, default=None)
    expected_status_codes = JSON(default="[]")
    content_match_enabled = Boolean(default=False)
    content_match_text = Text(null=True, default=None)
    content_match_type = Varchar(length=16, default="contains")
    content_match_case_sensitive = Boolean(default=True)
    http_method = Varchar(length=8, default="GET")
    http_headers = JSON(default="{}")
    http_body = Text(null=True, default=None)
    http_follow_redirects = Boolean(default=True)
    ssl_verify = Boolean(default=True)
    auth_method = Varchar(length=8, default="none")
    auth_username = Varchar(length=255, null=True, default=None)
    auth_password = Text(null=True, default=None)
    auth_bearer_token = Text(null=True, default=None)
    send_text = Text(null=True, default=None)
    expect_text = Text(null=True, default=None)
    dns_record_type = Varchar(length=8, default="A")
    dns_expected_value = Varchar(length=255, null=True, default=None)
    dns_server = Varchar(length=64, null=True, default=None)
    ping_count = Integer(default=3)
    geo_monitoring_enabled = Boolean(default=False, index=True)
    check_source_critical = JSON(default="{}")
    agent_location_statuses = JSON(default="{}")
    status = Varchar(length=16, default="UNKNOWN", index=True)
    is_active = Boolean(default=True)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class CheckAgent(Table, tablename="check_agents"):
    """A private agent assigned to run a check (`assigned_agent_ids`)."""

    id = Serial(primary_key=True)
    check = ForeignKey(Check, on_delete=OnDelete.cascade, index=True)
    agent = ForeignKey(Agent, on_delete=OnDelete.cascade, index=True)


class Result(Table, tablename="results"):
    """One probe result as an agent sent it, with the source and receive time the server decided."""

    id = Serial(primary_key=True)
    result_id = Varchar(length=36, unique=True)
    check = ForeignKey(Check, on_delete=OnDelete.cascade)
    source = Varchar(length=64)
    agent = Integer(null=True, default=None)
    started_at = Timestamptz()
    received_at = Timestamptz(index=True)
    success = Boolean()
    response_time_ms = Float(null=True, default=None)
    status_code = Integer(null=True, default=None)
    error = Text(null=True, default=None)
    details = JSON(default="{}")


ALL_TABLES: tuple[type[Table], ...] = (
    InstanceSecret,
    User,
    Organization,
    Membership,
    AccessToken,
    GeoLocation,
    Agent,
    RegistrationToken,
    Check,
    CheckAgent,
    Result,
)
