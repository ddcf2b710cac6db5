"""Central execution: the coordinator probes the checks that no agent runs (CONTRACT §4, `central`).

A check is central while it is active, of a probe type (not heartbeat), lists no assigned agent and
has geo monitoring off (`assignment.CENTRAL`). It is probed with the agent's own probe code, and
its results take the agents' path into the database (`store_results`), as source `central`.

Schedule. Each check runs on a grid of its own: every `interval` seconds, at a stable offset within
the interval (a hash of its id), so that checks of one interval do not all fire in the same second.
`checks.central_next_run_at` holds the next point of that grid; NULL (a new check) means now.

Claims. Several coordinators may share one PostgreSQL. Before probing, a coordinator moves
`central_next_run_at` from the value it read to the next grid point with a compare-and-set UPDATE;
only one of them can match, and the others skip that run. A run is claimed only when a probe slot
is free (the semaphore), so that a busy coordinator leaves due work to an idle one.

Refusals. Unless `HC_CENTRAL_ALLOW_PRIVATE` is on, a probe refuses loopback, private, link-local,
CGNAT and metadata addresses, judged on the address resolved at connect time; a refusal is an
error result ("address 10.0.0.5 refused: private"), like any other failed probe.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import hashlib
import logging
import math
from typing import Any

from piccolo.engine.base import Engine

from agent.probes import AllowAddress, refuse_non_public, run_probe
from coordinator.agents.assignment import CENTRAL, central_specs
from coordinator.agents.clock import Clock
from coordinator.agents.results import store_results
from coordinator.agents.rows import as_datetime
from coordinator.db.sql import fetch
from coordinator.settings import Settings
from shared.wire import CENTRAL_SOURCE, ProbeResult

log = logging.getLogger(__name__)

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def offset_of(check_id: int, interval: int) -> int:
    """The check's stable place within its interval, in whole seconds: the same on every coordinator."""
    digest = hashlib.sha256(f"central:{check_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % max(interval, 1)


def next_run_after(check_id: int, interval: int, now: datetime.datetime) -> datetime.datetime:
    """The first point of the check's grid strictly after `now` (whole seconds, UTC)."""
    interval = max(interval, 1)
    offset = offset_of(check_id, interval)
    elapsed = (now - _EPOCH).total_seconds()
    slot = math.floor((elapsed - offset) / interval) + 1
    return _EPOCH + datetime.timedelta(seconds=slot * interval + offset)


def is_due(next_run_at: datetime.datetime | None, interval: int, now: datetime.datetime) -> bool:
    """Due when never run, when its time has come, or when the stored time lies further ahead than
    one interval (the interval was shortened, or a clock jumped back): then the grid starts over."""
    if next_run_at is None:
        return True
    return next_run_at <= now or next_run_at > now + datetime.timedelta(seconds=max(interval, 1))


class DueCheck:
    """A central check found due: what its claim needs."""

    __slots__ = ("check_id", "interval", "stored_next_run")

    def __init__(self, check_id: int, interval: int, stored_next_run: Any) -> None:
        self.check_id = check_id
        self.interval = interval
        # As read from the database, handed back unchanged to the compare-and-set.
        self.stored_next_run = stored_next_run


async def due_checks(engine: Engine[Any], now: datetime.datetime) -> list[DueCheck]:
    rows = await fetch(
        engine,
        f"SELECT c.id, c.interval, c.central_next_run_at FROM checks c WHERE {CENTRAL} ORDER BY c.id",  # noqa: S608
    )
    return [
        DueCheck(int(row["id"]), int(row["interval"]), row["central_next_run_at"])
        for row in rows
        if is_due(as_datetime(row["central_next_run_at"]), int(row["interval"]), now)
    ]


async def claim(engine: Engine[Any], due: DueCheck, now: datetime.datetime) -> bool:
    """Moves the check's next run from what was read to the next grid point; True if this call did."""
    following = next_run_after(due.check_id, due.interval, now)
    if due.stored_next_run is None:
        rows = await fetch(
            engine,
            "UPDATE checks SET central_next_run_at = {} WHERE id = {} AND central_next_run_at IS NULL RETURNING id",
            following,
            due.check_id,
        )
    else:
        rows = await fetch(
            engine,
            "UPDATE checks SET central_next_run_at = {} WHERE id = {} AND central_next_run_at = {} RETURNING id",
            following,
            due.check_id,
            due.stored_next_run,
        )
    return bool(rows)


class CentralRunner:
    """Runs the due central checks: `run_once(now)` for tests, `run_forever` for the lifespan."""

    def __init__(self, engine: Engine[Any], settings: Settings, clock: Clock) -> None:
        self._engine = engine
        self._settings = settings
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.central_concurrency)
        self._allow: AllowAddress | None = None if settings.central_allow_private else refuse_non_public
        # Checks of this coordinator that are waiting for a slot or being probed: never started twice.
        self._in_flight: dict[int, asyncio.Task[ProbeResult | None]] = {}
        # Those of them in a database step, which `stop` lets finish rather than cut off.
        self._in_database: set[int] = set()
        self._stopping = False

    async def run_once(self, now: datetime.datetime | None = None) -> list[ProbeResult]:
        """Runs every check due at `now` (the app's clock when None) and waits for them; returns
        the results this coordinator stored."""
        at = now if now is not None else self._clock.now()
        tasks = self._start(await due_checks(self._engine, at), now)
        results = await asyncio.gather(*tasks)
        return [result for result in results if result is not None]

    async def run_forever(self) -> None:
        try:
            while True:
                await asyncio.sleep(self._settings.central_jobs_interval_seconds)
                try:
                    self._start(await due_checks(self._engine, self._clock.now()), None)
                except Exception:  # logged; the next round tries again
                    log.exception("central checks: this round failed")
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Ends the runs under way and waits for them: a run waiting for a slot or probing is
        cancelled; one talking to the database finishes that step first and then gives up, so that
        no query is cut off half-way (a cut-off query can outlive the event loop)."""
        self._stopping = True
        tasks = list(self._in_flight.items())
        for check_id, task in tasks:
            if check_id not in self._in_database:
                task.cancel()
        await asyncio.gather(*(task for _, task in tasks), return_exceptions=True)

    def _start(self, due: list[DueCheck], now: datetime.datetime | None) -> list[asyncio.Task[ProbeResult | None]]:
        started = []
        for item in due:
            if item.check_id in self._in_flight:
                continue
            task = asyncio.create_task(self._run(item, now), name=f"central-check-{item.check_id}")
            self._in_flight[item.check_id] = task
            task.add_done_callback(functools.partial(self._finished, item.check_id))
            started.append(task)
        return started

    def _finished(self, check_id: int, _: asyncio.Task[ProbeResult | None]) -> None:
        self._in_flight.pop(check_id, None)

    async def _run(self, due: DueCheck, now: datetime.datetime | None) -> ProbeResult | None:
        """Claims and probes one check; None when another coordinator had it, or it is no longer
        central. Never raises (but for cancellation): a failure is logged and the next run comes."""
        check_id = due.check_id
        try:
            async with self._slots:
                self._in_database.add(check_id)
                # Claimed only now that a slot is free, at the time it is actually run.
                if self._stopping or not await claim(self._engine, due, self._now(now)):
                    return None
                specs = await central_specs(self._engine, [check_id])
                if self._stopping or not specs:  # specs: paused, assigned or deleted since it was read
                    return None
                self._in_database.discard(check_id)
                result = await run_probe(specs[0], allow_address=self._allow)
                self._in_database.add(check_id)
                stored = await store_results(self._engine, CENTRAL_SOURCE, None, [result], self._now(now))
                return stored[0] if stored else None
        except Exception:
            log.exception("central check %s: run failed", check_id)
            return None
        finally:
            self._in_database.discard(check_id)

    def _now(self, now: datetime.datetime | None) -> datetime.datetime:
        return now if now is not None else self._clock.now()
