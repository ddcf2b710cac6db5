"""A small in-process publish/subscribe bus.

Publishers never wait: `publish` is synchronous and puts the event on every subscriber's bounded
queue. A subscriber that falls behind loses its oldest events (counted in `dropped`) rather than
slowing the request or job that published, since a status stream is only useful when it is
current. Events stay inside one process; with several coordinators each publishes what it decided
itself, and compare-and-set on the stored state makes sure only one of them decides a change.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Iterable
from typing import Any

import msgspec
from litestar.connection import ASGIConnection

DEFAULT_QUEUE_SIZE = 1000

AGENT_STATUS = "agent.status"


class Event(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    payload: dict[str, Any]
    # The organization whose members may see it; None for shared things (geo agents).
    organization_id: int | None
    at: datetime.datetime


class Subscription:
    """One listener's queue. Iterate it (`async for event in sub`) or `await sub.get()`; close when done."""

    def __init__(self, bus: EventBus, types: frozenset[str] | None, maxsize: int) -> None:
        self._bus = bus
        self._types = types
        # None is the end marker put by close(), so that a waiting iterator wakes up and stops.
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=maxsize + 1)
        self._maxsize = maxsize
        self.dropped = 0
        self.closed = False

    def wants(self, event: Event) -> bool:
        return self._types is None or event.type in self._types

    def offer(self, event: Event) -> None:
        if self.closed:
            return
        if self._queue.qsize() >= self._maxsize:
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self, timeout: float | None = None) -> Event:
        """The next event; TimeoutError when none comes within `timeout` s, EOFError once closed."""
        event = await asyncio.wait_for(self._queue.get(), timeout)
        if event is None:
            raise EOFError("the subscription is closed")
        return event

    def get_nowait(self) -> Event | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def pending(self) -> list[Event]:
        """Every event waiting now, taken off the queue."""
        events = []
        while (event := self.get_nowait()) is not None:
            events.append(event)
        return events

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._bus._unsubscribe(self)
        self._queue.put_nowait(None)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while (event := await self._queue.get()) is not None:
            yield event


class EventBus:
    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._subscriptions: list[Subscription] = []

    def publish(self, event_type: str, payload: dict[str, Any], organization_id: int | None = None) -> Event:
        event = Event(
            type=event_type,
            payload=payload,
            organization_id=organization_id,
            at=datetime.datetime.now(datetime.timezone.utc),
        )
        for subscription in list(self._subscriptions):
            if subscription.wants(event):
                subscription.offer(event)
        return event

    def subscribe(self, types: Iterable[str] | None = None, maxsize: int | None = None) -> Subscription:
        """A new listener for `types` (every type when None), with a queue of `maxsize` events."""
        subscription = Subscription(self, frozenset(types) if types is not None else None, maxsize or self._queue_size)
        self._subscriptions.append(subscription)
        return subscription

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def _unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)


def event_bus(connection: ASGIConnection[Any, Any, Any, Any]) -> EventBus:
    bus: EventBus = connection.app.state["events"]
    return bus
