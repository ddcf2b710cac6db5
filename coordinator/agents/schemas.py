"""The agent API's shapes (CONTRACT §3).

Bodies that people send forbid unknown fields, so a typo answers 422. Bodies that agents send
accept them: an agent newer than its coordinator may say more than this version understands.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from coordinator.params import Id
from shared.wire import CheckSpec

Mode = Literal["private", "geo"]
AgentName = Annotated[str, Meta(min_length=1, max_length=100)]
LocationId = Annotated[str, Meta(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}$", description="e.g. EU-PL")]
Capability = Annotated[str, Meta(min_length=1, max_length=32)]
Count = Annotated[int, Meta(ge=0, le=1_000_000_000)]


class RegistrationTokenIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: AgentName
    mode: Mode = "private"
    organization_id: Id | None = None
    location_id: LocationId | None = None


class RegistrationTokenOut(msgspec.Struct, kw_only=True):
    token: str
    expires_at: datetime.datetime
    mode: str
    name: str
    organization_id: int | None
    location_id: str | None
    # The line to paste on the new host.
    register_command: str


class RegisterIn(msgspec.Struct, kw_only=True):
    token: Annotated[str, Meta(min_length=1, max_length=200)]
    name: AgentName | None = None
    hostname: Annotated[str, Meta(max_length=255)] = ""
    version: Annotated[str, Meta(max_length=64)] = ""
    capabilities: Annotated[list[Capability], Meta(max_length=32)] = msgspec.field(default_factory=list)


class RegisterOut(msgspec.Struct, kw_only=True):
    agent_id: int
    api_key: str
    name: str
    mode: str
    organization_id: int | None
    location_id: str | None
    heartbeat_interval: int


class HeartbeatIn(msgspec.Struct, kw_only=True):
    # Whatever is left out keeps its last value.
    version: Annotated[str, Meta(max_length=64)] | None = None
    hostname: Annotated[str, Meta(max_length=255)] | None = None
    sent_at: datetime.datetime | None = None
    running_checks: Count | None = None
    spool_depth: Count | None = None


class HeartbeatOut(msgspec.Struct, kw_only=True):
    server_time: datetime.datetime
    checks_etag: str
    heartbeat_interval: int


class AgentChecks(msgspec.Struct):
    checks: list[CheckSpec]


class ResultsIn(msgspec.Struct):
    # Each result is validated on its own, so that one bad result does not sink the batch.
    results: list[Any]


class RejectedResult(msgspec.Struct):
    result_id: str
    reason: str


class ResultsOut(msgspec.Struct, kw_only=True):
    accepted: int
    duplicates: int
    rejected: list[RejectedResult]


class AgentOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    mode: str
    status: Literal["online", "offline"]
    last_seen: datetime.datetime | None
    location_id: str | None
    version: str
    hostname: str
    capabilities: list[str]
    organization_id: int | None
    heartbeat_interval: int
    clock_skew_seconds: float | None
    clock_suspect: bool
    running_checks: int
    spool_depth: int
    created_at: datetime.datetime
    revoked: bool


class AgentList(msgspec.Struct):
    agents: list[AgentOut]
    count: int


class RotatedKey(msgspec.Struct, kw_only=True):
    agent_id: int
    api_key: str
    previous_key_expires_at: datetime.datetime


class GeoLocationIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: LocationId
    name: Annotated[str, Meta(min_length=1, max_length=100)]
    region: Annotated[str, Meta(pattern=r"^[A-Z]{2,16}$", description="EU, NA, SA, AP …")]
    country: Annotated[str, Meta(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")]


class GeoLocationOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    region: str
    country: str
    agents_online: int
