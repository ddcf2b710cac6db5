"""The in-process event bus: subscribers get what they asked for, and a slow one never blocks."""

from __future__ import annotations

import asyncio

import pytest

from coordinator.events.bus import AGENT_STATUS, EventBus

pytestmark = pytest.mark.asyncio


async def test_a_subscriber_receives_published_events_in_order() -> None:
    bus = EventBus()
    with bus.subscribe() as subscription:
        bus.publish(AGENT_STATUS, {"agent_id": 1, "status": "online"}, organization_id=7)
        bus.publish(AGENT_STATUS, {"agent_id": 1, "status": "offline"}, organization_id=7)
        first = await subscription.get(timeout=1)
        second = await subscription.get(timeout=1)
    assert (first.type, first.payload["status"], first.organization_id) == (AGENT_STATUS, "online", 7)
    assert second.payload["status"] == "offline"
    assert first.at <= second.at


async def test_every_subscriber_gets_its_own_copy() -> None:
    bus = EventBus()
    with bus.subscribe() as one, bus.subscribe() as two:
        bus.publish("x", {"n": 1})
        assert [e.payload for e in one.pending()] == [{"n": 1}]
        assert [e.payload for e in two.pending()] == [{"n": 1}]


async def test_a_subscriber_may_ask_for_some_event_types_only() -> None:
    bus = EventBus()
    with bus.subscribe(types=[AGENT_STATUS]) as subscription:
        bus.publish("status.change", {"check_id": 5})
        bus.publish(AGENT_STATUS, {"agent_id": 2})
        assert [e.type for e in subscription.pending()] == [AGENT_STATUS]


async def test_a_full_queue_drops_the_oldest_events_and_counts_them() -> None:
    bus = EventBus()
    with bus.subscribe(maxsize=3) as subscription:
        for n in range(5):
            bus.publish("x", {"n": n})
        assert [e.payload["n"] for e in subscription.pending()] == [2, 3, 4]
        assert subscription.dropped == 2


async def test_a_closed_subscription_receives_nothing_and_leaves_the_bus() -> None:
    bus = EventBus()
    subscription = bus.subscribe()
    assert bus.subscriber_count == 1
    subscription.close()
    bus.publish("x", {})
    assert bus.subscriber_count == 0
    assert subscription.get_nowait() is None


async def test_iteration_yields_events_as_they_come_and_stops_on_close() -> None:
    bus = EventBus()
    subscription = bus.subscribe()
    received: list[int] = []

    async def listen() -> None:
        async for event in subscription:
            received.append(event.payload["n"])

    listener = asyncio.create_task(listen())
    for n in range(3):
        bus.publish("x", {"n": n})
        await asyncio.sleep(0)
    subscription.close()
    await asyncio.wait_for(listener, timeout=1)
    assert received == [0, 1, 2]


async def test_get_times_out_when_nothing_is_published() -> None:
    bus = EventBus()
    with bus.subscribe() as subscription, pytest.raises(asyncio.TimeoutError):
        await subscription.get(timeout=0.01)
