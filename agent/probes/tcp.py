"""TCP check: the port accepts a connection and, when asked, answers `send_text` with `expect_text`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from agent.probes._context import Outcome, ProbeContext, ProbeFailure, os_error_text, shorten
from agent.probes._target import resolve_allowed, target_host, target_port
from shared.wire import CheckSpec

# A banner or a reply to a probe line is small; reading more only costs memory.
_MAX_REPLY_BYTES = 64 * 1024


async def probe(spec: CheckSpec, ctx: ProbeContext) -> Outcome:
    host, port = target_host(spec), target_port(spec)
    started = time.perf_counter()
    _, ip = await resolve_allowed(host, port, socket.SOCK_STREAM, ctx.allow_address)
    resolved = time.perf_counter()
    ctx.details["ip"] = ip
    ctx.timing("dns", resolved - started)

    try:
        reader, writer = await asyncio.open_connection(ip, port)
    except OSError as exc:
        raise ProbeFailure(os_error_text(exc)) from exc
    ctx.timing("connect", time.perf_counter() - resolved)
    try:
        if spec.send_text:
            writer.write(spec.send_text.encode())
            await writer.drain()
        if spec.expect_text is None:
            return Outcome(success=True)
        return await _expect(reader, spec.expect_text, spec, ctx)
    except OSError as exc:
        raise ProbeFailure(os_error_text(exc)) from exc
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _expect(reader: asyncio.StreamReader, expected: str, spec: CheckSpec, ctx: ProbeContext) -> Outcome:
    """Read until `expected` shows up, the peer closes, or enough has been read to give up."""
    limit = min(spec.max_response_bytes, _MAX_REPLY_BYTES)
    received = b""
    while len(received) < limit:
        chunk = await reader.read(limit - len(received))
        if not chunk:
            break
        received += chunk
        text = received.decode(errors="replace")
        if expected in text:
            ctx.details["received"] = shorten(text, 200)
            return Outcome(success=True)
        # A server that answers wrongly and then keeps the connection open would otherwise
        # only show up as a timeout.
        ctx.timeout_error = f'expected "{expected}", got "{shorten(text)}"'
    text = received.decode(errors="replace")
    ctx.details["received"] = shorten(text, 200)
    if not received:
        return Outcome(success=False, error=f'expected "{expected}", got nothing (connection closed)')
    return Outcome(success=False, error=f'expected "{expected}", got "{shorten(text)}"')
