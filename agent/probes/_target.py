"""Host and port of a non-HTTP target, resolved and vetted before a socket is opened."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

from agent.probes._address import AllowAddress, refusal
from agent.probes._context import ProbeFailure
from shared.wire import CheckSpec


def target_host(spec: CheckSpec) -> str:
    """spec.host, else the hostname of spec.url ("tcp://db.example.com:5432")."""
    host = spec.host or (urlsplit(spec.url).hostname if spec.url else None)
    if not host:
        raise ProbeFailure(f"{spec.type.value} check needs a host")
    return host


def target_port(spec: CheckSpec) -> int:
    port = spec.port
    if port is None and spec.url:
        try:
            port = urlsplit(spec.url).port
        except ValueError as exc:
            raise ProbeFailure(f"invalid URL: {exc}") from exc
    if port is None:
        raise ProbeFailure(f"{spec.type.value} check needs a port")
    if not 0 < port < 65536:
        raise ProbeFailure(f"invalid port {port}")
    return port


async def resolve_allowed(
    host: str, port: int, kind: socket.SocketKind, allow_address: AllowAddress | None
) -> tuple[socket.AddressFamily, str]:
    """The first resolved address that `allow_address` accepts, as (family, ip).

    A name may resolve to several addresses; only the one we connect to matters, so refused ones
    are skipped, and the first refusal is the error when none is left.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=kind)
    except socket.gaierror as exc:
        raise ProbeFailure(f"name not resolved: {host}") from exc
    first_refusal: str | None = None
    for family, _, _, _, sockaddr in infos:
        ip = str(sockaddr[0])
        refused = refusal(ip, allow_address)
        if refused is None:
            return socket.AddressFamily(family), ip
        first_refusal = first_refusal or refused
    raise ProbeFailure(first_refusal or f"name not resolved: {host}")
