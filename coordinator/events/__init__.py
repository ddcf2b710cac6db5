"""The in-process event bus: what happened (`agent.status`, later `status.change`), for whoever listens."""

from coordinator.events.bus import Event, EventBus, Subscription, event_bus

__all__ = ["Event", "EventBus", "Subscription", "event_bus"]
