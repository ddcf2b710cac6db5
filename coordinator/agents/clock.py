"""The coordinator's idea of "now", shared by requests and background jobs.

Agent liveness, token expiry and key overlaps all turn on minutes and hours; a test freezes and
advances this clock instead of sleeping. In production it is never frozen.
"""

from __future__ import annotations

import datetime
from typing import Any

from litestar.connection import ASGIConnection


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Clock:
    def __init__(self) -> None:
        self._frozen: datetime.datetime | None = None

    def now(self) -> datetime.datetime:
        return self._frozen if self._frozen is not None else utcnow()

    def freeze(self, at: datetime.datetime | None = None) -> datetime.datetime:
        self._frozen = at if at is not None else utcnow()
        return self._frozen

    def advance(self, seconds: float) -> datetime.datetime:
        return self.freeze(self.now() + datetime.timedelta(seconds=seconds))


def clock_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Clock:
    clock: Clock = connection.app.state["clock"]
    return clock
