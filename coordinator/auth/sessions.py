"""Session JWTs (HS256), for browsers (cookie) and for scripts that log in with a password."""

from __future__ import annotations

import datetime
import secrets
from typing import Any

import jwt
from piccolo.engine.base import Engine

from coordinator.db.sql import execute, fetch

COOKIE_NAME = "hc_session"
_SECRET_NAME = "jwt_signing_key"
_ALGORITHM = "HS256"


async def signing_key(engine: Engine[Any], configured: str) -> str:
    """The configured key, else the one kept in the database (made by whichever replica came first)."""
    if configured:
        return configured
    rows = await fetch(engine, "SELECT value FROM instance_secrets WHERE name = {}", _SECRET_NAME)
    if rows:
        return str(rows[0]["value"])
    await execute(
        engine,
        "INSERT INTO instance_secrets (name, value) VALUES ({}, {}) ON CONFLICT (name) DO NOTHING",
        _SECRET_NAME,
        secrets.token_urlsafe(48),
    )
    rows = await fetch(engine, "SELECT value FROM instance_secrets WHERE name = {}", _SECRET_NAME)
    return str(rows[0]["value"])


def issue(key: str, user_id: int, ttl_seconds: int, now: datetime.datetime | None = None) -> str:
    issued = now or datetime.datetime.now(datetime.timezone.utc)
    claims = {
        "sub": str(user_id),
        "iat": issued,
        "exp": issued + datetime.timedelta(seconds=ttl_seconds),
        "typ": "session",
    }
    return jwt.encode(claims, key, algorithm=_ALGORITHM)


def user_id_from(key: str, token: str) -> int | None:
    """The user id the token was issued to, or None when it is invalid or expired."""
    try:
        claims = jwt.decode(token, key, algorithms=[_ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.PyJWTError:
        return None
    if claims.get("typ") != "session":
        return None
    try:
        return int(claims["sub"])
    except (TypeError, ValueError):
        return None
