"""Reading rows back the same way on SQLite and PostgreSQL, and taking the write lock early.

SQLite hands back JSON as text and loses the declared type (so datetimes come back as text) in
computed columns; PostgreSQL hands back native values. These helpers make both look the same.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from piccolo.engine.base import Engine
from piccolo.engine.sqlite import TransactionType

from coordinator.db.sql import is_sqlite


def as_datetime(value: Any) -> datetime.datetime | None:
    if value is None:
        return None
    parsed = value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def placeholders(count: int) -> str:
    return ", ".join("{}" for _ in range(count))


def write_transaction(engine: Engine[Any]) -> Any:
    """A transaction that takes SQLite's write lock at BEGIN.

    A deferred SQLite transaction that reads, then writes, can fail with "database is locked"
    when another writer got in between; IMMEDIATE makes it wait its turn at the start instead.
    """
    if is_sqlite(engine):
        return engine.transaction(transaction_type=TransactionType.immediate)  # type: ignore[call-arg]
    return engine.transaction()
