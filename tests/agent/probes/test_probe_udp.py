"""The UDP probe against real asyncio datagram servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import pytest

from agent.probes import refuse_non_public, run_probe
from shared.wire import CheckType

if TYPE_CHECKING:  # pytest imports the conftest itself; the names are only annotations here
    from tests.agent.probes.conftest import MakeSpec

StartServer = Callable[[bytes | None], Awaitable[int]]


class _Responder(asyncio.DatagramProtocol):
    """Echoes each datagram, or answers with a fixed reply, or (reply b"") stays silent."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's own datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        assert self.transport is not None
        if self.reply != b"":
            self.transport.sendto(data if self.reply is None else self.reply, addr)


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    transports: list[asyncio.BaseTransport] = []

    async def start(reply: bytes | None) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Responder(reply), local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        port: int = transport.get_extra_info("sockname")[1]
        return port

    yield start
    for transport in transports:
        transport.close()


async def test_an_echoed_datagram_succeeds(start_server: StartServer, make_spec: MakeSpec) -> None:
    port = await start_server(None)

    result = await run_probe(
        make_spec(CheckType.UDP, host="127.0.0.1", port=port, send_text="hello", expect_text="hello")
    )

    assert result.success, result.error
    assert result.details["received"] == "hello"
    assert result.details["timings"]["reply"] >= 0


async def test_any_reply_succeeds_when_nothing_is_expected(
    start_server: StartServer, make_spec: MakeSpec
) -> None:
    port = await start_server(b"whatever")

    result = await run_probe(make_spec(CheckType.UDP, host="127.0.0.1", port=port, send_text="hello"))

    assert result.success, result.error


async def test_a_wrong_reply_fails(start_server: StartServer, make_spec: MakeSpec) -> None:
    port = await start_server(b"NOPE")

    result = await run_probe(
        make_spec(CheckType.UDP, host="127.0.0.1", port=port, send_text="PING", expect_text="PONG")
    )

    assert not result.success
    assert result.error == 'expected "PONG", got "NOPE"'


async def test_silence_fails_with_no_reply(start_server: StartServer, make_spec: MakeSpec) -> None:
    port = await start_server(b"")

    result = await run_probe(make_spec(CheckType.UDP, host="127.0.0.1", port=port, send_text="hi", timeout=1))

    assert not result.success
    assert result.error == "no reply within 1 s"


async def test_a_closed_port_is_connection_refused(closed_port: int, make_spec: MakeSpec) -> None:
    # Linux reports the ICMP "port unreachable" to a connected UDP socket.
    result = await run_probe(make_spec(CheckType.UDP, host="127.0.0.1", port=closed_port, send_text="hi"))

    assert not result.success
    assert result.error == "connection refused"


async def test_loopback_is_refused_by_the_policy(start_server: StartServer, make_spec: MakeSpec) -> None:
    port = await start_server(None)

    result = await run_probe(
        make_spec(CheckType.UDP, host="127.0.0.1", port=port, send_text="hi"), allow_address=refuse_non_public
    )

    assert result.error == "address 127.0.0.1 refused: loopback"
