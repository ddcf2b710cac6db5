"""Who is calling, and what they may do in each organization.

Roles rank OWNER > ADMIN > MEMBER > VIEWER. Another organization's objects answer 404, not 403,
so that ids of other tenants cannot be probed; within one's own organization a role too low for
the action answers 403.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Any

from litestar import Request

from coordinator.auth import credentials, sessions
from coordinator.context import app_context
from coordinator.db.sql import execute, fetch
from coordinator.errors import Forbidden, NotFound, Unauthorized

# last_used_at is written at most this often per token: every request writing would make each
# read a write.
_LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


class Role(str, enum.Enum):
    OWNER = "OWNER"
    ADMIN = "ADMIN"
    MEMBER = "MEMBER"
    VIEWER = "VIEWER"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Role.VIEWER: 1, Role.MEMBER: 2, Role.ADMIN: 3, Role.OWNER: 4}


@dataclasses.dataclass(frozen=True)
class Principal:
    user_id: int
    email: str
    is_superadmin: bool
    roles: dict[int, Role]
    token_id: int | None = None  # the personal access token used, if any

    def can_see(self, organization_id: int) -> bool:
        return self.is_superadmin or organization_id in self.roles

    def require(self, organization_id: int, minimum: Role, what: str = "object") -> None:
        """Raises NotFound outside the caller's organizations, Forbidden below `minimum`."""
        if self.is_superadmin:
            return
        role = self.roles.get(organization_id)
        if role is None:
            raise NotFound(f"{what} not found")
        if role.rank < minimum.rank:
            raise Forbidden(f"this needs the {minimum.value} role or higher; you are {role.value}")


def _bearer(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return value.strip()


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    ctx = app_context(request)
    token = _bearer(request)
    token_id: int | None = None
    if token is None:
        cookie = request.cookies.get(sessions.COOKIE_NAME)
        if not cookie:
            raise Unauthorized("authentication required: send a bearer token or log in")
        user_id = sessions.user_id_from(ctx.jwt_key, cookie)
        if user_id is None:
            raise Unauthorized("the session has expired or is invalid: log in again")
    elif token.startswith(credentials.AGENT_KEY_PREFIX):
        raise Unauthorized("agent keys may call only the agent endpoints")
    elif token.startswith(credentials.PAT_PREFIX):
        user_id, token_id = await _user_of_access_token(request, token)
    else:
        found = sessions.user_id_from(ctx.jwt_key, token)
        if found is None:
            raise Unauthorized("the token has expired or is invalid")
        user_id = found
    return await load_principal(request, user_id, token_id)


async def _user_of_access_token(request: Request[Any, Any, Any], token: str) -> tuple[int, int]:
    engine = app_context(request).engine
    rows = await fetch(
        engine,
        'SELECT id, "user" AS user_id, last_used_at FROM access_tokens WHERE token_hash = {} AND revoked_at IS NULL',
        credentials.hash_token(token),
    )
    if not rows:
        raise Unauthorized("unknown or revoked access token")
    row = rows[0]
    now = datetime.datetime.now(datetime.timezone.utc)
    last_used = _as_datetime(row["last_used_at"])
    if last_used is None or now - last_used > _LAST_USED_RESOLUTION:
        await execute(engine, "UPDATE access_tokens SET last_used_at = {} WHERE id = {}", now, row["id"])
    return int(row["user_id"]), int(row["id"])


def _as_datetime(value: Any) -> datetime.datetime | None:
    if value is None or isinstance(value, datetime.datetime):
        return value
    parsed = datetime.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


async def load_principal(request: Request[Any, Any, Any], user_id: int, token_id: int | None) -> Principal:
    engine = app_context(request).engine
    users = await fetch(engine, "SELECT id, email, is_superadmin FROM users WHERE id = {}", user_id)
    if not users:
        raise Unauthorized("the account no longer exists")
    memberships = await fetch(engine, 'SELECT organization, role FROM memberships WHERE "user" = {}', user_id)
    return Principal(
        user_id=user_id,
        email=str(users[0]["email"]),
        is_superadmin=bool(users[0]["is_superadmin"]),
        roles={int(m["organization"]): Role(m["role"]) for m in memberships},
        token_id=token_id,
    )
