"""Users, organizations, memberships and personal access tokens: the stored side of auth."""

from __future__ import annotations

import datetime
from typing import Any

from piccolo.engine.base import Engine

from coordinator.auth import credentials
from coordinator.auth.principal import Role
from coordinator.db.sql import execute, fetch


class AccountError(ValueError):
    """A user or organization cannot be created as asked; the message says why."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def normalise_email(email: str) -> str:
    cleaned = email.strip().lower()
    local, at, domain = cleaned.partition("@")
    if not at or not local or "." not in domain or len(cleaned) > 254 or " " in cleaned:
        raise AccountError(f"not an email address: {email!r}")
    return cleaned


async def create_user(
    engine: Engine[Any],
    email: str,
    password: str,
    *,
    superadmin: bool = False,
    organization: str | None = None,
    role: Role = Role.MEMBER,
) -> int:
    """Creates the user; with `organization`, creates it (user as OWNER) or joins it with `role`."""
    address = normalise_email(email)
    if len(password) < 8:
        raise AccountError("the password must be at least 8 characters long")
    password_hash = await credentials.hash_password(password)
    async with engine.transaction():
        if await fetch(engine, "SELECT id FROM users WHERE email = {}", address):
            raise AccountError(f"a user with email {address} already exists")
        rows = await fetch(
            engine,
            "INSERT INTO users (email, password_hash, is_superadmin, created_at) VALUES ({}, {}, {}, {}) RETURNING id",
            address,
            password_hash,
            superadmin,
            _now(),
        )
        user_id = int(rows[0]["id"])
        if organization is not None:
            await _join_or_found(engine, user_id, organization, role)
    return user_id


async def _join_or_found(engine: Engine[Any], user_id: int, organization: str, role: Role) -> None:
    name = organization.strip()
    if not name or len(name) > 200:
        raise AccountError("an organization name must have 1 to 200 characters")
    existing = await fetch(engine, "SELECT id FROM organizations WHERE name = {}", name)
    if existing:
        org_id = int(existing[0]["id"])
    else:
        created = await fetch(
            engine,
            "INSERT INTO organizations (name, created_at) VALUES ({}, {}) RETURNING id",
            name,
            _now(),
        )
        org_id = int(created[0]["id"])
        role = Role.OWNER
    await execute(
        engine,
        'INSERT INTO memberships ("user", organization, role) VALUES ({}, {}, {})',
        user_id,
        org_id,
        role.value,
    )


async def authenticate(engine: Engine[Any], email: str, password: str) -> int | None:
    rows = await fetch(engine, "SELECT id, password_hash FROM users WHERE email = {}", email.strip().lower())
    stored = str(rows[0]["password_hash"]) if rows else credentials.DUMMY_PASSWORD_HASH
    ok = await credentials.verify_password(stored, password)
    return int(rows[0]["id"]) if rows and ok else None


async def user_id_by_email(engine: Engine[Any], email: str) -> int | None:
    rows = await fetch(engine, "SELECT id FROM users WHERE email = {}", email.strip().lower())
    return int(rows[0]["id"]) if rows else None


async def organizations_of(engine: Engine[Any], user_id: int) -> list[dict[str, Any]]:
    return await fetch(
        engine,
        "SELECT o.id, o.name, m.role FROM memberships m JOIN organizations o ON o.id = m.organization "
        'WHERE m."user" = {} ORDER BY o.id',
        user_id,
    )


async def create_access_token(engine: Engine[Any], user_id: int, name: str) -> tuple[int, str]:
    token, token_hash = credentials.new_token(credentials.PAT_PREFIX)
    rows = await fetch(
        engine,
        'INSERT INTO access_tokens ("user", name, token_hash, created_at) VALUES ({}, {}, {}, {}) RETURNING id',
        user_id,
        name,
        token_hash,
        _now(),
    )
    return int(rows[0]["id"]), token


async def list_access_tokens(engine: Engine[Any], user_id: int) -> list[dict[str, Any]]:
    return await fetch(
        engine,
        "SELECT id, name, created_at, last_used_at FROM access_tokens "
        'WHERE "user" = {} AND revoked_at IS NULL ORDER BY id',
        user_id,
    )


async def revoke_access_token(engine: Engine[Any], user_id: int, token_id: int) -> bool:
    rows = await fetch(
        engine,
        'UPDATE access_tokens SET revoked_at = {} WHERE id = {} AND "user" = {} AND revoked_at IS NULL RETURNING id',
        _now(),
        token_id,
        user_id,
    )
    return bool(rows)
