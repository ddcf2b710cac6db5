"""Stored checks: create, read, change, delete, list; and who may do which.

A check belongs to one organization. VIEWER reads, MEMBER writes; others' checks answer 404.
"""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any, cast

import msgspec
from piccolo.columns import Column
from piccolo.engine.base import Engine

from coordinator.auth.principal import Principal, Role
from coordinator.checks.schemas import CheckFields, CheckOut, CheckSettings
from coordinator.db.sql import execute, fetch
from coordinator.db.tables import Check, CheckAgent
from coordinator.errors import FieldError, NotFound, Unprocessable
from coordinator.status import engine as status_engine

_JSON_COLUMNS = ("expected_status_codes", "http_headers", "check_source_critical", "agent_location_statuses")
_STORED = tuple(f for f in CheckFields.__struct_fields__ if f != "assigned_agent_ids")
_SETTINGS_FIELDS = CheckSettings.__struct_fields__


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


class StoredCheck(msgspec.Struct, kw_only=True):
    """A check as read from the database: its fields plus what the server owns."""

    id: int
    uuid: str
    organization_id: int
    status: str
    agent_location_statuses: dict[str, str]
    created_at: datetime.datetime
    updated_at: datetime.datetime
    fields: CheckFields

    def out(self) -> CheckOut:
        f = self.fields
        settings = {name: getattr(f, name) for name in _SETTINGS_FIELDS}
        return CheckOut(
            **settings,
            id=self.id,
            uuid=self.uuid,
            organization_id=self.organization_id,
            status=self.status,
            agent_location_statuses=self.agent_location_statuses,
            auth_password_set=f.auth_password is not None,
            auth_bearer_token_set=f.auth_bearer_token is not None,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


def _from_row(row: dict[str, Any], agent_ids: list[int]) -> StoredCheck:
    values = {name: row[name] for name in _STORED}
    for column in _JSON_COLUMNS:
        if column in values:
            values[column] = _loads(values[column])
    values["assigned_agent_ids"] = agent_ids
    fields = msgspec.convert(values, CheckFields, strict=False)
    return StoredCheck(
        id=int(row["id"]),
        uuid=str(row["uuid"]),
        organization_id=int(row["organization"]),
        status=str(row["status"]),
        agent_location_statuses=_loads(row["agent_location_statuses"]) or {},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        fields=fields,
    )


async def _agent_ids(engine: Engine[Any], check_ids: list[int]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {cid: [] for cid in check_ids}
    if not check_ids:
        return found
    rows = (
        await CheckAgent.select(CheckAgent.check, CheckAgent.agent)
        .where(CheckAgent.check.is_in(check_ids))
        .order_by(CheckAgent.id)
    )
    for row in rows:
        found[int(row["check"])].append(int(row["agent"]))
    return found


async def get_check(engine: Engine[Any], caller: Principal, check_id: int, minimum: Role) -> StoredCheck:
    rows = await Check.select().where(Check.id == check_id)
    if not rows:
        raise NotFound("check not found")
    caller.require(int(rows[0]["organization"]), minimum, what="check")
    agents = await _agent_ids(engine, [check_id])
    return _from_row(rows[0], agents[check_id])


def choose_organization(caller: Principal, requested: int | None) -> int:
    """The organization a new check goes to: the one named, else the caller's only one."""
    if requested is not None:
        caller.require(requested, Role.MEMBER, what="organization")
        return requested
    member_of = [org for org, role in caller.roles.items() if role.rank >= Role.MEMBER.rank]
    if len(member_of) == 1:
        return member_of[0]
    if not member_of and len(caller.roles) == 1:
        only = next(iter(caller.roles))
        caller.require(only, Role.MEMBER, what="organization")  # a VIEWER: 403 names the role
    reason = "required: you belong to several organizations" if member_of else "required: you belong to none"
    raise Unprocessable.for_fields([FieldError(field="organization_id", message=reason)])


async def _check_agents(engine: Engine[Any], organization_id: int, agent_ids: list[int]) -> None:
    if not agent_ids:
        return
    placeholders = ", ".join("{}" for _ in agent_ids)  # placeholders only: the ids are bound
    rows = await fetch(
        engine,
        f"SELECT id FROM agents WHERE id IN ({placeholders}) AND organization = {{}} "  # noqa: S608
        "AND mode = 'private' AND revoked_at IS NULL",
        *agent_ids,
        organization_id,
    )
    known = {int(r["id"]) for r in rows}
    unknown = [a for a in agent_ids if a not in known]
    if unknown:
        raise Unprocessable.for_fields(
            [
                FieldError(
                    field="assigned_agent_ids",
                    message=f"no private agent with id {a} in this organization",
                )
                for a in unknown
            ]
        )


def _row_values(fields: CheckFields) -> dict[str, Any]:
    values = {name: getattr(fields, name) for name in _STORED}
    values["type"] = fields.type.value
    for column in ("expected_status_codes", "http_headers", "check_source_critical"):
        values[column] = json.dumps(values[column])
    return values


async def _set_agents(engine: Engine[Any], check_id: int, agent_ids: list[int]) -> None:
    await execute(engine, 'DELETE FROM check_agents WHERE "check" = {}', check_id)
    for agent_id in agent_ids:
        await execute(engine, 'INSERT INTO check_agents ("check", agent) VALUES ({}, {})', check_id, agent_id)


async def create_check(engine: Engine[Any], organization_id: int, fields: CheckFields) -> int:
    await _check_agents(engine, organization_id, fields.assigned_agent_ids)
    now = _now()
    status = "UNKNOWN" if fields.is_active else "PAUSED"
    async with engine.transaction():
        rows = await Check.insert(
            Check(
                **_row_values(fields),
                uuid=str(uuid.uuid4()),
                organization=organization_id,
                status=status,
                agent_location_statuses="{}",
                created_at=now,
                updated_at=now,
            )
        ).returning(Check.id)
        check_id = int(rows[0]["id"])
        await _set_agents(engine, check_id, fields.assigned_agent_ids)
    return check_id


async def update_check(engine: Engine[Any], stored: StoredCheck, fields: CheckFields) -> None:
    await _check_agents(engine, stored.organization_id, fields.assigned_agent_ids)
    values = _row_values(fields)
    values["updated_at"] = now = _now()
    async with engine.transaction():
        await Check.update(cast("dict[Column | str, Any]", values)).where(Check.id == stored.id)
        if fields.assigned_agent_ids != stored.fields.assigned_agent_ids:
            await _set_agents(engine, stored.id, fields.assigned_agent_ids)
        # Sources taken away lose their states; pausing, resuming or a new critical map may change
        # the status, which goes through the status engine's compare-and-set, log and event.
        await status_engine.check_changed(engine, stored.id, now)


async def delete_check(engine: Engine[Any], check_id: int) -> None:
    await Check.delete().where(Check.id == check_id)


async def list_checks(
    engine: Engine[Any],
    caller: Principal,
    *,
    offset: int,
    limit: int,
    check_type: str | None,
    status: str | None,
    organization_id: int | None,
) -> tuple[int, list[StoredCheck]]:
    query = Check.select()
    count = Check.count()
    conditions = []
    if organization_id is not None:
        caller.require(organization_id, Role.VIEWER, what="organization")
        conditions.append(Check.organization == organization_id)
    elif not caller.is_superadmin:
        conditions.append(Check.organization.is_in(list(caller.roles) or [0]))
    if check_type is not None:
        conditions.append(Check.type == check_type)
    if status is not None:
        conditions.append(Check.status == status)
    for condition in conditions:
        query = query.where(condition)
        count = count.where(condition)
    total = await count
    rows = await query.order_by(Check.id).offset(offset).limit(limit)
    agents = await _agent_ids(engine, [int(r["id"]) for r in rows])
    return int(total), [_from_row(r, agents[int(r["id"])]) for r in rows]
