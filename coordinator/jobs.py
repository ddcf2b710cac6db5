"""Background jobs on a timer, stopped between rounds rather than in the middle of one.

Cancelling a job while it waits on the database leaves a PostgreSQL connection mid-query, and the
pool's close then waits on it for a minute or more; so stopping asks the loop to end, lets the
round under way finish (within a grace period), and only then cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, interval: float, job: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self._interval = interval
        self._job = job
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            if self._stopping.is_set():
                return
            try:
                await self._job()
            except Exception:  # logged; the next round tries again
                log.exception("%s: this round failed", self.name)

    async def stop(self, grace: float = 10.0) -> None:
        self._stopping.set()
        if self._task is None:
            return
        _, still_running = await asyncio.wait({self._task}, timeout=grace)
        for task in still_running:
            log.warning("%s: the round under way did not finish in %.0f s; cancelling it", self.name, grace)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
