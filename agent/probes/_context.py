"""What a probe module gets from the dispatcher and hands back to it.

A probe returns an `Outcome` (a success, or a failure that carries data such as an HTTP status) or
raises `ProbeFailure` to stop early with a reason a person understands. What it learns on the way
(timings, the address used, answers) goes into `ProbeContext.details` as it goes, so that a probe
cut short by its timeout still reports how far it got. The dispatcher adds what every result shares:
id, start time, response time, and the catch-all for the unexpected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.probes._address import AllowAddress


@dataclass
class ProbeContext:
    allow_address: AllowAddress | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # What to report if the time runs out now; a probe sets it when it knows better than
    # "timed out", e.g. a UDP probe that has sent its datagram is waiting for a reply.
    timeout_error: str | None = None

    def timing(self, phase: str, seconds: float) -> None:
        self.details.setdefault("timings", {})[phase] = ms(seconds)


@dataclass
class Outcome:
    success: bool
    error: str | None = None
    status_code: int | None = None
    # None means "the probe's wall-clock time"; ICMP reports its average round trip instead.
    response_time_ms: float | None = None


class ProbeFailure(Exception):
    """The target failed the probe; `error` is the short reason shown to people."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def ms(seconds: float) -> float:
    """Seconds to milliseconds, rounded to what a timer can honestly tell."""
    return round(seconds * 1000.0, 3)


def shorten(text: str, limit: int = 80) -> str:
    """Text received from a target, cut to fit in an error message."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def os_error_text(exc: OSError) -> str:
    """'connection refused' rather than '[Errno 111] Connect call failed ('127.0.0.1', 9)'."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return reason[0].lower() + reason[1:]
