"""The agent endpoints' credential: `Authorization: Bearer agk_…`, and nothing else.

A user's token is refused here just as an agent key is refused on the people endpoints (in
`provide_principal`), so that a leaked probe host cannot act as a person, nor a person as a probe.
During a key rotation the previous key is accepted until its overlap ends.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from litestar import Request

from coordinator.agents.clock import clock_of
from coordinator.auth import credentials
from coordinator.context import app_context
from coordinator.db.sql import fetch
from coordinator.errors import Unauthorized
from shared.wire import agent_source, geo_source

_NEEDS_AGENT_KEY = "this endpoint takes an agent key (Authorization: Bearer agk_…)"


@dataclasses.dataclass(frozen=True)
class AuthenticatedAgent:
    id: int
    name: str
    mode: str
    organization_id: int | None
    location_id: str | None
    heartbeat_interval: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AuthenticatedAgent:
        """From a row of the agents table."""
        return cls(
            id=int(row["id"]),
            name=str(row["name"]),
            mode=str(row["mode"]),
            organization_id=None if row["organization"] is None else int(row["organization"]),
            location_id=row["location_id"],
            heartbeat_interval=int(row["heartbeat_interval"]),
        )

    @property
    def source(self) -> str:
        """The source its results count for: decided here, never by the agent."""
        if self.mode == "geo":
            return geo_source(self.location_id or "")
        return agent_source(self.id)


def _agent_key(request: Request[Any, Any, Any]) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not token.startswith(credentials.AGENT_KEY_PREFIX):
        raise Unauthorized(_NEEDS_AGENT_KEY)
    return token


async def provide_agent(request: Request[Any, Any, Any]) -> AuthenticatedAgent:
    key_hash = credentials.hash_token(_agent_key(request))
    now = clock_of(request).now()
    rows = await fetch(
        app_context(request).engine,
        "SELECT id, name, mode, organization, location_id, heartbeat_interval, revoked_at FROM agents "
        "WHERE key_hash = {} OR (previous_key_hash = {} AND previous_key_expires_at > {})",
        key_hash,
        key_hash,
        now,
    )
    if not rows:
        raise Unauthorized("unknown agent key, or a previous key past its overlap")
    row = rows[0]
    if row["revoked_at"] is not None:
        raise Unauthorized("this agent has been revoked")
    return AuthenticatedAgent.from_row(row)
