"""When each check runs: its own interval, from a stable offset, under one concurrency cap.

Every check gets one task that sleeps until its next slot, probes, hands the result on, and
sleeps again. The slot is a fixed phase of the wall clock: the check id hashes to a fraction of
the interval, so a thousand checks of 60 s do not all fire in the first second after a start,
and a restarted agent probes each check at the same second of the minute as before (the
coordinator sees an even cadence across restarts).

A check never has two probes in flight: the next slot is planned after the result is handed on,
and slots that passed meanwhile (a slow probe, a queue at the concurrency cap, a suspended
machine) are skipped rather than run in a burst.

The scheduler also measures its event loop's lag: a ticker that notes how late it wakes up. A
loop that is late by seconds probes late by seconds, and reports slow response times that are
not the target's fault; the heartbeat carries the numbers so that an operator can tell.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from agent.probes import run_probe
from shared.wire import CheckSpec, ProbeResult

log = logging.getLogger(__name__)

ProbeFn = Callable[[CheckSpec], Awaitable[ProbeResult]]
# Called with each result and whether the check's outcome (success or failure) differs from its
# previous result; the first result of a check counts as a change.
ResultSink = Callable[[ProbeResult, bool], Awaitable[None]]


def offset_fraction(check_id: int) -> float:
    """Where in its interval a check runs, as a fraction in [0, 1); the same in every process.

    Python's hash() is salted per process for strings, so a digest keeps the phase stable.
    """
    digest = hashlib.blake2b(str(check_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def first_delay(check_id: int, interval: float, now: float) -> float:
    """Seconds from the wall-clock time `now` until the check's next slot."""
    return (offset_fraction(check_id) * interval - now) % interval


@dataclass
class _Running:
    spec: CheckSpec
    task: asyncio.Task[None]
    probing: bool = False  # between taking a slot under the cap and handing the result on


class LagMonitor:
    """How late the event loop wakes a sleeper, over the last `window` ticks."""

    def __init__(self, tick: float = 0.5, window: int = 240) -> None:
        self.tick = tick
        self._samples: collections.deque[float] = collections.deque(maxlen=window)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.tick
            await asyncio.sleep(self.tick)
            self._samples.append(max(0.0, loop.time() - expected))

    @property
    def max_ms(self) -> float:
        return round(max(self._samples, default=0.0) * 1000.0, 3)

    @property
    def p99_ms(self) -> float:
        if not self._samples:
            return 0.0
        ordered = sorted(self._samples)
        index = min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)
        return round(ordered[index] * 1000.0, 3)


@dataclass
class Scheduler:
    """Runs the checks it is given by `reconcile`, until `stop`.

    `probe` runs one check (run_probe: it enforces the check's timeout and never raises);
    `on_result` receives every result. `wall_clock` sets the phase of the slots.
    """

    on_result: ResultSink
    concurrency: int = 200
    probe: ProbeFn = run_probe
    wall_clock: Callable[[], float] = time.time
    # Every interval is multiplied by it: tests run a schedule of seconds in tenths of a second.
    time_scale: float = 1.0
    lag: LagMonitor = field(default_factory=LagMonitor)
    _checks: dict[int, _Running] = field(default_factory=dict, init=False)
    _outcomes: dict[int, bool] = field(default_factory=dict, init=False)
    _cap: asyncio.Semaphore = field(init=False)
    _lag_task: asyncio.Task[None] | None = field(default=None, init=False)
    _stopping: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._cap = asyncio.Semaphore(self.concurrency)

    @property
    def running_checks(self) -> int:
        return len(self._checks)

    @property
    def check_ids(self) -> set[int]:
        return set(self._checks)

    def set_concurrency(self, concurrency: int) -> None:
        """A new cap for the probes that start from now on (those queued on the old one go first)."""
        if concurrency != self.concurrency:
            self.concurrency = concurrency
            self._cap = asyncio.Semaphore(concurrency)

    def reconcile(self, specs: Iterable[CheckSpec]) -> None:
        """Run exactly `specs`: start the new, restart the changed, stop the gone; leave the rest be."""
        if self._stopping:
            return
        if self._lag_task is None:
            self._lag_task = asyncio.create_task(self.lag.run(), name="hc-loop-lag")
        wanted = {spec.id: spec for spec in specs}
        for check_id in list(self._checks):
            if check_id not in wanted:
                self._checks.pop(check_id).task.cancel()
                self._outcomes.pop(check_id, None)
        started = changed = 0
        for check_id, spec in wanted.items():
            running = self._checks.get(check_id)
            if running is not None and running.spec == spec:
                continue
            if running is None:
                started += 1
            else:
                # The new spec may probe something else: a result of the old one must not follow.
                running.task.cancel()
                changed += 1
            self._start(spec)
        log.info("checks: %d running (%d started, %d changed)", len(self._checks), started, changed)

    def _start(self, spec: CheckSpec) -> None:
        task = asyncio.create_task(self._run_check(spec), name=f"hc-check-{spec.id}")
        self._checks[spec.id] = _Running(spec, task)

    async def _run_check(self, spec: CheckSpec) -> None:
        loop = asyncio.get_running_loop()
        interval = max(1, spec.interval) * self.time_scale
        next_at = loop.time() + first_delay(spec.id, interval, self.wall_clock())
        while not self._stopping:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            running = self._checks.get(spec.id)
            if running is None or running.spec is not spec:
                return  # replaced or removed while this task slept
            async with self._cap:
                running.probing = True
                try:
                    result = await self.probe(spec)
                    await self._hand_on(result)
                finally:
                    running.probing = False
            late = loop.time() - next_at
            next_at += interval * (1 + max(0, math.floor(late / interval)))

    async def _hand_on(self, result: ProbeResult) -> None:
        previous = self._outcomes.get(result.check_id)
        self._outcomes[result.check_id] = result.success
        try:
            await self.on_result(result, previous is None or previous != result.success)
        except Exception:
            # The check must keep its schedule even when the result cannot be kept.
            log.exception("could not hand on result %s of check %s", result.result_id, result.check_id)

    async def stop(self, grace: float) -> None:
        """Start no more probes; let those in flight finish for up to `grace` seconds, then cancel."""
        self._stopping = True
        if self._lag_task is not None:
            self._lag_task.cancel()
        tasks = []
        for running in self._checks.values():
            if not running.probing:
                running.task.cancel()
            tasks.append(running.task)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._checks.clear()
