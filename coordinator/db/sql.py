"""Raw SQL through Piccolo's engine, for the queries the ORM would make slower or unclear.

Placeholders are `{}`; Piccolo compiles them to `?` or `$n` for the engine at hand.
"""

from __future__ import annotations

from typing import Any

from piccolo.engine.base import Engine
from piccolo.engine.sqlite import SQLiteEngine
from piccolo.querystring import QueryString


async def fetch(engine: Engine[Any], sql: str, *args: Any) -> list[dict[str, Any]]:
    rows = await engine.run_querystring(QueryString(sql, *args))
    return list(rows or [])


async def execute(engine: Engine[Any], sql: str, *args: Any) -> None:
    await engine.run_querystring(QueryString(sql, *args))


def is_sqlite(engine: Engine[Any]) -> bool:
    return isinstance(engine, SQLiteEngine)
