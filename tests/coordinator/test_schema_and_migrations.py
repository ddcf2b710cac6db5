"""The OpenAPI document names every operation; migrations apply once, also when raced."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coordinator.db import engine as db_engine
from coordinator.db.migrate import available_migrations, migrate
from coordinator.db.sql import fetch

pytestmark = pytest.mark.asyncio


async def test_every_operation_has_a_unique_operation_id(client: Any) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    ids = [
        operation["operationId"]
        for path in document["paths"].values()
        for method, operation in path.items()
        if method in {"get", "post", "put", "patch", "delete", "head"}
    ]
    assert ids
    assert len(ids) == len(set(ids))
    for expected in ("login", "getCurrentUser", "createAccessToken", "listChecks", "createCheck", "updateCheck"):
        assert expected in ids
    # Operation ids are written out, not derived from handler names Litestar would camel-case.
    assert all(not i.startswith(("Api", "api")) for i in ids), ids


async def test_healthz_reports_the_database(client: Any) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_migrations_apply_once_even_when_two_coordinators_race(database_url: str) -> None:
    first = db_engine.make_engine(database_url)
    second = db_engine.make_engine(database_url)
    for engine in (first, second):
        await db_engine.start(engine)
    try:
        applied = await asyncio.gather(migrate(first), migrate(second))
        everything = [m for m, _ in available_migrations("sqlite" if "sqlite" in database_url else "postgres")]
        assert sorted(applied[0] + applied[1]) == everything
        assert await migrate(first) == []
        rows = await fetch(first, "SELECT id FROM schema_migrations ORDER BY id")
        assert [r["id"] for r in rows] == everything
    finally:
        for engine in (first, second):
            await db_engine.stop(engine)
