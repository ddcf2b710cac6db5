"""Agents as stored: registration tokens, registration, heartbeats, keys, and what people see.

Private agents belong to one organization: VIEWER reads them, ADMIN registers, revokes and rotates
them, and another organization's agents answer 404. Geo agents belong to no organization: they are
shared infrastructure that superadmins register and manage, so only superadmins see them one by
one; everyone else sees their locations and how many of them are online (GET geo-locations).
"""

from __future__ import annotations

import datetime
import json
import shlex
from typing import Any

from piccolo.engine.base import Engine

from coordinator.agents.auth import AuthenticatedAgent
from coordinator.agents.liveness import online_geo_agents, status_of
from coordinator.agents.rows import as_datetime, loads, write_transaction
from coordinator.agents.schemas import (
    AgentOut,
    GeoLocationIn,
    GeoLocationOut,
    HeartbeatIn,
    RegisterIn,
    RegisterOut,
    RegistrationTokenIn,
    RegistrationTokenOut,
    RotatedKey,
)
from coordinator.auth import credentials
from coordinator.auth.principal import Principal, Role
from coordinator.db.sql import execute, fetch
from coordinator.errors import Conflict, FieldError, Forbidden, NotFound, Unauthorized, Unprocessable
from coordinator.events.bus import AGENT_STATUS, EventBus

REGISTRATION_TOKEN_TTL = datetime.timedelta(hours=1)
# A clock this far ahead or behind the coordinator's is not trusted (the limits).
CLOCK_AHEAD_LIMIT_S = 5 * 60
CLOCK_BEHIND_LIMIT_S = 24 * 3600

_AGENT_COLUMNS = (
    "id, organization, name, mode, location_id, hostname, version, capabilities, heartbeat_interval, "
    "last_seen, clock_skew_seconds, clock_suspect, running_checks, spool_depth, revoked_at, created_at"
)


def clock_is_suspect(skew_seconds: float) -> bool:
    """`skew_seconds` is the agent's clock minus the coordinator's."""
    return skew_seconds > CLOCK_AHEAD_LIMIT_S or skew_seconds < -CLOCK_BEHIND_LIMIT_S


# --- registration tokens --------------------------------------------------------------------------


async def _organization_for_token(engine: Engine[Any], caller: Principal, requested: int | None) -> int:
    if requested is None:
        admin_of = [org for org, role in caller.roles.items() if role.rank >= Role.ADMIN.rank]
        if len(admin_of) != 1:
            reason = (
                "required: you administer several organizations"
                if admin_of
                else ("required: you administer no organization")
            )
            raise Unprocessable.for_fields([FieldError(field="organization_id", message=reason)])
        requested = admin_of[0]
    caller.require(requested, Role.ADMIN, what="organization")
    # A superadmin passes `require` for any id, so the organization may still not exist.
    if not await fetch(engine, "SELECT id FROM organizations WHERE id = {}", requested):
        raise NotFound("organization not found")
    return requested


async def _check_geo_token(engine: Engine[Any], caller: Principal, data: RegistrationTokenIn) -> str:
    if not caller.is_superadmin:
        raise Forbidden("only a superadmin may register geo agents")
    errors = []
    if data.organization_id is not None:
        errors.append(FieldError(field="organization_id", message="a geo agent belongs to no organization"))
    if data.location_id is None:
        errors.append(FieldError(field="location_id", message="required for a geo agent"))
    elif not await fetch(engine, "SELECT id FROM geo_locations WHERE id = {}", data.location_id):
        errors.append(FieldError(field="location_id", message=f"no geo location {data.location_id}"))
    if errors:
        raise Unprocessable.for_fields(errors)
    return str(data.location_id)


async def create_registration_token(
    engine: Engine[Any], caller: Principal, data: RegistrationTokenIn, base_url: str, now: datetime.datetime
) -> RegistrationTokenOut:
    organization_id: int | None = None
    location_id: str | None = None
    if data.mode == "geo":
        location_id = await _check_geo_token(engine, caller, data)
    else:
        if data.location_id is not None:
            raise Unprocessable.for_fields([FieldError(field="location_id", message="only a geo agent has a location")])
        organization_id = await _organization_for_token(engine, caller, data.organization_id)
    token, token_hash = credentials.new_token(credentials.REGISTRATION_PREFIX)
    expires_at = now + REGISTRATION_TOKEN_TTL
    await execute(
        engine,
        "INSERT INTO registration_tokens (token_hash, name, mode, organization, location_id, created_by, "
        "expires_at) VALUES ({}, {}, {}, {}, {}, {}, {})",
        token_hash,
        data.name,
        data.mode,
        organization_id,
        location_id,
        caller.user_id,
        expires_at,
    )
    command = shlex.join(["hc-agent", "register", "--url", base_url, "--token", token, "--name", data.name])
    return RegistrationTokenOut(
        token=token,
        expires_at=expires_at,
        mode=data.mode,
        name=data.name,
        organization_id=organization_id,
        location_id=location_id,
        register_command=command,
    )


# --- registration ---------------------------------------------------------------------------------


async def _refusal(engine: Engine[Any], token_hash: str, now: datetime.datetime) -> Unauthorized:
    """Why a token bought nothing; it is looked up again only to say so."""
    rows = await fetch(engine, "SELECT used_at, expires_at FROM registration_tokens WHERE token_hash = {}", token_hash)
    if not rows:
        return Unauthorized("unknown registration token")
    if rows[0]["used_at"] is not None:
        return Unauthorized("this registration token has already been used")
    expires_at = as_datetime(rows[0]["expires_at"])
    if expires_at is not None and expires_at <= now:
        return Unauthorized("this registration token has expired")
    return Unauthorized("this registration token cannot be used")


async def register(
    engine: Engine[Any], data: RegisterIn, heartbeat_interval: int, now: datetime.datetime
) -> RegisterOut:
    token_hash = credentials.hash_token(data.token)
    api_key, key_hash = credentials.new_token(credentials.AGENT_KEY_PREFIX)
    async with write_transaction(engine):
        # Claiming and checking the token are one statement: of two registrations racing with the
        # same token, the database lets exactly one UPDATE match.
        claimed = await fetch(
            engine,
            "UPDATE registration_tokens SET used_at = {} "
            "WHERE token_hash = {} AND used_at IS NULL AND expires_at > {} "
            "RETURNING id, name, mode, organization, location_id",
            now,
            token_hash,
            now,
        )
        if not claimed:
            raise await _refusal(engine, token_hash, now)
        token = claimed[0]
        name = data.name or str(token["name"])
        created = await fetch(
            engine,
            "INSERT INTO agents (organization, name, mode, location_id, hostname, version, capabilities, "
            "key_hash, heartbeat_interval, created_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}) "
            "RETURNING id",
            token["organization"],
            name,
            token["mode"],
            token["location_id"],
            data.hostname,
            data.version,
            json.dumps(list(dict.fromkeys(data.capabilities))),
            key_hash,
            heartbeat_interval,
            now,
        )
        agent_id = int(created[0]["id"])
        await execute(engine, "UPDATE registration_tokens SET agent_id = {} WHERE id = {}", agent_id, token["id"])
    return RegisterOut(
        agent_id=agent_id,
        api_key=api_key,
        name=name,
        mode=str(token["mode"]),
        organization_id=None if token["organization"] is None else int(token["organization"]),
        location_id=token["location_id"],
        heartbeat_interval=heartbeat_interval,
    )


# --- heartbeats and the published status ----------------------------------------------------------


def _status_payload(agent: AuthenticatedAgent, status: str, now: datetime.datetime, revoked: bool) -> dict[str, Any]:
    return {
        "agent_id": agent.id,
        "name": agent.name,
        "mode": agent.mode,
        "organization_id": agent.organization_id,
        "location_id": agent.location_id,
        "status": status,
        "revoked": revoked,
        "at": now.isoformat(),
    }


async def publish_status_change(
    engine: Engine[Any],
    bus: EventBus,
    agent: AuthenticatedAgent,
    status: str,
    now: datetime.datetime,
    *,
    revoked: bool = False,
) -> bool:
    """Records `status` as published and publishes `agent.status`, if it is a change.

    Compare-and-set: of several writers noticing the same change (a heartbeat and the job, or two
    coordinators), only the one whose UPDATE matched publishes it.
    """
    changed = await fetch(
        engine,
        "UPDATE agents SET published_status = {} WHERE id = {} AND published_status <> {} RETURNING id",
        status,
        agent.id,
        status,
    )
    if changed or revoked:
        bus.publish(AGENT_STATUS, _status_payload(agent, status, now, revoked), agent.organization_id)
    return bool(changed)


async def record_heartbeat(
    engine: Engine[Any], bus: EventBus, agent: AuthenticatedAgent, data: HeartbeatIn, now: datetime.datetime
) -> None:
    assignments: list[str] = ["last_seen = {}"]
    args: list[Any] = [now]
    for column in ("version", "hostname", "running_checks", "spool_depth"):
        value = getattr(data, column)
        if value is not None:
            assignments.append(f"{column} = {{}}")
            args.append(value)
    if data.sent_at is not None:
        # Measured on the heartbeat, which is sent live (results may be old replays from the spool).
        skew = (data.sent_at - now).total_seconds()
        assignments += ["clock_skew_seconds = {}", "clock_suspect = {}"]
        args += [float(skew), clock_is_suspect(skew)]
    await execute(engine, f"UPDATE agents SET {', '.join(assignments)} WHERE id = {{}}", *args, agent.id)  # noqa: S608
    await publish_status_change(engine, bus, agent, "online", now)


# --- agents for people ----------------------------------------------------------------------------


def agent_out(row: dict[str, Any], now: datetime.datetime) -> AgentOut:
    revoked = row["revoked_at"] is not None
    interval = int(row["heartbeat_interval"])
    skew = row["clock_skew_seconds"]
    created_at = as_datetime(row["created_at"])
    assert created_at is not None  # NOT NULL in the schema
    return AgentOut(
        id=int(row["id"]),
        name=str(row["name"]),
        mode=str(row["mode"]),
        status="online" if status_of(row["last_seen"], interval, revoked, now) == "online" else "offline",
        last_seen=as_datetime(row["last_seen"]),
        location_id=row["location_id"],
        version=str(row["version"]),
        hostname=str(row["hostname"]),
        capabilities=[str(c) for c in loads(row["capabilities"]) or []],
        organization_id=None if row["organization"] is None else int(row["organization"]),
        heartbeat_interval=interval,
        clock_skew_seconds=None if skew is None else float(skew),
        clock_suspect=bool(row["clock_suspect"]),
        running_checks=int(row["running_checks"]),
        spool_depth=int(row["spool_depth"]),
        created_at=created_at,
        revoked=revoked,
    )


async def list_agents(
    engine: Engine[Any], caller: Principal, now: datetime.datetime, organization_id: int | None = None
) -> list[AgentOut]:
    """Agents not revoked: of one organization, or of all the caller's (every one for a superadmin)."""
    sql = f"SELECT {_AGENT_COLUMNS} FROM agents WHERE revoked_at IS NULL"  # noqa: S608 - constant columns
    args: list[Any] = []
    if organization_id is not None:
        caller.require(organization_id, Role.VIEWER, what="organization")
        sql += " AND organization = {}"
        args.append(organization_id)
    elif not caller.is_superadmin:
        organizations = list(caller.roles) or [0]
        sql += " AND organization IN ({})".format(", ".join("{}" for _ in organizations))
        args += organizations
    rows = await fetch(engine, sql + " ORDER BY id", *args)
    return [agent_out(row, now) for row in rows]


async def get_agent_row(engine: Engine[Any], caller: Principal, agent_id: int, minimum: Role) -> dict[str, Any]:
    rows = await fetch(engine, f"SELECT {_AGENT_COLUMNS} FROM agents WHERE id = {{}}", agent_id)  # noqa: S608
    if not rows:
        raise NotFound("agent not found")
    row = rows[0]
    if row["organization"] is None:
        if not caller.is_superadmin:
            raise NotFound("agent not found")
    else:
        caller.require(int(row["organization"]), minimum, what="agent")
    return row


async def revoke_agent(engine: Engine[Any], bus: EventBus, row: dict[str, Any], now: datetime.datetime) -> None:
    """Revokes the agent's keys at once; revoking twice changes nothing."""
    revoked = await fetch(
        engine,
        "UPDATE agents SET revoked_at = {}, previous_key_hash = NULL, previous_key_expires_at = NULL "
        "WHERE id = {} AND revoked_at IS NULL RETURNING id",
        now,
        row["id"],
    )
    if revoked:
        await publish_status_change(engine, bus, AuthenticatedAgent.from_row(row), "offline", now, revoked=True)


async def rotate_key(
    engine: Engine[Any], row: dict[str, Any], overlap_seconds: int, now: datetime.datetime
) -> RotatedKey:
    """A new key; the current one keeps working for the overlap (a key older than that stops at once)."""
    api_key, key_hash = credentials.new_token(credentials.AGENT_KEY_PREFIX)
    overlap_ends = now + datetime.timedelta(seconds=overlap_seconds)
    # SET reads the row as it was before the UPDATE, so previous_key_hash takes the old key.
    rotated = await fetch(
        engine,
        "UPDATE agents SET previous_key_hash = key_hash, previous_key_expires_at = {}, key_hash = {} "
        "WHERE id = {} AND revoked_at IS NULL RETURNING id",
        overlap_ends,
        key_hash,
        row["id"],
    )
    if not rotated:
        raise Conflict("this agent is revoked: register a new one")
    return RotatedKey(agent_id=int(row["id"]), api_key=api_key, previous_key_expires_at=overlap_ends)


# --- geo locations --------------------------------------------------------------------------------


async def list_geo_locations(engine: Engine[Any], now: datetime.datetime) -> list[GeoLocationOut]:
    online = await online_geo_agents(engine, now)
    rows = await fetch(engine, "SELECT id, name, region, country FROM geo_locations ORDER BY region, id")
    return [
        GeoLocationOut(
            id=str(row["id"]),
            name=str(row["name"]),
            region=str(row["region"]),
            country=str(row["country"]),
            agents_online=len(online.get(str(row["id"]), [])),
        )
        for row in rows
    ]


async def add_geo_location(engine: Engine[Any], caller: Principal, data: GeoLocationIn) -> GeoLocationOut:
    if not caller.is_superadmin:
        raise Forbidden("only a superadmin may add geo locations")
    added = await fetch(
        engine,
        "INSERT INTO geo_locations (id, name, region, country) VALUES ({}, {}, {}, {}) "
        "ON CONFLICT (id) DO NOTHING RETURNING id",
        data.id,
        data.name,
        data.region,
        data.country,
    )
    if not added:
        raise Conflict(f"geo location {data.id} already exists")
    return GeoLocationOut(id=data.id, name=data.name, region=data.region, country=data.country, agents_online=0)
