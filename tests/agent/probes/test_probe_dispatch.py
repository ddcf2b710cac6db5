"""run_probe's promises: a well-formed result every time, never an exception; and the address policy."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import msgspec
import pytest

import agent.probes
from agent.probes import refuse_non_public, run_probe
from agent.probes._context import Outcome, ProbeContext
from shared.wire import CheckSpec, CheckType, ProbeResult

if TYPE_CHECKING:  # pytest imports the conftest itself; the names are only annotations here
    from tests.agent.probes.conftest import MakeSpec


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("100.128.0.1", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_refuse_non_public_names_the_class_of_address(address: str, reason: str | None) -> None:
    assert refuse_non_public(ipaddress.ip_address(address)) == reason


async def test_a_failed_probe_is_still_a_complete_result(make_spec: MakeSpec) -> None:
    before = datetime.now(timezone.utc)

    result = await run_probe(make_spec(CheckType.UPTIME, url=None))

    assert isinstance(result, ProbeResult)
    assert result.success is False
    assert result.error == "uptime check needs a URL"
    assert result.check_id == 1
    assert uuid.UUID(result.result_id).version == 4
    assert result.started_at.tzinfo is not None
    assert result.started_at.utcoffset() == timedelta(0)
    assert before <= result.started_at <= datetime.now(timezone.utc)
    assert isinstance(result.response_time_ms, float)


async def test_every_result_gets_a_fresh_id(make_spec: MakeSpec) -> None:
    spec = make_spec(CheckType.UPTIME, url=None)

    ids = {(await run_probe(spec)).result_id for _ in range(3)}

    assert len(ids) == 3


async def test_a_result_survives_the_wire(make_spec: MakeSpec, closed_port: int) -> None:
    result = await run_probe(make_spec(url=f"http://127.0.0.1:{closed_port}/"))

    decoded = msgspec.json.decode(msgspec.json.encode(result), type=ProbeResult)

    assert decoded == result


async def test_heartbeat_checks_are_not_probed(make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(CheckType.HEARTBEAT))

    assert not result.success
    assert result.error == "heartbeat checks are not probed by an agent"


async def test_a_zero_timeout_is_refused(make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(CheckType.TCP, host="127.0.0.1", port=9, timeout=0))

    assert not result.success
    assert result.error == "invalid timeout 0: must be at least 1 s"


async def test_a_bug_inside_a_probe_becomes_a_failed_result(
    make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(spec: CheckSpec, ctx: ProbeContext) -> Outcome:
        raise KeyError("oops")

    monkeypatch.setitem(agent.probes._PROBES, CheckType.TCP, broken)

    result = await run_probe(make_spec(CheckType.TCP, host="127.0.0.1", port=9))

    assert not result.success
    assert result.error == "probe error: KeyError: 'oops'"
