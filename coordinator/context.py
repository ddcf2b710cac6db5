"""What request handlers share: settings, the engine, keys and limiters, kept on `app.state`."""

from __future__ import annotations

import dataclasses
from typing import Any

from litestar.connection import ASGIConnection
from piccolo.engine.base import Engine

from coordinator.ratelimit import LoginLimiter
from coordinator.settings import Settings


@dataclasses.dataclass
class AppContext:
    settings: Settings
    engine: Engine[Any]
    login_limiter: LoginLimiter
    jwt_key: str = ""


def app_context(connection: ASGIConnection[Any, Any, Any, Any]) -> AppContext:
    ctx: AppContext = connection.app.state["ctx"]
    return ctx


def client_address(connection: ASGIConnection[Any, Any, Any, Any], trusted_proxies: tuple[str, ...]) -> str:
    """The client's address; X-Forwarded-For is believed only from a trusted proxy."""
    peer = connection.client.host if connection.client else "unknown"
    if peer in trusted_proxies:
        forwarded = connection.headers.get("x-forwarded-for", "")
        first = forwarded.split(",", 1)[0].strip()
        if first:
            return first
    return peer
