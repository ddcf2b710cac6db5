"""Routes: log in (`/api/auth/token`), who am I (`/api/users/me`), personal access tokens."""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import JSONBody, URLEncodedBody

from coordinator.auth import service, sessions
from coordinator.auth.principal import Principal
from coordinator.context import app_context, client_address
from coordinator.errors import NotFound, TooManyRequests, Unauthorized
from coordinator.params import PathId


class LoginForm(msgspec.Struct):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=254)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class TokenResponse(msgspec.Struct):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = 0


class OrganizationRole(msgspec.Struct):
    id: int
    name: str
    role: str


class Me(msgspec.Struct):
    id: int
    email: str
    is_superadmin: bool
    organizations: list[OrganizationRole]


class NewAccessToken(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class CreatedAccessToken(msgspec.Struct):
    id: int
    name: str
    token: str


class AccessTokenInfo(msgspec.Struct):
    id: int
    name: str
    created_at: datetime.datetime
    last_used_at: datetime.datetime | None


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @post("/token", operation_id="login", status_code=200)
    async def login(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[LoginForm],
    ) -> Response[TokenResponse]:
        """Trades an email (`username`) and password for a session JWT, also set as an HttpOnly cookie."""
        ctx = app_context(request)
        address = client_address(request, ctx.settings.trusted_proxies)
        wait = ctx.login_limiter.retry_after(data.username, address)
        if wait is not None:
            raise TooManyRequests("too many failed logins; try again later", retry_after=wait)
        user_id = await service.authenticate(ctx.engine, data.username, data.password)
        if user_id is None:
            ctx.login_limiter.failed(data.username, address)
            raise Unauthorized("wrong email or password")
        ttl = ctx.settings.jwt_ttl_seconds
        token = sessions.issue(ctx.jwt_key, user_id, ttl)
        cookie = Cookie(
            key=sessions.COOKIE_NAME,
            value=token,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            max_age=ttl,
            path="/",
        )
        return Response(TokenResponse(access_token=token, expires_in=ttl), cookies=[cookie])

    @post("/logout", operation_id="logout", status_code=204)
    async def logout(self) -> Response[None]:
        """Clears the session cookie."""
        return Response(None, status_code=204, cookies=[Cookie(key=sessions.COOKIE_NAME, value="", max_age=0)])


class UsersController(Controller):
    path = "/api/users/me"
    tags = ["users"]

    @get("/", operation_id="getCurrentUser")
    async def me(self, request: Request[Any, Any, Any], caller: NamedDependency[Principal]) -> Me:
        orgs = await service.organizations_of(app_context(request).engine, caller.user_id)
        return Me(
            id=caller.user_id,
            email=caller.email,
            is_superadmin=caller.is_superadmin,
            organizations=[OrganizationRole(id=o["id"], name=o["name"], role=o["role"]) for o in orgs],
        )

    @post("/tokens", operation_id="createAccessToken", status_code=201)
    async def create_token(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal], data: JSONBody[NewAccessToken]
    ) -> CreatedAccessToken:
        """Creates a personal access token (`pat_…`); the token is shown only in this answer."""
        token_id, token = await service.create_access_token(
            app_context(request).engine, caller.user_id, data.name.strip() or "token"
        )
        return CreatedAccessToken(id=token_id, name=data.name, token=token)

    @get("/tokens", operation_id="listAccessTokens")
    async def list_tokens(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal]
    ) -> list[AccessTokenInfo]:
        rows = await service.list_access_tokens(app_context(request).engine, caller.user_id)
        return [msgspec.convert(r, AccessTokenInfo) for r in rows]

    @delete("/tokens/{token_id:int}", operation_id="revokeAccessToken", status_code=204)
    async def revoke_token(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal], token_id: PathId
    ) -> None:
        if not await service.revoke_access_token(app_context(request).engine, caller.user_id, token_id):
            raise NotFound("access token not found")
