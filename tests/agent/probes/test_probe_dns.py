"""The DNS probe against a tiny authoritative server on 127.0.0.1, built from dnspython messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from agent.probes import refuse_non_public, run_probe
from shared.wire import CheckType

if TYPE_CHECKING:  # pytest imports the conftest itself; the names are only annotations here
    from tests.agent.probes.conftest import MakeSpec

ZONE: dict[tuple[str, str], list[str]] = {
    ("example.test.", "A"): ["192.0.2.10", "192.0.2.11"],
    ("example.test.", "AAAA"): ["2001:db8::10"],
    ("example.test.", "MX"): ["10 mail.example.test."],
    ("example.test.", "TXT"): ['"v=spf1 -all"'],
    ("example.test.", "NS"): ["ns1.example.test."],
    ("example.test.", "SOA"): ["ns1.example.test. hostmaster.example.test. 2024010101 3600 600 86400 300"],
    ("www.example.test.", "CNAME"): ["example.test."],
}
NAMES = {name for name, _ in ZONE}


class _Authority(asyncio.DatagramProtocol):
    """Answers from ZONE: NXDOMAIN for unknown names, an empty answer for a missing type."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        response = dns.message.make_response(query)
        name, rdtype = question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype)
        if name not in NAMES:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif (name, rdtype) in ZONE:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 300, dns.rdataclass.IN, rdtype, ZONE[name, rdtype])
            )
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def dns_server() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Authority, local_addr=("127.0.0.1", 0))
    yield f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    transport.close()


@pytest.mark.parametrize(
    ("record_type", "answers"),
    [
        ("A", ["192.0.2.10", "192.0.2.11"]),
        ("AAAA", ["2001:db8::10"]),
        ("MX", ["10 mail.example.test"]),
        ("TXT", ["v=spf1 -all"]),
        ("NS", ["ns1.example.test"]),
        ("SOA", ["ns1.example.test. hostmaster.example.test. 2024010101 3600 600 86400 300"]),
    ],
)
async def test_each_record_type_is_answered(
    dns_server: str, make_spec: MakeSpec, record_type: str, answers: list[str]
) -> None:
    spec = make_spec(CheckType.DNS, host="example.test", dns_record_type=record_type, dns_server=dns_server)

    result = await run_probe(spec)

    assert result.success, result.error
    assert sorted(result.details["answers"]) == answers
    assert result.details["ttl"] == 300


async def test_a_cname_is_answered(dns_server: str, make_spec: MakeSpec) -> None:
    spec = make_spec(
        CheckType.DNS,
        host="www.example.test",
        dns_record_type="CNAME",
        dns_server=dns_server,
        dns_expected_value="example.test",
    )

    result = await run_probe(spec)

    assert result.success, result.error
    assert result.details["answers"] == ["example.test"]


@pytest.mark.parametrize(
    ("record_type", "expected"),
    [
        ("A", "192.0.2.11"),
        ("MX", "MAIL.example.test."),  # the mail host alone, any case, trailing dot or not
        ("MX", "10 mail.example.test"),
        ("TXT", "V=SPF1 -ALL"),
    ],
)
async def test_the_expected_value_matches_any_answer(
    dns_server: str, make_spec: MakeSpec, record_type: str, expected: str
) -> None:
    spec = make_spec(
        CheckType.DNS,
        host="example.test",
        dns_record_type=record_type,
        dns_server=dns_server,
        dns_expected_value=expected,
    )

    result = await run_probe(spec)

    assert result.success, result.error


async def test_an_unexpected_answer_fails_showing_the_answers(dns_server: str, make_spec: MakeSpec) -> None:
    spec = make_spec(
        CheckType.DNS, host="example.test", dns_server=dns_server, dns_expected_value="192.0.2.99"
    )

    result = await run_probe(spec)

    assert not result.success
    assert result.error == 'expected "192.0.2.99", got "192.0.2.10, 192.0.2.11"'


async def test_an_unknown_name_is_not_resolved(dns_server: str, make_spec: MakeSpec) -> None:
    spec = make_spec(CheckType.DNS, host="missing.example.test", dns_server=dns_server)

    result = await run_probe(spec)

    assert not result.success
    assert result.error == "name not resolved: missing.example.test"


async def test_a_name_without_that_record_fails(dns_server: str, make_spec: MakeSpec) -> None:
    spec = make_spec(CheckType.DNS, host="www.example.test", dns_record_type="MX", dns_server=dns_server)

    result = await run_probe(spec)

    assert not result.success
    assert result.error == "no MX record for www.example.test"


async def test_the_name_may_come_from_the_url(dns_server: str, make_spec: MakeSpec) -> None:
    spec = make_spec(CheckType.DNS, url="https://example.test/login", dns_server=dns_server)

    result = await run_probe(spec)

    assert result.success, result.error
    assert "192.0.2.10" in result.details["answers"]


async def test_a_silent_server_times_out(closed_port: int, make_spec: MakeSpec) -> None:
    # Nothing listens there; dnspython keeps retrying until its lifetime ends.
    spec = make_spec(CheckType.DNS, host="example.test", dns_server=f"127.0.0.1:{closed_port}", timeout=1)

    result = await run_probe(spec)

    assert not result.success
    assert result.error == "timed out after 1 s"


async def test_the_name_server_is_vetted_by_the_policy(dns_server: str, make_spec: MakeSpec) -> None:
    spec = make_spec(CheckType.DNS, host="example.test", dns_server=dns_server)

    result = await run_probe(spec, allow_address=refuse_non_public)

    assert result.error == "address 127.0.0.1 refused: loopback"


@pytest.mark.parametrize("server", ["ns.example.test", "127.0.0.1:port"])
async def test_a_malformed_server_fails_clearly(make_spec: MakeSpec, server: str) -> None:
    result = await run_probe(make_spec(CheckType.DNS, host="example.test", dns_server=server))

    assert result.error == (f"invalid DNS server {server!r}: expected an IP address, optionally with :port")


async def test_an_unsupported_record_type_fails_clearly(make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(CheckType.DNS, host="example.test", dns_record_type="SRV"))

    assert result.error == "unsupported DNS record type SRV"
