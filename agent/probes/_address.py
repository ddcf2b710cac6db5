"""Which target addresses a probe may connect to.

The coordinator probes from its own network, so its probes must not be pointed at loopback, the
private network or the cloud metadata service (SSRF). The check happens on the resolved address,
right before connecting, so a name that resolves to 127.0.0.1 is caught too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
# Called with each resolved address before connecting: None allows it, a string is the reason not to.
AllowAddress: TypeAlias = Callable[[IPAddress], str | None]

_METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def refuse_non_public(ip: IPAddress) -> str | None:
    """None for a public address, else the class of address that makes it off-limits."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        # ::ffff:127.0.0.1 reaches the IPv4 host, so judge that one.
        return refuse_non_public(ip.ipv4_mapped)
    # Order matters: metadata sits inside link-local (v4) and private (v6) space, and CGNAT is
    # neither private nor global, so the more specific classes come first.
    if ip in _METADATA:
        return "cloud metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "CGNAT"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:  # before private: Python counts 240.0.0.0/4 as both
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not globally routable"
    return None


def refusal(address: str, allow_address: AllowAddress | None) -> str | None:
    """The error for connecting to `address` (an IP literal), or None when it is allowed."""
    if allow_address is None:
        return None
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id ("fe80::1%eth0")
    reason = allow_address(ip)
    return None if reason is None else f"address {ip} refused: {reason}"
