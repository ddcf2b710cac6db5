"""The status rules of CONTRACT §4, as pure functions: every row of both tables, the boundaries,
results that arrive out of order, and properties over random sources.

Times are explicit offsets from T0; nothing here sleeps or reads the wall clock.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from coordinator.status.rules import (
    CheckTiming,
    SourceState,
    apply_result,
    check_status,
    next_status_change_at,
    source_status,
)
from shared.wire import Status

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
TICK = timedelta(microseconds=1)
UP, DOWN, DEGRADED, UNKNOWN, PAUSED = Status.UP, Status.DOWN, Status.DEGRADED, Status.UNKNOWN, Status.PAUSED

PROPERTIES = settings(deadline=None, max_examples=300)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass(frozen=True)
class R:
    """One result: `t` seconds after T0."""

    t: float
    ok: bool
    ms: float | None = 100.0
    error: str | None = None


def ok(t: float, ms: float | None = 100.0) -> R:
    return R(t, True, ms)


def fail(t: float, error: str = "connection refused") -> R:
    return R(t, False, None, error)


def fold(results: Sequence[R], state: SourceState | None = None) -> SourceState | None:
    for r in results:
        state = apply_result(state, started_at=at(r.t), success=r.ok, response_time_ms=r.ms, error=r.error)
    return state


def folded(results: Sequence[R], state: SourceState | None = None) -> SourceState:
    """`fold` of at least one result."""
    after = fold(results, state)
    assert after is not None
    return after


def timing(
    interval: float = 60,
    timeout: float = 10,
    grace: float = 0,
    after: int = 1,
    threshold: float | None = None,
) -> CheckTiming:
    return CheckTiming(
        interval=interval,
        timeout=timeout,
        grace_period=grace,
        alert_after_failures=after,
        degraded_threshold_ms=threshold,
    )


# --- Status of one source: the table, row by row -------------------------------------------------

# (id, results, timing, now in seconds after T0, expected)
SOURCE_ROWS = [
    # UP: the latest result succeeded, within degraded_threshold_ms when that is set.
    ("up-no-threshold", [ok(0, ms=5000)], timing(), 10, UP),
    ("up-within-threshold", [ok(0, ms=250)], timing(threshold=300), 10, UP),
    ("up-exactly-at-threshold", [ok(0, ms=300)], timing(threshold=300), 10, UP),
    ("up-success-without-time", [ok(0, ms=None)], timing(threshold=300), 10, UP),
    ("up-success-ends-a-run", [fail(0), fail(60), fail(120), ok(180)], timing(after=3), 190, UP),
    ("up-success-ends-a-down-run", [fail(0), ok(60)], timing(), 70, UP),
    # DEGRADED: succeeded but slower than the threshold.
    ("degraded-slower-than-threshold", [ok(0, ms=300.5)], timing(threshold=300), 10, DEGRADED),
    ("degraded-latest-slow-after-fast", [ok(0, ms=10), ok(60, ms=900)], timing(threshold=300), 70, DEGRADED),
    ("up-latest-fast-after-slow", [ok(0, ms=900), ok(60, ms=10)], timing(threshold=300), 70, UP),
    # DEGRADED: failing, but not yet alert_after_failures times in a row over grace_period.
    ("degraded-1-of-3-failures", [ok(0), fail(60)], timing(after=3), 70, DEGRADED),
    ("degraded-2-of-3-failures", [fail(0), fail(60)], timing(after=3), 70, DEGRADED),
    ("degraded-2-of-3-long-past-grace", [fail(0), fail(60)], timing(after=3, grace=30), 100, DEGRADED),
    ("degraded-within-grace-after-1", [fail(0)], timing(after=1, grace=60), 59, DEGRADED),
    ("degraded-3-of-3-within-grace", [fail(0), fail(60), fail(120)], timing(after=3, grace=180), 179, DEGRADED),
    ("degraded-run-restarted-by-success", [fail(0), fail(60), ok(120), fail(180)], timing(after=2), 190, DEGRADED),
    # DOWN: at least alert_after_failures in a row, the first at least grace_period old.
    ("down-after-1-no-grace", [ok(0), fail(60)], timing(after=1), 60, DOWN),
    ("down-after-3-no-grace", [fail(0), fail(60), fail(120)], timing(after=3), 125, DOWN),
    ("down-more-than-needed", [fail(0), fail(60), fail(120), fail(180)], timing(after=3), 185, DOWN),
    ("down-exactly-at-grace-after-1", [fail(0)], timing(after=1, grace=60), 60, DOWN),
    ("down-exactly-at-grace-after-3", [fail(0), fail(60), fail(120)], timing(after=3, grace=180), 180, DOWN),
    ("down-grace-counts-from-first-failure", [fail(0), fail(60), fail(120)], timing(after=3, grace=120), 120, DOWN),
    ("down-failure-ignores-threshold", [fail(0, "timeout")], timing(threshold=300), 5, DOWN),
    # UNKNOWN: no result for longer than max(2.5 x interval, interval + timeout + grace).
    ("unknown-up-gone-stale", [ok(0)], timing(interval=60, timeout=10), 150.000001, UNKNOWN),
    ("up-exactly-at-staleness-bound", [ok(0)], timing(interval=60, timeout=10), 150, UP),
    ("unknown-down-gone-stale", [fail(0)], timing(interval=60, timeout=10), 151, UNKNOWN),
    ("unknown-degraded-gone-stale", [ok(0, ms=900)], timing(threshold=300), 151, UNKNOWN),
    # With a long grace period the bound is interval + timeout + grace (60 + 30 + 120 = 210 > 150).
    ("down-at-grace-bound", [fail(0)], timing(interval=60, timeout=30, grace=120), 210, DOWN),
    ("unknown-past-grace-bound", [fail(0)], timing(interval=60, timeout=30, grace=120), 210.000001, UNKNOWN),
    # Staleness counts from the newest result, not the first failure.
    ("down-stale-measured-from-newest", [fail(0), fail(100)], timing(after=2), 250, DOWN),
]


@pytest.mark.parametrize(
    ("results", "check_timing", "now", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in SOURCE_ROWS],
)
def test_source_status_follows_the_contract_table(
    results: list[R], check_timing: CheckTiming, now: float, expected: Status
) -> None:
    assert source_status(fold(results), check_timing, at(now)) is expected


def test_a_source_without_results_is_unknown() -> None:
    assert source_status(None, timing(), T0) is UNKNOWN
    assert source_status(SourceState(), timing(), T0) is UNKNOWN


@pytest.mark.parametrize("results", [[ok(0)], [fail(0)], [ok(0, ms=900)]], ids=["up", "down", "degraded"])
def test_a_source_whose_agent_is_offline_or_revoked_is_unknown_however_fresh(results: list[R]) -> None:
    gone = msgspec.structs.replace(folded(results), agent_available=False)
    assert source_status(gone, timing(threshold=300), at(1)) is UNKNOWN
    assert next_status_change_at(gone, timing(threshold=300), at(1)) is None


def test_the_agent_flag_survives_new_results() -> None:
    gone = SourceState(agent_available=False)
    state = folded([ok(0), fail(60)], gone)
    assert state.agent_available is False
    assert state == msgspec.structs.replace(folded([ok(0), fail(60)]), agent_available=False)


def test_the_staleness_bound_is_the_larger_of_its_two_terms() -> None:
    assert timing(interval=60, timeout=10).staleness_bound == timedelta(seconds=150)
    assert timing(interval=60, timeout=30, grace=120).staleness_bound == timedelta(seconds=210)
    assert timing(interval=10, timeout=15).staleness_bound == timedelta(seconds=25)


def test_a_failure_stamped_in_the_future_is_down_at_once_without_grace() -> None:
    # The agent's clock runs ahead by 30 s: no negative ages, no staleness either.
    state = fold([fail(30)])
    assert source_status(state, timing(), at(0)) is DOWN
    assert source_status(state, timing(grace=10), at(0)) is DEGRADED
    assert source_status(state, timing(grace=10), at(40)) is DOWN


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0, "timeout": 1},
        {"interval": 60, "timeout": -1},
        {"interval": 60, "timeout": 1, "grace_period": -1},
        {"interval": 60, "timeout": 1, "alert_after_failures": 0},
        {"interval": 60, "timeout": 1, "degraded_threshold_ms": -1.0},
    ],
)
def test_a_timing_no_check_could_have_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        CheckTiming(**kwargs)  # type: ignore[arg-type]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="started_at"):
        apply_result(None, started_at=datetime(2025, 3, 1), success=True, response_time_ms=1.0, error=None)
    with pytest.raises(ValueError, match="now"):
        source_status(fold([ok(0)]), timing(), datetime(2025, 3, 1))


# --- Folding results ------------------------------------------------------------------------------


def test_the_first_result_creates_the_state() -> None:
    state = apply_result(None, started_at=at(0), success=True, response_time_ms=42.5, error=None)
    assert state == SourceState(
        last_result_at=at(0),
        last_success=True,
        last_response_time_ms=42.5,
        last_error=None,
        consecutive_failures=0,
        failing_since=None,
        last_success_at=at(0),
        agent_available=True,
    )


def test_failures_count_from_the_first_of_the_run_and_a_success_clears_them() -> None:
    state = folded([ok(0), fail(60, "timeout"), fail(120, "refused")])
    assert (state.consecutive_failures, state.failing_since) == (2, at(60))
    assert (state.last_result_at, state.last_success, state.last_error) == (at(120), False, "refused")
    assert state.last_response_time_ms is None
    assert state.last_success_at == at(0)

    state = folded([ok(180, ms=12.0)], state)
    assert (state.consecutive_failures, state.failing_since, state.last_error) == (0, None, None)
    assert (state.last_result_at, state.last_success, state.last_response_time_ms) == (at(180), True, 12.0)


def test_a_late_result_never_moves_the_latest_fields_backwards() -> None:
    state = fold([ok(120, ms=20.0)])
    assert fold([fail(60, "old failure"), ok(0, ms=999.0)], state) == state


def test_a_late_failure_older_than_a_success_is_history() -> None:
    state = fold([ok(0), fail(120), ok(180)])
    assert fold([fail(150)], state) == state
    assert source_status(fold([fail(150)], state), timing(), at(181)) is UP


def test_a_backlog_replayed_newest_first_is_down_at_once() -> None:
    # An agent cut off from the coordinator while its target went down at t=60 comes back and
    # replays its spool newest first. Folding only the newest would show DEGRADED (1 of 3) for
    # two more intervals; the older failures prove 4 in a row, the first 180 s old.
    replay = [fail(240), fail(180), fail(120), fail(60), ok(0), fail(-60), fail(-120)]
    state = folded(replay)
    assert (state.consecutive_failures, state.failing_since, state.last_result_at) == (4, at(60), at(240))
    assert state == fold(sorted(replay, key=lambda r: r.t))
    assert source_status(state, timing(after=3, grace=120), at(245)) is DOWN


def test_live_results_interleaved_with_a_newest_first_backlog() -> None:
    prior = fold([ok(0)])
    # Live results (300, 360) go first, the backlog (60..240) follows newest first.
    state = folded([fail(300), fail(240), fail(360), ok(180), fail(120), fail(60)], prior)
    assert (state.consecutive_failures, state.failing_since, state.last_success_at) == (3, at(240), at(180))
    assert source_status(state, timing(after=3), at(361)) is DOWN


def test_a_late_success_inside_the_run_does_not_shorten_it() -> None:
    # Down before an outage, back up at t=180 during it, failing again by t=240. We knew of no
    # recovery while it happened: the run stays one run rather than the incident closing and
    # reopening after the fact (documented over-count).
    state = folded([fail(0), fail(60), fail(240), ok(180)])
    assert (state.consecutive_failures, state.failing_since) == (3, at(0))
    assert state.last_success_at == at(180)
    assert source_status(state, timing(after=3), at(241)) is DOWN
    # But the success still stops the run reaching further back.
    assert fold([fail(-60)], state) == state


def test_results_with_the_same_start_go_by_arrival() -> None:
    state = folded([ok(0), fail(0)])
    assert (state.last_success, state.consecutive_failures, state.failing_since) == (False, 1, at(0))
    state = folded([ok(0)], state)
    assert (state.last_success, state.consecutive_failures) == (True, 0)


# --- When the status changes by time alone ---------------------------------------------------------


@pytest.mark.parametrize(
    ("results", "check_timing", "now", "expected"),
    [
        pytest.param([ok(0)], timing(), 10, 150.000001, id="up-goes-unknown"),
        pytest.param([ok(0, ms=900)], timing(threshold=300), 10, 150.000001, id="slow-goes-unknown"),
        pytest.param([fail(0)], timing(grace=60), 10, 60, id="grace-ends-down"),
        pytest.param([fail(0)], timing(grace=60), 60, 150.000001, id="down-goes-unknown"),
        pytest.param([fail(0)], timing(timeout=30, grace=120), 120, 210.000001, id="down-goes-unknown-long-grace"),
        pytest.param([fail(0), fail(60)], timing(after=3), 70, 210.000001, id="short-run-goes-unknown"),
        pytest.param([fail(0), fail(60), fail(120)], timing(after=3, grace=150), 125, 150, id="grace-ends-after-3"),
        pytest.param([fail(0)], timing(grace=60), 59.999999, 60, id="one-tick-before-grace"),
        pytest.param([ok(0)], timing(), 150, 150.000001, id="at-the-bound"),
    ],
)
def test_next_status_change(results: list[R], check_timing: CheckTiming, now: float, expected: float) -> None:
    assert next_status_change_at(fold(results), check_timing, at(now)) == at(expected)


def test_an_unknown_source_changes_only_with_a_new_result() -> None:
    assert next_status_change_at(None, timing(), T0) is None
    assert next_status_change_at(fold([ok(0)]), timing(), at(151)) is None


# --- Status of the check: the rules in order ------------------------------------------------------

# (id, is_active, sources, critical, expected status, expected reason)
CHECK_ROWS = [
    # 1. inactive -> PAUSED, whatever the sources say
    ("paused", False, {"agent:5": DOWN}, {"agent:5": True}, PAUSED, "paused"),
    ("paused-without-sources", False, {}, {}, PAUSED, "paused"),
    # 2. a critical source DOWN -> DOWN, whatever the others say
    (
        "critical-down",
        True,
        {"agent:5": DOWN, "agent:6": UP, "agent:7": UP, "geo:EU-PL": UP},
        {"agent:5": True},
        DOWN,
        "critical source agent:5 DOWN",
    ),
    (
        "two-critical-down",
        True,
        {"geo:US-NY": DOWN, "agent:5": DOWN, "agent:6": UP, "agent:7": UP, "agent:8": UP},
        {"agent:5": True, "geo:US-NY": True},
        DOWN,
        "critical sources agent:5, geo:US-NY DOWN",
    ),
    (
        "critical-degraded-is-no-rule-2",
        True,
        {"agent:5": DEGRADED, "agent:6": UP},
        {"agent:5": True},
        DEGRADED,
        "source agent:5 DEGRADED",
    ),
    (
        "critical-false-is-not-critical",
        True,
        {"agent:5": DOWN, "agent:6": UP, "agent:7": UP},
        {"agent:5": False},
        DEGRADED,
        "agent:5 DOWN (1 of 3 reporting sources)",
    ),
    (
        "critical-key-without-source",
        True,
        {"agent:6": UP},
        {"agent:5": True},
        UP,
        "all reporting sources UP",
    ),
    # 3. more than half of the reporting sources DOWN -> DOWN
    (
        "majority-down",
        True,
        {"agent:1": DOWN, "agent:2": DOWN, "agent:3": DOWN, "agent:4": UP},
        {},
        DOWN,
        "3 of 4 reporting sources DOWN",
    ),
    ("single-source-down", True, {"central": DOWN}, {}, DOWN, "1 of 1 reporting sources DOWN"),
    (
        "unknown-sources-do-not-count",
        True,
        {"agent:1": DOWN, "agent:2": DOWN, "agent:3": UP, "agent:4": UNKNOWN, "agent:5": UNKNOWN},
        {},
        DOWN,
        "2 of 3 reporting sources DOWN",
    ),
    (
        "degraded-counts-as-reporting",
        True,
        {"agent:1": DOWN, "agent:2": DOWN, "agent:3": DEGRADED},
        {},
        DOWN,
        "2 of 3 reporting sources DOWN",
    ),
    # 4. any DOWN or DEGRADED -> DEGRADED
    (
        "exactly-half-down-is-not-more",
        True,
        {"agent:1": DOWN, "agent:2": UP},
        {},
        DEGRADED,
        "agent:1 DOWN (1 of 2 reporting sources)",
    ),
    (
        "one-of-three-down",
        True,
        {"agent:7": DOWN, "agent:8": UP, "geo:EU-PL": UP, "geo:US-NY": UNKNOWN},
        {},
        DEGRADED,
        "agent:7 DOWN (1 of 3 reporting sources)",
    ),
    (
        "down-and-degraded",
        True,
        {"agent:7": DOWN, "agent:8": UP, "geo:EU-PL": DEGRADED, "geo:US-NY": UP},
        {},
        DEGRADED,
        "agent:7 DOWN (1 of 4 reporting sources), geo:EU-PL DEGRADED",
    ),
    ("one-degraded", True, {"geo:EU-PL": DEGRADED, "central": UP}, {}, DEGRADED, "source geo:EU-PL DEGRADED"),
    ("only-degraded", True, {"geo:EU-PL": DEGRADED}, {}, DEGRADED, "source geo:EU-PL DEGRADED"),
    (
        "many-degraded-named-briefly",
        True,
        {f"geo:L{i}": DEGRADED for i in range(5)},
        {},
        DEGRADED,
        "sources geo:L0, geo:L1, geo:L2 and 2 more DEGRADED",
    ),
    # 5. any UP -> UP
    ("all-up", True, {"agent:1": UP, "agent:2": UP}, {}, UP, "all reporting sources UP"),
    ("up-beside-unknown", True, {"agent:1": UP, "agent:2": UNKNOWN}, {"agent:2": True}, UP, "all reporting sources UP"),
    # 6. otherwise UNKNOWN
    (
        "all-unknown",
        True,
        {"agent:1": UNKNOWN, "geo:EU-PL": UNKNOWN},
        {"agent:1": True},
        UNKNOWN,
        "no source reporting",
    ),
    ("no-sources", True, {}, {}, UNKNOWN, "no source reporting"),
]


@pytest.mark.parametrize(
    ("is_active", "sources", "critical", "expected", "reason"),
    [pytest.param(*row[1:], id=row[0]) for row in CHECK_ROWS],
)
def test_check_status_follows_the_contract_rules(
    is_active: bool, sources: dict[str, Status], critical: dict[str, bool], expected: Status, reason: str
) -> None:
    assert check_status(is_active, sources, critical) == (expected, reason)


@pytest.mark.parametrize("bad", [PAUSED, Status.MAINTENANCE])
def test_a_check_status_is_not_a_source_status(bad: Status) -> None:
    with pytest.raises(ValueError, match="agent:1"):
        check_status(True, {"agent:1": bad}, {})


# --- Properties of check_status -------------------------------------------------------------------

source_keys = st.one_of(
    st.integers(1, 40).map(lambda i: f"agent:{i}"),
    st.sampled_from(["geo:EU-PL", "geo:US-NY", "geo:AP-JP", "geo:EU-DE"]),
    st.just("central"),
)
source_statuses = st.sampled_from([UP, DOWN, DEGRADED, UNKNOWN])
source_maps = st.dictionaries(source_keys, source_statuses, max_size=12)
critical_maps = st.dictionaries(source_keys, st.booleans(), max_size=12)
WORSE = {UP: DEGRADED, DEGRADED: DOWN}
SEVERITY = {UP: 0, DEGRADED: 1, DOWN: 2}


@PROPERTIES
@given(st.booleans(), source_maps, critical_maps)
def test_paused_exactly_when_inactive(is_active: bool, sources: dict[str, Status], critical: dict[str, bool]) -> None:
    assert (check_status(is_active, sources, critical)[0] is PAUSED) is (not is_active)


@PROPERTIES
@given(source_maps, critical_maps, source_keys)
def test_a_critical_down_source_makes_the_check_down(
    others: dict[str, Status], critical: dict[str, bool], key: str
) -> None:
    sources = {**others, key: DOWN}
    status, reason = check_status(True, sources, {**critical, key: True})
    assert status is DOWN
    assert reason.startswith("critical source")


@PROPERTIES
@given(source_maps, critical_maps)
def test_up_only_when_every_reporting_source_is_up(sources: dict[str, Status], critical: dict[str, bool]) -> None:
    reporting = [s for s in sources.values() if s is not UNKNOWN]
    is_up = check_status(True, sources, critical)[0] is UP
    assert is_up is (bool(reporting) and all(s is UP for s in reporting))


@PROPERTIES
@given(source_maps, critical_maps)
def test_unknown_exactly_when_no_source_reports(sources: dict[str, Status], critical: dict[str, bool]) -> None:
    is_unknown = check_status(True, sources, critical)[0] is UNKNOWN
    assert is_unknown is all(s is UNKNOWN for s in sources.values())


@PROPERTIES
@given(source_maps, critical_maps)
def test_down_exactly_when_a_critical_source_or_most_reporting_sources_are_down(
    sources: dict[str, Status], critical: dict[str, bool]
) -> None:
    down = [key for key, s in sources.items() if s is DOWN]
    reporting = [s for s in sources.values() if s is not UNKNOWN]
    expected = any(critical.get(key) is True for key in down) or 2 * len(down) > len(reporting)
    assert (check_status(True, sources, critical)[0] is DOWN) is expected


@PROPERTIES
@given(st.booleans(), source_maps, critical_maps, source_keys, st.booleans())
def test_adding_an_unknown_source_changes_nothing(
    is_active: bool, sources: dict[str, Status], critical: dict[str, bool], key: str, key_critical: bool
) -> None:
    assume(key not in sources)
    more_critical = {**critical, key: key_critical}
    before = check_status(is_active, sources, critical)
    assert check_status(is_active, {**sources, key: UNKNOWN}, more_critical) == before


@PROPERTIES
@given(st.booleans(), source_maps, critical_maps, st.randoms(use_true_random=False))
def test_the_order_of_the_maps_does_not_matter(
    is_active: bool, sources: dict[str, Status], critical: dict[str, bool], rnd: random.Random
) -> None:
    source_items, critical_items = list(sources.items()), list(critical.items())
    rnd.shuffle(source_items)
    rnd.shuffle(critical_items)
    shuffled = check_status(is_active, dict(source_items), dict(critical_items))
    assert shuffled == check_status(is_active, sources, critical)


@PROPERTIES
@given(source_maps, critical_maps, st.data())
def test_a_reporting_source_getting_worse_never_makes_the_check_better(
    sources: dict[str, Status], critical: dict[str, bool], data: st.DataObject
) -> None:
    worsening = [key for key, s in sources.items() if s in WORSE]
    assume(worsening)
    key = data.draw(st.sampled_from(sorted(worsening)))
    before = check_status(True, sources, critical)[0]
    after = check_status(True, {**sources, key: WORSE[sources[key]]}, critical)[0]
    assert SEVERITY[after] >= SEVERITY[before]


# --- Properties of folding results ----------------------------------------------------------------


@st.composite
def timelines(draw: st.DrawFn, min_size: int = 1) -> list[R]:
    """Results of one source with distinct start times, in time order."""
    times = sorted(draw(st.lists(st.integers(0, 100_000), min_size=min_size, max_size=25, unique=True)))
    return [
        R(
            float(t),
            draw(st.booleans()),
            draw(st.one_of(st.none(), st.floats(0, 5000))),
            draw(st.sampled_from([None, "e"])),
        )
        for t in times
    ]


def truth(results: Sequence[R]) -> tuple[int, datetime | None]:
    """The failure run of these results, by definition: the failures after the newest success."""
    successes = [r.t for r in results if r.ok]
    run = [r.t for r in results if not r.ok and (not successes or r.t > max(successes))]
    return len(run), (at(min(run)) if run else None)


def run_of(state: SourceState | None) -> tuple[int, datetime | None]:
    assert state is not None
    return state.consecutive_failures, state.failing_since


@PROPERTIES
@given(timelines())
def test_folding_in_time_order_finds_the_failure_run(results: list[R]) -> None:
    assert run_of(fold(results)) == truth(results)


@PROPERTIES
@given(timelines(), st.randoms(use_true_random=False))
def test_the_latest_fields_come_from_the_newest_result_in_any_order(results: list[R], rnd: random.Random) -> None:
    arrival = list(results)
    rnd.shuffle(arrival)
    state = fold(arrival)
    newest = results[-1]
    assert state is not None
    assert state.last_result_at == at(newest.t)
    assert state.last_success is newest.ok
    assert state.last_response_time_ms == newest.ms
    assert state.last_error == newest.error
    successes = [r.t for r in results if r.ok]
    assert state.last_success_at == (at(max(successes)) if successes else None)
    # The run is never shorter than the truth, in any order: late results cannot delay DOWN.
    count, since = run_of(state)
    true_count, true_since = truth(results)
    assert count >= true_count
    assert true_since is None or (since is not None and since <= true_since)
    # ... and a run exists exactly when the newest result failed.
    assert (count > 0) is (not newest.ok)


@PROPERTIES
@given(timelines())
def test_folding_newest_first_equals_folding_in_time_order(results: list[R]) -> None:
    assert fold(list(reversed(results))) == fold(results)


@PROPERTIES
@given(timelines(min_size=2), st.data())
def test_a_live_first_replay_after_an_outage_finds_the_failure_run(results: list[R], data: st.DataObject) -> None:
    # Before the outage results arrive in order; after it, live results in order interleaved with
    # the spooled backlog newest first, the backlog all older than the live results.
    cut, live_from = sorted(data.draw(st.lists(st.integers(0, len(results)), min_size=2, max_size=2)))
    prior, backlog, live = results[:cut], results[cut:live_from], results[live_from:]
    pending_backlog, pending_live, arrival = list(reversed(backlog)), list(live), []
    while pending_backlog or pending_live:
        take_live = bool(pending_live) and (not pending_backlog or data.draw(st.booleans()))
        arrival.append((pending_live if take_live else pending_backlog).pop(0))
    state = folded(arrival, fold(prior))
    assert state.last_result_at == at(results[-1].t)
    count, since = run_of(state)
    true_count, true_since = truth(results)
    if not prior or prior[-1].ok or not any(r.ok for r in backlog):
        # Exact, unless the source failed before the outage and recovered during it.
        assert (count, since) == (true_count, true_since)
    else:
        assert count >= true_count
        assert true_since is None or (since is not None and since <= true_since)


# --- Properties of next_status_change_at ----------------------------------------------------------

timings = st.builds(
    timing,
    interval=st.integers(10, 600),
    timeout=st.integers(1, 60),
    grace=st.sampled_from([0, 0, 30, 60, 300]),
    after=st.sampled_from([1, 1, 2, 3]),
    threshold=st.one_of(st.none(), st.floats(1, 5000)),
)


@PROPERTIES
@given(timelines(), timings, st.integers(-100, 120_000), st.booleans())
def test_next_change_is_the_first_instant_the_status_differs(
    results: list[R], check_timing: CheckTiming, now_s: int, available: bool
) -> None:
    state = folded(results)
    state = msgspec.structs.replace(state, agent_available=available)
    now = at(now_s)
    current = source_status(state, check_timing, now)
    change = next_status_change_at(state, check_timing, now)
    if change is None:
        assert current is UNKNOWN
        assert source_status(state, check_timing, now + timedelta(days=365)) is UNKNOWN
        return
    assert change > now
    assert source_status(state, check_timing, change) is not current
    assert source_status(state, check_timing, change - TICK) is current
    midway = now + (change - now) / 2
    assert source_status(state, check_timing, midway) is current
