"""The ICMP probe against 127.0.0.1 (the tests run as root, so a raw socket is allowed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from agent.probes import refuse_non_public, run_probe
from shared.wire import CheckType, ProbeResult

if TYPE_CHECKING:  # pytest imports the conftest itself; the names are only annotations here
    from tests.agent.probes.conftest import MakeSpec

NO_PERMISSION = "needs CAP_NET_RAW or net.ipv4.ping_group_range for ICMP"


def _skip_without_permission(result: ProbeResult) -> None:
    if result.error == NO_PERMISSION:
        pytest.skip("this machine allows neither raw nor unprivileged ICMP sockets")


async def test_pinging_loopback_reports_round_trips_and_no_loss(make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(CheckType.ICMP, host="127.0.0.1", ping_count=2))
    _skip_without_permission(result)

    assert result.success, result.error
    details = result.details
    assert details["packets_sent"] == 2
    assert details["packets_received"] == 2
    assert details["packet_loss"] == 0
    assert 0 <= details["rtt_min_ms"] <= details["rtt_avg_ms"] <= details["rtt_max_ms"]
    assert result.response_time_ms == details["rtt_avg_ms"]


async def test_a_name_is_resolved_before_pinging(make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(CheckType.ICMP, url="http://localhost/", ping_count=1))
    _skip_without_permission(result)

    assert result.success, result.error
    assert result.details["ip"] in ("127.0.0.1", "::1")


async def test_loopback_is_refused_by_the_policy(make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(CheckType.ICMP, host="127.0.0.1"), allow_address=refuse_non_public)

    assert not result.success
    assert result.error == "address 127.0.0.1 refused: loopback"
