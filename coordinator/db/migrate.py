"""Applies the numbered SQL migrations in order, each once, under a lock.

Several coordinators may start at once against one PostgreSQL: a transaction-scoped advisory lock
makes the others wait, then find nothing left to do. On SQLite an IMMEDIATE transaction takes the
file's write lock for the same effect.
"""

from __future__ import annotations

import datetime
import logging
from importlib import resources
from typing import Any

from piccolo.engine.base import Engine
from piccolo.engine.sqlite import TransactionType

from coordinator.db.sql import execute, fetch, is_sqlite

log = logging.getLogger(__name__)

# Any constant will do, as long as nothing else on the server uses it for another purpose.
_ADVISORY_LOCK_KEY = 0x48_43_4D_49_47  # "HCMIG"

_ID_COLUMN = {
    "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "postgres": "SERIAL PRIMARY KEY",
}


def available_migrations(dialect: str) -> list[tuple[str, str]]:
    """(migration id, SQL) pairs in order, for one dialect."""
    folder = resources.files("coordinator.db.migrations")
    chosen: dict[str, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        name = entry.name
        if not name.endswith(".sql"):
            continue
        stem = name.removesuffix(".sql")
        base, _, suffix = stem.partition(".")
        if suffix and suffix != dialect:
            continue
        chosen[base] = entry.read_text(encoding="utf-8")
    return sorted(chosen.items())


def statements(sql: str, dialect: str) -> list[str]:
    # Our migration files hold no semicolons inside literals, so a split on ';' is exact.
    text = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    text = text.replace("{id}", _ID_COLUMN[dialect])
    return [part.strip() for part in text.split(";") if part.strip()]


async def migrate(engine: Engine[Any]) -> list[str]:
    """Applies what is missing; returns the ids applied by this call."""
    dialect = "sqlite" if is_sqlite(engine) else "postgres"
    transaction = (
        engine.transaction(transaction_type=TransactionType.immediate)  # type: ignore[call-arg]
        if dialect == "sqlite"
        else engine.transaction()
    )
    applied: list[str] = []
    async with transaction:
        if dialect == "postgres":
            await execute(engine, "SELECT pg_advisory_xact_lock({})", _ADVISORY_LOCK_KEY)
        await execute(
            engine,
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(id VARCHAR(100) PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)",
        )
        done = {row["id"] for row in await fetch(engine, "SELECT id FROM schema_migrations")}
        for migration_id, sql in available_migrations(dialect):
            if migration_id in done:
                continue
            for statement in statements(sql, dialect):
                await engine.run_ddl(statement)
            await execute(
                engine,
                "INSERT INTO schema_migrations (id, applied_at) VALUES ({}, {})",
                migration_id,
                datetime.datetime.now(datetime.timezone.utc),
            )
            applied.append(migration_id)
            log.info("applied migration %s", migration_id)
    return applied
