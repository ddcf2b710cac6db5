"""DNS check: resolve a name for one record type, optionally expecting a given answer."""

from __future__ import annotations

import time

import dns.asyncresolver
import dns.exception
import dns.inet
import dns.rdata
import dns.rdatatype
import dns.resolver

from agent.probes._address import refusal
from agent.probes._context import Outcome, ProbeContext, ProbeFailure
from agent.probes._target import target_host
from shared.wire import CheckSpec

RECORD_TYPES = frozenset({"A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA"})


async def probe(spec: CheckSpec, ctx: ProbeContext) -> Outcome:
    name = target_host(spec)
    record_type = spec.dns_record_type.upper()
    if record_type not in RECORD_TYPES:
        raise ProbeFailure(f"unsupported DNS record type {spec.dns_record_type}")
    resolver = _resolver(spec, ctx)

    started = time.perf_counter()
    try:
        answer = await resolver.resolve(name, record_type, lifetime=spec.timeout, search=False)
    except dns.resolver.NXDOMAIN as exc:
        raise ProbeFailure(f"name not resolved: {name}") from exc
    except dns.resolver.NoAnswer as exc:
        raise ProbeFailure(f"no {record_type} record for {name}") from exc
    except dns.resolver.NoNameservers as exc:
        raise ProbeFailure(f"no name server answered for {name}") from exc
    except dns.exception.Timeout as exc:
        raise ProbeFailure(f"timed out after {spec.timeout} s") from exc
    ctx.timing("query", time.perf_counter() - started)

    answers = sorted(_answer_text(rdata) for rdata in answer)  # an RRset has no order
    ctx.details["answers"] = answers
    ctx.details["ttl"] = answer.rrset.ttl if answer.rrset is not None else None
    if spec.dns_expected_value is None:
        return Outcome(success=True)
    expected = _normalized(spec.dns_expected_value)
    if any(expected in _match_forms(rdata) for rdata in answer):
        return Outcome(success=True)
    return Outcome(success=False, error=f'expected "{spec.dns_expected_value}", got "{", ".join(answers)}"')


def _resolver(spec: CheckSpec, ctx: ProbeContext) -> dns.asyncresolver.Resolver:
    """The system's resolver, or the one name server the check names."""
    if spec.dns_server is None:
        return dns.asyncresolver.Resolver()
    server, port = _server_address(spec.dns_server)
    refused = refusal(server, ctx.allow_address)
    if refused is not None:
        raise ProbeFailure(refused)
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [server]
    resolver.port = port
    return resolver


def _server_address(value: str) -> tuple[str, int]:
    """'192.0.2.53', '192.0.2.53:5353', '2001:db8::53' or '[2001:db8::53]:5353'."""
    host, port = value, "53"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif value.count(":") == 1:
        host, port = value.split(":")
    if not dns.inet.is_address(host) or not port.isdigit():
        raise ProbeFailure(f"invalid DNS server {value!r}: expected an IP address, optionally with :port")
    return host, int(port)


def _answer_text(rdata: dns.rdata.Rdata) -> str:
    """An answer as a person would write it: TXT without quotes, names without the trailing dot."""
    if rdata.rdtype == dns.rdatatype.TXT:
        return "".join(part.decode(errors="replace") for part in rdata.strings)  # type: ignore[attr-defined]
    return rdata.to_text().rstrip(".")


def _match_forms(rdata: dns.rdata.Rdata) -> set[str]:
    """What an expected value may equal: the whole answer, or for MX just the mail host."""
    forms = {_normalized(_answer_text(rdata))}
    if rdata.rdtype == dns.rdatatype.MX:
        forms.add(_normalized(rdata.exchange.to_text()))  # type: ignore[attr-defined]
    return forms


def _normalized(value: str) -> str:
    return value.strip().rstrip(".").lower()
