"""Routes of the Checks API (`/api/checks/`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, QueryParameter

from coordinator.auth.principal import Principal, Role
from coordinator.checks import service, validation
from coordinator.checks.schemas import CheckFields, CheckInput, CheckOut, CheckPage
from coordinator.context import app_context
from coordinator.params import MAX_ID, Limit, Offset, PathId
from shared.wire import CheckType, Status


class ChecksController(Controller):
    path = "/api/checks"
    tags = ["checks"]

    @get("/", operation_id="listChecks")
    async def list_checks(
        self,
        request: Request[Any, Any, Any],
        caller: NamedDependency[Principal],
        offset: Offset = 0,
        limit: Limit = 100,
        type: FromQuery[CheckType | None] = None,
        status: FromQuery[Status | None] = None,
        organization_id: Annotated[int | None, QueryParameter(ge=1, le=MAX_ID)] = None,
    ) -> CheckPage:
        """The caller's checks, oldest first, `limit` at a time (default 100, at most 500)."""
        total, checks = await service.list_checks(
            app_context(request).engine,
            caller,
            offset=offset,
            limit=limit,
            check_type=type.value if type else None,
            status=status.value if status else None,
            organization_id=organization_id,
        )
        return CheckPage(total=total, offset=offset, limit=limit, checks=[c.out() for c in checks])

    @post("/", operation_id="createCheck", status_code=201)
    async def create_check(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal], data: JSONBody[CheckInput]
    ) -> CheckOut:
        """Creates a check in the caller's organization (or the one named by `organization_id`)."""
        engine = app_context(request).engine
        requested = data.organization_id if isinstance(data.organization_id, int) else None
        organization_id = service.choose_organization(caller, requested)
        fields = validation.for_write(data, existing=None)
        check_id = await service.create_check(engine, organization_id, fields)
        return (await service.get_check(engine, caller, check_id, Role.VIEWER)).out()

    @get("/{check_id:int}", operation_id="getCheck")
    async def get_check(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal], check_id: PathId
    ) -> CheckOut:
        return (await service.get_check(app_context(request).engine, caller, check_id, Role.VIEWER)).out()

    @put("/{check_id:int}", operation_id="replaceCheck")
    async def replace_check(
        self,
        request: Request[Any, Any, Any],
        caller: NamedDependency[Principal],
        check_id: PathId,
        data: JSONBody[CheckInput],
    ) -> CheckOut:
        """Replaces every field; write-only secrets left out are kept, null clears them."""
        return await _change(request, caller, check_id, lambda existing: validation.for_write(data, existing))

    @patch("/{check_id:int}", operation_id="updateCheck")
    async def update_check(
        self,
        request: Request[Any, Any, Any],
        caller: NamedDependency[Principal],
        check_id: PathId,
        data: JSONBody[CheckInput],
    ) -> CheckOut:
        """Changes the fields sent and keeps the others."""
        return await _change(request, caller, check_id, lambda existing: validation.for_patch(data, existing))

    @delete("/{check_id:int}", operation_id="deleteCheck", status_code=204)
    async def delete_check(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal], check_id: PathId
    ) -> None:
        engine = app_context(request).engine
        await service.get_check(engine, caller, check_id, Role.MEMBER)
        await service.delete_check(engine, check_id)


async def _change(
    request: Request[Any, Any, Any],
    caller: Principal,
    check_id: int,
    new_fields: Callable[[CheckFields], CheckFields],
) -> CheckOut:
    engine = app_context(request).engine
    stored = await service.get_check(engine, caller, check_id, Role.MEMBER)
    await service.update_check(engine, stored, new_fields(stored.fields))
    return (await service.get_check(engine, caller, check_id, Role.VIEWER)).out()
