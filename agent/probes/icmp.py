"""ICMP check: echo requests to the host; round-trip times and packet loss.

An unprivileged ICMP datagram socket is tried first (Linux allows it to the groups listed in
`net.ipv4.ping_group_range`), then a raw socket (root or CAP_NET_RAW). Without either, the result
says what is missing instead of failing obscurely.
"""

from __future__ import annotations

import socket
from typing import Any

import icmplib

from agent.probes._context import Outcome, ProbeContext, ProbeFailure
from agent.probes._target import resolve_allowed, target_host
from shared.wire import CheckSpec

# Pause between echo requests: short, so that a few packets fit in a check's timeout.
_INTERVAL_S = 0.2
# How long one echo request may wait for its reply, at most.
_MAX_WAIT_S = 2.0
_NO_PERMISSION = "needs CAP_NET_RAW or net.ipv4.ping_group_range for ICMP"


async def probe(spec: CheckSpec, ctx: ProbeContext) -> Outcome:
    host = target_host(spec)
    # The socket type only keeps getaddrinfo from listing each address once per type.
    _, ip = await resolve_allowed(host, 0, socket.SOCK_DGRAM, ctx.allow_address)
    ctx.details["ip"] = ip
    count = max(1, spec.ping_count)

    result = await _ping(ip, count, _reply_wait(spec.timeout, count))
    loss = round(result.packet_loss * 100, 1)
    ctx.details.update(
        packets_sent=result.packets_sent,
        packets_received=result.packets_received,
        packet_loss=loss,  # percent
    )
    if not result.is_alive:
        return Outcome(success=False, error=f"{loss:g}% packet loss")
    ctx.details.update(rtt_min_ms=result.min_rtt, rtt_avg_ms=result.avg_rtt, rtt_max_ms=result.max_rtt)
    return Outcome(success=True, response_time_ms=float(result.avg_rtt))


def _reply_wait(timeout: float, count: int) -> float:
    """Wait per reply so that `count` lost packets still end within (most of) the timeout."""
    budget = timeout * 0.9 - (count - 1) * _INTERVAL_S
    return min(_MAX_WAIT_S, max(0.2, budget / count))


async def _ping(ip: str, count: int, wait: float) -> Any:
    """icmplib's Host for `count` echo requests, with the least privilege that works."""
    for privileged in (False, True):
        try:
            return await icmplib.async_ping(
                ip, count=count, interval=_INTERVAL_S, timeout=wait, privileged=privileged
            )
        except icmplib.SocketPermissionError:
            continue
        except icmplib.ICMPLibError as exc:
            raise ProbeFailure(f"ICMP error: {exc}") from exc
    raise ProbeFailure(_NO_PERMISSION)
