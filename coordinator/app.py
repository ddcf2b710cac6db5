"""`create_app(settings)`: the coordinator's Litestar application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from coordinator.agents.auth import provide_agent
from coordinator.agents.clock import Clock
from coordinator.agents.controllers import AgentsController, OrganizationAgentsController
from coordinator.agents.jobs import AgentJobs
from coordinator.auth import sessions
from coordinator.auth.controllers import AuthController, UsersController
from coordinator.auth.principal import provide_principal
from coordinator.central.runner import CentralRunner
from coordinator.checks.controllers import ChecksController
from coordinator.context import AppContext, app_context
from coordinator.db import engine as db_engine
from coordinator.db.migrate import migrate
from coordinator.db.sql import fetch
from coordinator.errors import EXCEPTION_HANDLERS, refuse_nul_characters
from coordinator.events.bus import EventBus
from coordinator.geo.controllers import CheckStatsController, GeoController
from coordinator.geo.rollups import RollupJob
from coordinator.jobs import Periodic
from coordinator.ratelimit import LoginLimiter
from coordinator.settings import Settings
from coordinator.status.controllers import CheckLogsController
from coordinator.status.engine import attach_bus, detach_bus
from coordinator.status.jobs import StatusJobs

log = logging.getLogger(__name__)
VERSION = "0.1.0"


class Health(msgspec.Struct):
    status: str
    database: str
    version: str = VERSION


@get("/healthz", operation_id="health", tags=["operations"])
async def healthz(request: Request[Any, Any, Any]) -> Response[Health]:
    """200 when the coordinator can reach its database, else 503."""
    try:
        await fetch(app_context(request).engine, "SELECT 1 AS ok")
    except Exception as exc:
        log.warning("health check: database unreachable: %s", exc)
        return Response(Health(status="unhealthy", database="unreachable"), status_code=503)
    return Response(Health(status="ok", database="ok"))


def create_app(settings: Settings) -> Litestar:
    engine = db_engine.make_engine(settings.database_url)
    db_engine.bind_tables(engine)
    ctx = AppContext(
        settings=settings,
        engine=engine,
        login_limiter=LoginLimiter(settings.login_attempts_per_minute, settings.login_attempts_per_minute_per_address),
    )
    events = EventBus()
    clock = Clock()
    agent_jobs = AgentJobs(engine, settings, events, clock)
    status_jobs = StatusJobs(engine, settings, events, clock)
    central = CentralRunner(engine, settings, clock)
    rollups = RollupJob(engine)

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        # Tables are bound again here: a process may have built several apps (tests do).
        db_engine.bind_tables(engine)
        await db_engine.start(engine)
        # Status changes found deep in ingest or a check update are published on this app's bus.
        attach_bus(engine, events)
        periodic = [
            Periodic("agent jobs", settings.agent_jobs_interval_seconds, agent_jobs.run_once),
            Periodic("status sweep", settings.agent_jobs_interval_seconds, status_jobs.run_once),
            Periodic("rollups", rollups.interval_seconds, rollups.run_once),
        ]
        central_jobs: asyncio.Task[None] | None = None
        try:
            await migrate(engine)
            ctx.jwt_key = await sessions.signing_key(engine, settings.secret_key)
            for job in periodic:
                job.start()
            central_jobs = asyncio.create_task(central.run_forever(), name="central-checks")
            yield
        finally:
            # The sweep first: its last status changes still reach the bus.
            for job in periodic:
                await job.stop()
            detach_bus(engine)
            if central_jobs is not None:
                central_jobs.cancel()  # the runner lets a database step finish (see its stop())
                with contextlib.suppress(asyncio.CancelledError):
                    await central_jobs
            await db_engine.stop(engine)

    return Litestar(
        route_handlers=[
            healthz,
            AuthController,
            UsersController,
            ChecksController,
            CheckLogsController,
            AgentsController,
            OrganizationAgentsController,
            GeoController,
            CheckStatsController,
        ],
        dependencies={"caller": Provide(provide_principal), "agent": Provide(provide_agent)},
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=refuse_nul_characters,
        lifespan=[lifespan],
        state=State(
            {
                "ctx": ctx,
                "events": events,
                "clock": clock,
                "agent_jobs": agent_jobs,
                "status_jobs": status_jobs,
                "central": central,
                "rollups": rollups,
            }
        ),
        request_max_body_size=settings.max_request_bytes,
        openapi_config=OpenAPIConfig(
            title="SysTeam HealthChecks coordinator",
            version=VERSION,
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        debug=False,
    )
