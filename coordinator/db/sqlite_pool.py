"""SQLite with long-lived connections, and writers queued in the process instead of in SQLite.

Piccolo's SQLiteEngine opens a new connection, and with it a new aiosqlite thread, for every
query and every transaction, and leaves concurrent writers to SQLite's busy handler, which sleeps
and retries. On the ingest path that made connection set-up a large part of each batch, and the
sleeping made a long latency tail. Here a small pool of connections is kept open, and transactions
that take the write lock at BEGIN (IMMEDIATE, EXCLUSIVE) first wait for an in-process lock, in
arrival order, so a writer of this process never sleeps on the busy handler behind another.
Readers use the other pooled connections concurrently (the database is in WAL mode).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiosqlite
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType, dict_factory


class PooledSQLiteEngine(SQLiteEngine):
    def __init__(self, path: str, *, pool_size: int = 4, **connection_kwargs: Any) -> None:
        super().__init__(path=path, **connection_kwargs)
        self._pool_size = pool_size
        self._idle: list[aiosqlite.Connection] = []
        self._opened = 0
        self._available: asyncio.Condition | None = None
        self._writer: asyncio.Lock | None = None
        self._closed = False

    # --- the pool --------------------------------------------------------------------------------

    def _condition(self) -> asyncio.Condition:
        if self._available is None:
            self._available = asyncio.Condition()
        return self._available

    def write_lock(self) -> asyncio.Lock:
        if self._writer is None:
            self._writer = asyncio.Lock()
        return self._writer

    async def borrow(self) -> aiosqlite.Connection:
        available = self._condition()
        async with available:
            while not self._idle and self._opened >= self._pool_size:
                await available.wait()
            if self._idle:
                return self._idle.pop()
            self._opened += 1
        try:
            connection = await aiosqlite.connect(**self.connection_kwargs)
        except BaseException:
            await self._forget()
            raise
        connection.row_factory = dict_factory  # type: ignore[assignment]
        await connection.execute("PRAGMA foreign_keys = 1")
        return connection

    async def give_back(self, connection: aiosqlite.Connection, *, broken: bool = False) -> None:
        if broken or self._closed or connection.in_transaction:
            # A connection left inside a transaction (a failed rollback) must not be lent again.
            await connection.close()
            await self._forget()
            return
        available = self._condition()
        async with available:
            self._idle.append(connection)
            available.notify()

    async def _forget(self) -> None:
        available = self._condition()
        async with available:
            self._opened -= 1
            available.notify()

    async def close_pool(self) -> None:
        # A connection still lent out is closed when it comes back: its thread must not outlive
        # the event loop it reports to.
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()
        self._opened -= len(idle)

    # --- Piccolo's entry points ------------------------------------------------------------------

    def transaction(  # type: ignore[override]
        self, transaction_type: TransactionType = TransactionType.deferred, allow_nested: bool = True
    ) -> SQLiteTransaction:
        return PooledTransaction(engine=self, transaction_type=transaction_type, allow_nested=allow_nested)

    async def _run_in_new_connection(
        self, query: str, args: list[Any] | None = None, query_type: str = "generic", table: Any = None
    ) -> Any:
        connection = await self.borrow()
        broken = False
        try:
            # isolation_level=None: the statement commits by itself.
            async with connection.execute(query, args or []) as cursor:
                return await cursor.fetchall()
        except BaseException:
            broken = connection.in_transaction
            raise
        finally:
            await self.give_back(connection, broken=broken)


class PooledTransaction(SQLiteTransaction):
    __slots__ = ("_holds_write_lock",)

    engine: PooledSQLiteEngine

    async def __aenter__(self) -> SQLiteTransaction:
        if self._parent is not None:
            return self._parent
        self._holds_write_lock = self.transaction_type is not TransactionType.deferred
        if self._holds_write_lock:
            await self.engine.write_lock().acquire()
        try:
            self.connection = await self.engine.borrow()
            try:
                await self.begin()  # type: ignore[no-untyped-call]
            except BaseException:
                await self.engine.give_back(self.connection, broken=True)
                raise
        except BaseException:
            self._release_write_lock()
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent:
            return exception is None
        broken = False
        try:
            if exception:
                if not self._rolled_back:
                    await self.rollback()  # type: ignore[no-untyped-call]
            elif not self._committed and not self._rolled_back:
                await self.commit()  # type: ignore[no-untyped-call]
        except BaseException:
            broken = True
            raise
        finally:
            await self.engine.give_back(self.connection, broken=broken)
            self.engine.current_transaction.reset(self.context)
            self._release_write_lock()
        return exception is None

    def _release_write_lock(self) -> None:
        if getattr(self, "_holds_write_lock", False):
            self._holds_write_lock = False
            self.engine.write_lock().release()
