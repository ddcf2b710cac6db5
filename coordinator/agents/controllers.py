"""Routes of the agent protocol (CONTRACT §3) and of agents as people manage them.

Two kinds of caller, never mixed: handlers taking `agent: AuthenticatedAgent` are the agent
endpoints (agent key only); handlers taking `caller: Principal` are for people (user tokens only).
`/api/agents/checks/{id}/geo-summary` and `…/geo-timeseries` are served by `coordinator.geo`;
nothing here claims `/api/agents/checks/…` below `checks` itself.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from coordinator.agents import assignment, results, service
from coordinator.agents.auth import AuthenticatedAgent
from coordinator.agents.clock import clock_of
from coordinator.agents.schemas import (
    AgentChecks,
    AgentList,
    AgentOut,
    GeoLocationIn,
    GeoLocationOut,
    HeartbeatIn,
    HeartbeatOut,
    RegisterIn,
    RegisterOut,
    RegistrationTokenIn,
    RegistrationTokenOut,
    ResultsIn,
    ResultsOut,
    RotatedKey,
)
from coordinator.auth.principal import Principal, Role
from coordinator.context import app_context
from coordinator.errors import FieldError, NotFound, Unprocessable
from coordinator.events.bus import event_bus
from coordinator.params import PathId


def _base_url(request: Request[Any, Any, Any]) -> str:
    return str(request.base_url).rstrip("/")


class AgentsController(Controller):
    path = "/api/agents"
    tags = ["agents"]

    # --- registration -------------------------------------------------------------------------

    @post("/registration-token", operation_id="createRegistrationToken", status_code=201)
    async def create_registration_token(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal], data: JSONBody[RegistrationTokenIn]
    ) -> RegistrationTokenOut:
        """A single-use token, valid one hour, that buys one agent: private (ADMIN+) or geo (superadmin)."""
        return await service.create_registration_token(
            app_context(request).engine, caller, data, _base_url(request), clock_of(request).now()
        )

    @post("/register", operation_id="registerAgent", status_code=201)
    async def register(self, request: Request[Any, Any, Any], data: JSONBody[RegisterIn]) -> RegisterOut:
        """Trades a registration token for the agent's key (`agk_…`, shown only here). No other auth."""
        ctx = app_context(request)
        return await service.register(ctx.engine, data, ctx.settings.agent_heartbeat_interval, clock_of(request).now())

    # --- the agent's own endpoints ------------------------------------------------------------

    @post("/heartbeat", operation_id="agentHeartbeat", status_code=200)
    async def heartbeat(
        self, request: Request[Any, Any, Any], agent: NamedDependency[AuthenticatedAgent], data: JSONBody[HeartbeatIn]
    ) -> HeartbeatOut:
        engine = app_context(request).engine
        now = clock_of(request).now()
        await service.record_heartbeat(engine, event_bus(request), agent, data, now)
        specs = await assignment.assigned_specs(engine, agent, now)
        return HeartbeatOut(
            server_time=now,
            checks_etag=assignment.etag_of(specs),
            heartbeat_interval=agent.heartbeat_interval,
        )

    @get("/checks", operation_id="agentChecks")
    async def checks(
        self, request: Request[Any, Any, Any], agent: NamedDependency[AuthenticatedAgent]
    ) -> Response[Any]:
        """The checks this agent runs, secrets included; 304 when If-None-Match still matches."""
        specs = await assignment.assigned_specs(app_context(request).engine, agent, clock_of(request).now())
        etag = assignment.etag_of(specs)
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if assignment.etag_matches(request.headers.get("if-none-match"), etag):
            return Response(content=b"", status_code=304, headers=headers)
        return Response(AgentChecks(checks=specs), headers=headers)

    @post(
        "/results",
        operation_id="agentResults",
        status_code=200,
        request_max_body_size=results.MAX_BYTES,
    )
    async def post_results(
        self, request: Request[Any, Any, Any], agent: NamedDependency[AuthenticatedAgent], data: JSONBody[ResultsIn]
    ) -> ResultsOut:
        """Up to 1000 results or 1 MiB (413 past either). Each is accepted, a duplicate, or rejected."""
        return await results.ingest(app_context(request).engine, agent, data.results, clock_of(request).now())

    # --- agents for people --------------------------------------------------------------------

    @get("/", operation_id="listAgents")
    async def list_agents(self, request: Request[Any, Any, Any], caller: NamedDependency[Principal]) -> list[AgentOut]:
        """The agents of the caller's organizations (every agent, geo ones too, for a superadmin)."""
        return await service.list_agents(app_context(request).engine, caller, clock_of(request).now())

    @get("/{agent_id:int}", operation_id="getAgent")
    async def get_agent(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal], agent_id: PathId
    ) -> AgentOut:
        row = await service.get_agent_row(app_context(request).engine, caller, agent_id, Role.VIEWER)
        return service.agent_out(row, clock_of(request).now())

    @delete("/{agent_id:int}", operation_id="revokeAgent", status_code=204)
    async def revoke_agent(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal], agent_id: PathId
    ) -> None:
        """Revokes the agent: its keys answer 401 from now on."""
        engine = app_context(request).engine
        row = await service.get_agent_row(engine, caller, agent_id, Role.ADMIN)
        await service.revoke_agent(engine, event_bus(request), row, clock_of(request).now())

    @post("/{agent_id:int}/rotate-key", operation_id="rotateAgentKey", status_code=201)
    async def rotate_key(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal], agent_id: PathId
    ) -> RotatedKey:
        """A new key, shown only here; the previous one keeps working until `previous_key_expires_at`."""
        ctx = app_context(request)
        row = await service.get_agent_row(ctx.engine, caller, agent_id, Role.ADMIN)
        return await service.rotate_key(
            ctx.engine, row, ctx.settings.agent_key_overlap_seconds, clock_of(request).now()
        )

    # --- geo locations ------------------------------------------------------------------------

    @get("/geo-locations", operation_id="listGeoLocations")
    async def list_geo_locations(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal]
    ) -> list[GeoLocationOut]:
        return await service.list_geo_locations(app_context(request).engine, clock_of(request).now())

    @post("/geo-locations", operation_id="addGeoLocation", status_code=201)
    async def add_geo_location(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal], data: JSONBody[GeoLocationIn]
    ) -> GeoLocationOut:
        """Superadmin only."""
        return await service.add_geo_location(app_context(request).engine, caller, data)


class OrganizationAgentsController(Controller):
    path = "/api/organizations/{organization_id:int}/agents"
    tags = ["agents"]

    @get("/", operation_id="listOrganizationAgents")
    async def list_agents(
        self, request: Request[Any, Any, Any], caller: NamedDependency[Principal], organization_id: PathId
    ) -> AgentList:
        agents = await service.list_agents(
            app_context(request).engine, caller, clock_of(request).now(), organization_id=organization_id
        )
        return AgentList(agents=agents, count=len(agents))

    @delete("/{agent_id:int}", operation_id="revokeOrganizationAgent", status_code=204)
    async def revoke_agent(
        self,
        request: Request[Any, Any, Any],
        caller: NamedDependency[Principal],
        organization_id: PathId,
        agent_id: PathId,
    ) -> None:
        engine = app_context(request).engine
        caller.require(organization_id, Role.ADMIN, what="organization")
        row = await service.get_agent_row(engine, caller, agent_id, Role.ADMIN)
        if row["organization"] is None or int(row["organization"]) != organization_id:
            raise NotFound("agent not found")
        await service.revoke_agent(engine, event_bus(request), row, clock_of(request).now())

    @post("/registration-token", operation_id="createOrganizationRegistrationToken", status_code=201)
    async def create_registration_token(
        self,
        request: Request[Any, Any, Any],
        caller: NamedDependency[Principal],
        organization_id: PathId,
        data: JSONBody[RegistrationTokenIn],
    ) -> RegistrationTokenOut:
        """As POST /api/agents/registration-token, for a private agent of this organization."""
        problems = []
        if data.mode != "private":
            problems.append(FieldError(field="mode", message="an organization's agents are private"))
        if data.organization_id not in (None, organization_id):
            problems.append(FieldError(field="organization_id", message="differs from the one in the path"))
        if problems:
            raise Unprocessable.for_fields(problems)
        data.organization_id = organization_id
        return await service.create_registration_token(
            app_context(request).engine, caller, data, _base_url(request), clock_of(request).now()
        )
