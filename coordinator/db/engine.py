"""The database engine, chosen by HC_DATABASE_URL, and bound to every table.

Piccolo resolves a table's engine through its class (`Table._meta.db`), so binding is global to
the process: one coordinator process talks to one database.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine

from coordinator.db.sqlite_pool import PooledSQLiteEngine
from coordinator.db.tables import ALL_TABLES

# Seconds a SQLite writer waits for the write lock before giving up; ingest batches are short, so
# a wait this long means something is wrong rather than busy.
SQLITE_BUSY_TIMEOUT_S = 30.0


def sqlite_path(database_url: str) -> Path:
    return Path(database_url.removeprefix("sqlite:///"))


def make_engine(database_url: str) -> Engine[Any]:
    if database_url.startswith("sqlite:"):
        path = sqlite_path(database_url)
        # The folder holds the database with its secrets: the owner alone may look inside.
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _prepare_sqlite_file(path)
        return PooledSQLiteEngine(path=str(path), timeout=SQLITE_BUSY_TIMEOUT_S)
    parts = urlsplit(database_url)
    config: dict[str, Any] = {"dsn": database_url.split("?", 1)[0]}
    # `?search_path=x` keeps a deployment (or a test) inside its own schema.
    search_path = parse_qs(parts.query).get("search_path")
    if search_path:
        config["server_settings"] = {"search_path": search_path[0]}
    return PostgresEngine(config=config, extensions=())


def _prepare_sqlite_file(path: Path) -> None:
    # WAL lets readers go on while one writer writes, and it is a property of the file, so set once.
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")


def bind_tables(engine: Engine[Any]) -> None:
    for table in ALL_TABLES:
        table._meta.db = engine


async def start(engine: Engine[Any]) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(min_size=1, max_size=20)


async def stop(engine: Engine[Any]) -> None:
    if isinstance(engine, PostgresEngine):
        if engine.pool is not None:  # an engine that was never started has none
            await engine.close_connection_pool()
    elif isinstance(engine, PooledSQLiteEngine):
        await engine.close_pool()
