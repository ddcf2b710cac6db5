"""The status rules of CONTRACT §4, as pure functions.

Two levels. A *source* of a check (`agent:7`, `geo:EU-PL`, `central`) keeps a `SourceState`, which
`apply_result` folds each of its results into; `source_status` reads UP, DEGRADED, DOWN or UNKNOWN
from that state at a given instant. A *check*'s status comes from its sources' statuses through
`check_status`, the six ordered rules of §4.

Time is always an argument, never read from a clock: ingest passes the time it received a batch,
the staleness sweep its own "now", tests any instant they like. Some statuses change with time
alone (a grace period runs out, results go stale); `next_status_change_at` says when, so the sweep
knows when to look at a source again instead of polling every source every tick.

Nothing here raises on data the database could hold; it raises ValueError only for a caller's
mistake (a naive datetime, a timing no check could have, a check status passed as a source's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import msgspec

from shared.wire import Status

__all__ = [
    "SOURCE_STATUSES",
    "CheckTiming",
    "SourceState",
    "apply_result",
    "check_status",
    "next_status_change_at",
    "source_status",
]

SOURCE_STATUSES = frozenset({Status.UP, Status.DOWN, Status.DEGRADED, Status.UNKNOWN})

# The smallest step of a datetime. "No result for *longer than* the bound" first holds one tick
# after the bound, and `next_status_change_at` names the first instant the status differs.
_TICK = timedelta(microseconds=1)

# How many sources a reason names before it says "and N more": reasons go into the check's log.
_NAMED_IN_REASON = 3


class SourceState(msgspec.Struct, frozen=True, kw_only=True):
    """What the rules know about one (check, source) pair, as the source-state row keeps it.

    The `last_*` fields describe the newest result by `started_at`, whatever order results arrived
    in. The current failure run is the failures newer than the newest success known
    (`last_success_at`): `consecutive_failures` counts them and `failing_since` is the `started_at`
    of the oldest; 0 and None while the newest result is a success. `agent_available` is False
    while the agent that runs this source is offline or revoked; the caller keeps it current
    (`msgspec.structs.replace(state, agent_available=...)`), `apply_result` carries it over.
    """

    last_result_at: datetime | None = None
    last_success: bool | None = None
    last_response_time_ms: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    # Not one of the newest result's fields: the newest *success*, which bounds the failure run
    # when results arrive out of order (see apply_result).
    last_success_at: datetime | None = None
    agent_available: bool = True


class CheckTiming(msgspec.Struct, frozen=True, kw_only=True):
    """The check's settings that the source rules read. Durations in seconds."""

    interval: float
    timeout: float
    grace_period: float = 0
    alert_after_failures: int = 1
    degraded_threshold_ms: float | None = None

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"interval must be positive, not {self.interval!r}")
        if self.timeout < 0 or self.grace_period < 0:
            raise ValueError("timeout and grace_period must not be negative")
        if self.alert_after_failures < 1:
            raise ValueError(f"alert_after_failures must be at least 1, not {self.alert_after_failures!r}")
        if self.degraded_threshold_ms is not None and self.degraded_threshold_ms < 0:
            raise ValueError("degraded_threshold_ms must not be negative")

    @property
    def staleness_bound(self) -> timedelta:
        """A source with no result for longer than this is UNKNOWN: max(2.5 * interval, interval + timeout + grace)."""
        return timedelta(seconds=max(2.5 * self.interval, self.interval + self.timeout + self.grace_period))


def apply_result(
    state: SourceState | None,
    *,
    started_at: datetime,
    success: bool,
    response_time_ms: float | None,
    error: str | None,
) -> SourceState:
    """The state after one more result of this source. `None` is a source with no result yet.

    Fold each result once: the ingest inserts results ignoring known `result_id`s and must fold
    only the rows it actually inserted, since a failure folded twice counts twice.
    """
    _require_aware(started_at, "started_at")
    if state is None:
        state = SourceState()

    if state.last_result_at is None or started_at >= state.last_result_at:
        # The newest result (a tie goes to the later arrival): it sets the "latest" fields.
        if success:
            return msgspec.structs.replace(
                state,
                last_result_at=started_at,
                last_success=True,
                last_response_time_ms=response_time_ms,
                last_error=error,
                consecutive_failures=0,
                failing_since=None,
                last_success_at=started_at,
            )
        running = state.consecutive_failures > 0 and state.failing_since is not None
        return msgspec.structs.replace(
            state,
            last_result_at=started_at,
            last_success=False,
            last_response_time_ms=response_time_ms,
            last_error=error,
            consecutive_failures=state.consecutive_failures + 1 if running else 1,
            failing_since=state.failing_since if running else started_at,
        )

    # A late result: older than one already folded. Agents replay their spool after an outage
    # live-first, then newest-first, and a geo source can change agents mid-outage, so this is
    # routine, not an error. The result itself is stored with the others; here it must never move
    # the "latest" fields backwards (the status is about the newest result), but it is evidence
    # about the current failure run, and ignoring it would delay DOWN: an agent cut off while its
    # target went down replays its latest failure first, and only its older failures show that the
    # run is already `alert_after_failures` long and older than the grace period.
    #
    # So the run is "the failures newer than the newest success known", which needs only the
    # newest success's time (`last_success_at`), not every result's:
    # - a late failure newer than that success joins the run (and may move `failing_since` back);
    #   one older belongs to a run that a success already ended, and is history;
    # - a late success moves `last_success_at` forward, so older failures arriving after it (the
    #   rest of a newest-first replay) stay out of the run.
    # Folding in time order, newest-first, or live-first with a newest-first backlog gives exactly
    # the run of the results folded, with one exception: a late success that falls *inside* the
    # run (the source failed before an outage, recovered during it, failed again) cannot remove
    # the failures before it, because their times are not kept; the run stays one run. That errs
    # towards DOWN, and rightly so: we knew of no recovery while it happened, and shrinking the
    # run after the fact would close an incident only to reopen it a few results later.
    if success:
        if state.last_success_at is None or started_at > state.last_success_at:
            return msgspec.structs.replace(state, last_success_at=started_at)
        return state
    if state.consecutive_failures == 0 or state.failing_since is None:
        # The newest result succeeded, so this failure is older than a success: history.
        return state
    if state.last_success_at is not None and started_at <= state.last_success_at:
        return state
    return msgspec.structs.replace(
        state,
        consecutive_failures=state.consecutive_failures + 1,
        failing_since=min(state.failing_since, started_at),
    )


def source_status(state: SourceState | None, timing: CheckTiming, now: datetime) -> Status:
    """The source's status at `now`, by the table "Status of one source" of CONTRACT §4."""
    _require_aware(now, "now")
    if state is None or not state.agent_available or state.last_result_at is None or state.last_success is None:
        return Status.UNKNOWN
    if now - state.last_result_at > timing.staleness_bound:
        return Status.UNKNOWN
    if state.last_success:
        threshold = timing.degraded_threshold_ms
        rt = state.last_response_time_ms
        # A success without a measured time cannot be slower than anything.
        if threshold is not None and rt is not None and rt > threshold:
            return Status.DEGRADED
        return Status.UP
    if state.consecutive_failures >= timing.alert_after_failures and _grace_over(state, timing, now):
        return Status.DOWN
    return Status.DEGRADED


def next_status_change_at(state: SourceState | None, timing: CheckTiming, now: datetime) -> datetime | None:
    """The first instant after `now` at which `source_status` differs from its value at `now`, if
    no result arrives in between; None when only a result (or the agent's return) can change it.

    A failing source turns DOWN when its grace period ends, any source turns UNKNOWN one tick after
    the staleness bound, and UNKNOWN stays UNKNOWN: nothing else changes with time alone.
    """
    current = source_status(state, timing, now)
    if current is Status.UNKNOWN or state is None or state.last_result_at is None:
        return None
    candidates = [state.last_result_at + timing.staleness_bound + _TICK]
    if not state.last_success and state.consecutive_failures >= timing.alert_after_failures:
        candidates.append(_failing_since(state) + timedelta(seconds=timing.grace_period))
    for at in sorted(candidates):
        if at > now and source_status(state, timing, at) is not current:
            return at
    return None  # unreachable while the staleness bound is finite; kept for the type checker


def check_status(
    is_active: bool,
    sources: Mapping[str, Status],
    critical: Mapping[str, bool],
) -> tuple[Status, str]:
    """The check's status and a short reason naming the rule, by "Status of the check" (§4).

    `sources` maps each source key to its status; `critical` is `check_source_critical` (keys
    absent from it, or absent from `sources`, are simply not critical sources). Reasons name
    sources in sorted order, so they do not depend on the maps' order either.
    """
    if not is_active:
        return Status.PAUSED, "paused"
    for key, status in sources.items():
        if status not in SOURCE_STATUSES:
            shown = getattr(status, "value", status)
            raise ValueError(f"source {key} has status {shown}; a source is UP, DOWN, DEGRADED or UNKNOWN")

    down = sorted(key for key, status in sources.items() if status == Status.DOWN)
    degraded = sorted(key for key, status in sources.items() if status == Status.DEGRADED)
    reporting = sum(1 for status in sources.values() if status != Status.UNKNOWN)

    critical_down = [key for key in down if critical.get(key) is True]
    if critical_down:
        noun = "critical source" if len(critical_down) == 1 else "critical sources"
        return Status.DOWN, f"{noun} {_names(critical_down)} DOWN"
    if 2 * len(down) > reporting:
        return Status.DOWN, f"{len(down)} of {reporting} reporting sources DOWN"
    if down:
        reason = f"{_names(down)} DOWN ({len(down)} of {reporting} reporting sources)"
        if degraded:
            reason += f", {_names(degraded)} DEGRADED"
        return Status.DEGRADED, reason
    if degraded:
        noun = "source" if len(degraded) == 1 else "sources"
        return Status.DEGRADED, f"{noun} {_names(degraded)} DEGRADED"
    if reporting:
        return Status.UP, "all reporting sources UP"
    return Status.UNKNOWN, "no source reporting"


def _grace_over(state: SourceState, timing: CheckTiming, now: datetime) -> bool:
    # An agent whose clock runs ahead stamps results in the future; such a failure is taken as
    # age 0, not a negative age, so that with no grace period a failing source is DOWN at once.
    if timing.grace_period <= 0:
        return True
    return now - _failing_since(state) >= timedelta(seconds=timing.grace_period)


def _failing_since(state: SourceState) -> datetime:
    # A row written by hand (or by an older version) may lack it; the newest failure is then the
    # latest date the run can have started.
    if state.failing_since is not None:
        return state.failing_since
    assert state.last_result_at is not None
    return state.last_result_at


def _names(keys: Iterable[str]) -> str:
    keys = list(keys)
    named = ", ".join(keys[:_NAMED_IN_REASON])
    if len(keys) > _NAMED_IN_REASON:
        named += f" and {len(keys) - _NAMED_IN_REASON} more"
    return named


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, not {moment!r}")
