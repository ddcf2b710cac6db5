"""Wire types of the agent protocol (CONTRACT §3) and the status vocabulary (§4).

A `CheckSpec` is what the coordinator hands an agent: every field a probe needs, write-only
secrets included. A `ProbeResult` is what comes back. Both are msgspec Structs so that the agent
and the coordinator encode and decode them the same way.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Any

import msgspec


class CheckType(str, enum.Enum):
    UPTIME = "uptime"
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    DNS = "dns"
    HEARTBEAT = "heartbeat"


class Status(str, enum.Enum):
    """A check's or a source's status. Sources only ever take the first four."""

    UP = "UP"
    DOWN = "DOWN"
    DEGRADED = "DEGRADED"
    UNKNOWN = "UNKNOWN"
    PAUSED = "PAUSED"
    MAINTENANCE = "MAINTENANCE"


CENTRAL_SOURCE = "central"

_SOURCE_RE = re.compile(r"^(?:agent:(?P<agent>[1-9][0-9]*)|geo:(?P<geo>[A-Z0-9][A-Z0-9-]{0,31})|central)$")


class SourceKey(msgspec.Struct, frozen=True):
    """A parsed source key: `agent:7`, `geo:EU-PL` or `central`."""

    kind: str  # "agent" | "geo" | "central"
    agent_id: int | None = None
    location_id: str | None = None

    def __str__(self) -> str:
        if self.kind == "agent":
            return agent_source(self.agent_id or 0)
        if self.kind == "geo":
            return geo_source(self.location_id or "")
        return CENTRAL_SOURCE


def agent_source(agent_id: int) -> str:
    return f"agent:{agent_id}"


def geo_source(location_id: str) -> str:
    return f"geo:{location_id}"


def parse_source(key: str) -> SourceKey | None:
    """The parsed key, or None when `key` is not a well-formed source key."""
    match = _SOURCE_RE.match(key)
    if match is None:
        return None
    if match["agent"] is not None:
        return SourceKey(kind="agent", agent_id=int(match["agent"]))
    if match["geo"] is not None:
        return SourceKey(kind="geo", location_id=match["geo"])
    return SourceKey(kind="central")


class CheckSpec(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Everything an agent needs to run one check (GET /api/agents/checks)."""

    id: int
    type: CheckType
    interval: int
    timeout: int
    url: str | None = None
    host: str | None = None
    port: int | None = None
    http_method: str = "GET"
    http_headers: dict[str, str] = msgspec.field(default_factory=dict)
    http_body: str | None = None
    http_follow_redirects: bool = True
    ssl_verify: bool = True
    # PEM certificates trusted in addition to the system store, for a service behind a private CA.
    ssl_ca_pem: str | None = None
    expected_status_codes: list[int] = msgspec.field(default_factory=list)
    content_match_enabled: bool = False
    content_match_text: str | None = None
    content_match_type: str = "contains"
    content_match_case_sensitive: bool = True
    auth_method: str = "none"
    auth_username: str | None = None
    auth_password: str | None = None
    auth_bearer_token: str | None = None
    send_text: str | None = None
    expect_text: str | None = None
    dns_record_type: str = "A"
    dns_expected_value: str | None = None
    dns_server: str | None = None
    ping_count: int = 3
    max_response_bytes: int = 1_048_576


class ProbeResult(msgspec.Struct, kw_only=True, omit_defaults=False):
    """The outcome of one probe. A failed probe is a result, never an exception."""

    result_id: str
    check_id: int
    started_at: datetime
    success: bool
    response_time_ms: float | None = None
    status_code: int | None = None
    error: str | None = None
    details: dict[str, Any] = msgspec.field(default_factory=dict)
