"""Fixtures shared by the whole suite.

Database tests take `database_url`, which runs each of them twice: on a fresh SQLite file and on
a fresh schema of a real PostgreSQL. Where no PostgreSQL answers (a laptop), the PostgreSQL runs
are skipped with the reason; CI sets HC_TEST_REQUIRE_POSTGRES=1 to make that a failure instead.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# Fast, weak password hashing: the suite creates hundreds of users. Set before the app is imported.
os.environ.setdefault("HC_PASSWORD_HASHING", "cheapest")

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    return os.environ.get("HC_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@functools.cache
def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed"

    async def probe() -> None:
        conn = await asyncpg.connect(postgres_url(), timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"PostgreSQL at {postgres_url()} is not reachable: {exc}"
    return None


def _run_sql(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(postgres_url(), timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hc.db'}"
        return
    problem = postgres_problem()
    if problem is not None:
        if os.environ.get("HC_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    _run_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{postgres_url()}?search_path={schema}"
    finally:
        _run_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def settings(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    from coordinator.settings import Settings

    # The coordinator's own probes wait for tests that ask for them (tests/coordinator/test_central.py):
    # the checks other tests create point at example.com, and tests talk to loopback only.
    return Settings(database_url=database_url, data_dir=tmp_path, central_jobs_interval_seconds=3600)


@pytest.fixture
async def client(settings) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    """An HTTP client on the app, in the test's own event loop.

    Litestar's AsyncTestClient runs the app on a thread with a loop of its own, which a test
    touching the database directly (a PostgreSQL pool belongs to one loop) cannot share.
    """
    import httpx

    from coordinator.app import create_app

    app = create_app(settings)
    started, stopping = asyncio.Event(), asyncio.Event()

    async def run_lifespan() -> None:
        # The lifespan must start and end in one task; fixture set-up and tear-down are two.
        async with app.lifespan():
            started.set()
            await stopping.wait()

    lifespan = asyncio.create_task(run_lifespan())
    await asyncio.wait([lifespan, asyncio.create_task(started.wait())], return_when=asyncio.FIRST_COMPLETED)
    if lifespan.done():
        lifespan.result()  # start-up failed: raise its error here
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as http:
            http.app = app  # type: ignore[attr-defined]
            yield http
    finally:
        stopping.set()
        await lifespan
