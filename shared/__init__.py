"""The wire: types both the agent and the coordinator import, and nothing else."""

from shared.wire import (
    CENTRAL_SOURCE,
    CheckSpec,
    CheckType,
    ProbeResult,
    SourceKey,
    Status,
    agent_source,
    geo_source,
    parse_source,
)

__all__ = [
    "CENTRAL_SOURCE",
    "CheckSpec",
    "CheckType",
    "ProbeResult",
    "SourceKey",
    "Status",
    "agent_source",
    "geo_source",
    "parse_source",
]
