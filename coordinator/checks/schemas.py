"""The Checks API's shapes.

`CheckSettings` holds what a person sets and may read back; `CheckFields` adds the write-only
secrets (sent to agents, never in an API answer); `CheckOut` adds what the server owns.
`CheckInput` is the request body of POST, PUT and PATCH: every field optional (UNSET), so that
one shape serves a full write and a partial one.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from coordinator.params import Id
from shared.wire import CheckType

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ContentMatchType = Literal["contains", "not_contains", "regex"]
AuthMethod = Literal["none", "basic", "bearer"]
DnsRecordType = Literal["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA"]

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Description = Annotated[str, Meta(max_length=2000)]
Url = Annotated[str, Meta(min_length=1, max_length=2048)]
Host = Annotated[str, Meta(min_length=1, max_length=255)]
Port = Annotated[int, Meta(ge=1, le=65535)]
Interval = Annotated[int, Meta(ge=10, le=86400, description="seconds between probes, 10 s to 1 day")]
Timeout = Annotated[int, Meta(ge=1, le=300, description="seconds; must be below the interval")]
GracePeriod = Annotated[int, Meta(ge=0, le=30 * 86400)]
AlertAfter = Annotated[int, Meta(ge=1, le=100)]
ThresholdMs = Annotated[float, Meta(gt=0, le=600_000)]
StatusCodes = Annotated[list[Annotated[int, Meta(ge=100, le=599)]], Meta(max_length=100)]
MatchText = Annotated[str, Meta(max_length=1000)]
# Header names are RFC 9110 tokens; values may not hold CR or LF (no header injection).
HeaderName = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
HeaderValue = Annotated[str, Meta(max_length=8192, pattern=r"^[^\r\n]*$")]
Headers = Annotated[dict[HeaderName, HeaderValue], Meta(max_length=50)]
Body = Annotated[str, Meta(max_length=65536)]
Secret = Annotated[str, Meta(min_length=1, max_length=4096)]
ShortText = Annotated[str, Meta(max_length=4096)]
PingCount = Annotated[int, Meta(ge=1, le=20)]
AgentId = Id
AgentIds = Annotated[list[AgentId], Meta(max_length=100)]
SourceCritical = Annotated[dict[Annotated[str, Meta(max_length=64)], bool], Meta(max_length=200)]


class CheckSettings(msgspec.Struct, kw_only=True):
    name: str
    type: CheckType
    description: str = ""
    url: str | None = None
    host: str | None = None
    port: int | None = None
    interval: int = 60
    timeout: int = 10
    grace_period: int = 0
    alert_after_failures: int = 1
    degraded_threshold_ms: float | None = None
    expected_status_codes: list[int] = msgspec.field(default_factory=list)
    content_match_enabled: bool = False
    content_match_text: str | None = None
    content_match_type: ContentMatchType = "contains"
    content_match_case_sensitive: bool = True
    http_method: HttpMethod = "GET"
    http_headers: dict[str, str] = msgspec.field(default_factory=dict)
    http_body: str | None = None
    http_follow_redirects: bool = True
    ssl_verify: bool = True
    auth_method: AuthMethod = "none"
    auth_username: str | None = None
    send_text: str | None = None
    expect_text: str | None = None
    dns_record_type: DnsRecordType = "A"
    dns_expected_value: str | None = None
    dns_server: str | None = None
    ping_count: int = 3
    geo_monitoring_enabled: bool = False
    assigned_agent_ids: list[int] = msgspec.field(default_factory=list)
    check_source_critical: dict[str, bool] = msgspec.field(default_factory=dict)
    is_active: bool = True


class CheckFields(CheckSettings, kw_only=True):
    auth_password: str | None = None
    auth_bearer_token: str | None = None


WRITE_ONLY = ("auth_password", "auth_bearer_token")


class CheckOut(CheckSettings, kw_only=True):
    id: int
    uuid: str
    organization_id: int
    status: str
    agent_location_statuses: dict[str, str]
    auth_password_set: bool
    auth_bearer_token_set: bool
    created_at: datetime.datetime
    updated_at: datetime.datetime


class CheckInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    type: CheckType | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    url: Url | UnsetType | None = UNSET
    host: Host | UnsetType | None = UNSET
    port: Port | UnsetType | None = UNSET
    interval: Interval | UnsetType = UNSET
    timeout: Timeout | UnsetType = UNSET
    grace_period: GracePeriod | UnsetType = UNSET
    alert_after_failures: AlertAfter | UnsetType = UNSET
    degraded_threshold_ms: ThresholdMs | UnsetType | None = UNSET
    expected_status_codes: StatusCodes | UnsetType = UNSET
    content_match_enabled: bool | UnsetType = UNSET
    content_match_text: MatchText | UnsetType | None = UNSET
    content_match_type: ContentMatchType | UnsetType = UNSET
    content_match_case_sensitive: bool | UnsetType = UNSET
    http_method: HttpMethod | UnsetType = UNSET
    http_headers: Headers | UnsetType = UNSET
    http_body: Body | UnsetType | None = UNSET
    http_follow_redirects: bool | UnsetType = UNSET
    ssl_verify: bool | UnsetType = UNSET
    auth_method: AuthMethod | UnsetType = UNSET
    auth_username: Annotated[str, Meta(max_length=255)] | UnsetType | None = UNSET
    auth_password: Secret | UnsetType | None = UNSET
    auth_bearer_token: Secret | UnsetType | None = UNSET
    send_text: ShortText | UnsetType | None = UNSET
    expect_text: ShortText | UnsetType | None = UNSET
    dns_record_type: DnsRecordType | UnsetType = UNSET
    dns_expected_value: Annotated[str, Meta(max_length=255)] | UnsetType | None = UNSET
    dns_server: Annotated[str, Meta(max_length=64)] | UnsetType | None = UNSET
    ping_count: PingCount | UnsetType = UNSET
    geo_monitoring_enabled: bool | UnsetType = UNSET
    assigned_agent_ids: AgentIds | UnsetType = UNSET
    assigned_agent_id: Annotated[AgentId | None, Meta(description="deprecated: use assigned_agent_ids")] | UnsetType = (
        UNSET
    )
    check_source_critical: SourceCritical | UnsetType = UNSET
    is_active: bool | UnsetType = UNSET
    organization_id: Id | UnsetType = UNSET
    # Server-owned fields: accepted and ignored, so that a body read with GET can be PUT back.
    id: Any = UNSET
    uuid: Any = UNSET
    status: Any = UNSET
    agent_location_statuses: Any = UNSET
    auth_password_set: Any = UNSET
    auth_bearer_token_set: Any = UNSET
    created_at: Any = UNSET
    updated_at: Any = UNSET


class CheckPage(msgspec.Struct):
    total: int
    offset: int
    limit: int
    checks: list[CheckOut]
