"""Helpers for tests that need people: users with roles in organizations, and their credentials."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from coordinator.auth import service
from coordinator.auth.principal import Role

PASSWORD = "correct-horse-battery"
T = TypeVar("T")


@dataclasses.dataclass
class Person:
    user_id: int
    email: str
    token: str  # a session JWT from POST /api/auth/token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def engine_of(client: Any) -> Any:
    return client.app.state["ctx"].engine


async def in_app(client: Any, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Awaits `function(*args, **kwargs)` on the loop the app runs on, and returns its result.

    A PostgreSQL pool belongs to the loop that opened it. The `client` fixture runs the app on
    the test's own loop, so this is a plain await; Litestar's AsyncTestClient runs it on a loop
    in another thread, and then the call is handed over to that thread.
    """
    portal = getattr(client, "blocking_portal", None)
    if portal is None:
        return await function(*args, **kwargs)
    call = functools.partial(function, *args, **kwargs)
    result: T = await asyncio.to_thread(portal.call, call)
    return result


async def db_fetch(client: Any, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Raw SQL (`{}` placeholders) against the app's database, on the app's loop."""
    from coordinator.db.sql import fetch

    return await in_app(client, fetch, engine_of(client), sql, *args)


async def login(client: Any, email: str, password: str = PASSWORD) -> str:
    response = await client.post("/api/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    # The shared client must not carry this person's session cookie into other callers' requests.
    client.cookies.clear()
    return str(response.json()["access_token"])


async def make_person(
    client: Any,
    email: str,
    *,
    org: str | None = "acme",
    role: Role = Role.MEMBER,
    superadmin: bool = False,
) -> Person:
    """A user (joining or founding `org` with `role`) who has logged in."""
    user_id = await in_app(
        client,
        service.create_user,
        engine_of(client),
        email,
        PASSWORD,
        superadmin=superadmin,
        organization=org,
        role=role,
    )
    return Person(user_id=user_id, email=email, token=await login(client, email))


async def organization_id(client: Any, person: Person) -> int:
    response = await client.get("/api/users/me", headers=person.headers)
    assert response.status_code == 200, response.text
    return int(response.json()["organizations"][0]["id"])


async def insert_agent(
    client: Any, organization: int | None, *, mode: str = "private", location: str | None = None
) -> int:
    """An agent row written straight to the database, for tests that only need one to exist."""
    import datetime
    import secrets

    rows = await db_fetch(
        client,
        "INSERT INTO agents (organization, name, mode, location_id, key_hash, created_at) "
        "VALUES ({}, {}, {}, {}, {}, {}) RETURNING id",
        organization,
        f"agent-{secrets.token_hex(3)}",
        mode,
        location,
        secrets.token_hex(32),
        datetime.datetime.now(datetime.timezone.utc),
    )
    return int(rows[0]["id"])


# --- agents ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class AgentKey:
    """A registered agent as a test drives it: its id and key, and the register answer."""

    id: int
    key: str
    registered: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def agent_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Any:
    """Settings whose background jobs never run on their own: the tests call `run_once(now)`."""
    from coordinator.settings import Settings

    values: dict[str, Any] = {"agent_jobs_interval_seconds": 3600, "central_jobs_interval_seconds": 3600, **overrides}
    return Settings(database_url=database_url, data_dir=tmp_path, **values)


def clock_of(client: Any) -> Any:
    return client.app.state["clock"]


def bus_of(client: Any) -> Any:
    return client.app.state["events"]


def jobs_of(client: Any) -> Any:
    return client.app.state["agent_jobs"]


async def make_pat(client: Any, person: Person, name: str = "ci") -> str:
    response = await client.post("/api/users/me/tokens", json={"name": name}, headers=person.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


async def registration_token(client: Any, person: Person, **body: Any) -> str:
    body.setdefault("name", "probe")
    response = await client.post("/api/agents/registration-token", json=body, headers=person.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


async def register_agent(
    client: Any, person: Person, *, name: str = "probe", hostname: str = "probe-1", **token_body: Any
) -> AgentKey:
    """Registers an agent through the API: a registration token from `person`, then /register."""
    token = await registration_token(client, person, name=name, **token_body)
    response = await client.post(
        "/api/agents/register",
        json={
            "token": token,
            "name": name,
            "hostname": hostname,
            "version": "1.0.0",
            "capabilities": ["http", "tcp", "dns", "icmp"],
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return AgentKey(id=int(body["agent_id"]), key=str(body["api_key"]), registered=body)


async def heartbeat(client: Any, agent: AgentKey, **body: Any) -> dict[str, Any]:
    body.setdefault("version", "1.0.0")
    body.setdefault("hostname", "probe-1")
    body.setdefault("running_checks", 0)
    body.setdefault("spool_depth", 0)
    response = await client.post("/api/agents/heartbeat", json=body, headers=agent.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def create_check(client: Any, person: Person, **fields: Any) -> int:
    body = {"name": "site", "type": "uptime", "url": "https://example.com/", "interval": 60, **fields}
    response = await client.post("/api/checks/", json=body, headers=person.headers)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def agent_check_ids(client: Any, agent: AgentKey) -> list[int]:
    response = await client.get("/api/agents/checks", headers=agent.headers)
    assert response.status_code == 200, response.text
    return [int(c["id"]) for c in response.json()["checks"]]


def probe_result(check_id: int, **fields: Any) -> dict[str, Any]:
    """One well-formed result for `check_id`, as an agent sends it."""
    started_at = fields.pop("started_at", None) or datetime.datetime.now(datetime.timezone.utc)
    result = {
        "result_id": str(uuid.uuid4()),
        "check_id": check_id,
        "started_at": started_at.isoformat() if isinstance(started_at, datetime.datetime) else started_at,
        "success": True,
        "response_time_ms": 123.4,
        "status_code": 200,
        "error": None,
        "details": {"timings": {"dns": 1.2, "connect": 3.4, "tls": 20.1, "ttfb": 50.0}},
    }
    result.update(fields)
    return result


async def run_jobs(client: Any, now: datetime.datetime) -> Any:
    """One round of the agent jobs at `now`, on the app's loop (they use its database pool)."""
    return await in_app(client, jobs_of(client).run_once, now)


async def next_event(subscription: Any, timeout: float = 5.0) -> Any:
    """The next event a subscription receives from the app's loop.

    The bus is published to from the app's thread; the test's loop polls rather than waits on the
    queue, whose waiters belong to one loop.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        event = subscription.get_nowait()
        if event is not None:
            return event
        await asyncio.sleep(0.02)
    raise AssertionError(f"no event within {timeout} s")


# --- statuses -------------------------------------------------------------------------------------


def status_jobs_of(client: Any) -> Any:
    return client.app.state["status_jobs"]


async def run_sweep(client: Any, now: datetime.datetime) -> Any:
    """One round of the staleness sweep at `now`, on the app's loop."""
    return await in_app(client, status_jobs_of(client).run_once, now)


async def check_logs(client: Any, person: Person, check_id: int, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/api/checks/{check_id}/logs", params=params, headers=person.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def post_result(
    client: Any, agent: AgentKey, check_id: int, *, success: bool, at: datetime.datetime, **fields: Any
) -> None:
    """One result from `agent`, started at `at`; it must be accepted."""
    if not success:
        fields.setdefault("error", "connection refused")
        fields.setdefault("status_code", None)
    result = probe_result(check_id, started_at=at, success=success, **fields)
    response = await client.post("/api/agents/results", json={"results": [result]}, headers=agent.headers)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1, response.text
