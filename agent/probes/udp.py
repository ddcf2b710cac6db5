"""UDP check: send `send_text` as one datagram and wait for a reply containing `expect_text`."""

from __future__ import annotations

import asyncio
import socket
import time

from agent.probes._context import Outcome, ProbeContext, ProbeFailure, os_error_text, shorten
from agent.probes._target import resolve_allowed, target_host, target_port
from shared.wire import CheckSpec


class _ReplyProtocol(asyncio.DatagramProtocol):
    """Resolves `reply` with the first datagram, or with the error the kernel reports."""

    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # On a connected socket an ICMP "port unreachable" arrives here as ConnectionRefusedError.
        if not self.reply.done():
            self.reply.set_exception(exc)


async def probe(spec: CheckSpec, ctx: ProbeContext) -> Outcome:
    host, port = target_host(spec), target_port(spec)
    started = time.perf_counter()
    family, ip = await resolve_allowed(host, port, socket.SOCK_DGRAM, ctx.allow_address)
    ctx.details["ip"] = ip
    ctx.timing("dns", time.perf_counter() - started)

    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        _ReplyProtocol, remote_addr=(ip, port), family=family
    )
    try:
        sent = time.perf_counter()
        transport.sendto((spec.send_text or "").encode())
        ctx.timeout_error = f"no reply within {spec.timeout} s"
        try:
            reply = await protocol.reply
        except OSError as exc:
            raise ProbeFailure(os_error_text(exc)) from exc
        ctx.timing("reply", time.perf_counter() - sent)
    finally:
        transport.close()

    text = reply.decode(errors="replace")
    ctx.details["received"] = shorten(text, 200)
    if spec.expect_text is not None and spec.expect_text not in text:
        return Outcome(success=False, error=f'expected "{spec.expect_text}", got "{shorten(text)}"')
    return Outcome(success=True)
