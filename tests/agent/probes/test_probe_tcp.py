"""The TCP probe against real asyncio servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import pytest

from agent.probes import refuse_non_public, run_probe
from shared.wire import CheckType

if TYPE_CHECKING:  # pytest imports the conftest itself; the names are only annotations here
    from tests.agent.probes.conftest import MakeSpec

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
StartServer = Callable[[Handler], Awaitable[int]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _answer_nope_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1024)
    writer.write(b"NOPE\r\n")
    writer.close()


async def _answer_nope_and_stay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1024)
    writer.write(b"NOPE\r\n")
    await writer.drain()
    await reader.read()  # keeps the connection open until the probe leaves
    writer.close()


async def test_an_open_port_succeeds_with_connect_time(
    start_server: StartServer, make_spec: MakeSpec
) -> None:
    port = await start_server(_echo)

    result = await run_probe(make_spec(CheckType.TCP, host="127.0.0.1", port=port))

    assert result.success, result.error
    assert result.details["ip"] == "127.0.0.1"
    assert result.details["timings"]["connect"] >= 0
    assert result.status_code is None


async def test_the_expected_reply_succeeds(start_server: StartServer, make_spec: MakeSpec) -> None:
    port = await start_server(_echo)

    result = await run_probe(
        make_spec(CheckType.TCP, host="127.0.0.1", port=port, send_text="PING\r\n", expect_text="PING")
    )

    assert result.success, result.error
    assert result.details["received"] == "PING"


async def test_a_wrong_reply_fails_showing_what_came(start_server: StartServer, make_spec: MakeSpec) -> None:
    port = await start_server(_answer_nope_and_close)

    result = await run_probe(
        make_spec(CheckType.TCP, host="127.0.0.1", port=port, send_text="PING\r\n", expect_text="PONG")
    )

    assert not result.success
    assert result.error == 'expected "PONG", got "NOPE"'


async def test_a_wrong_reply_on_a_connection_left_open_is_named_at_the_timeout(
    start_server: StartServer, make_spec: MakeSpec
) -> None:
    port = await start_server(_answer_nope_and_stay)

    result = await run_probe(
        make_spec(
            CheckType.TCP, host="127.0.0.1", port=port, send_text="PING\r\n", expect_text="PONG", timeout=1
        )
    )

    assert not result.success
    assert result.error == 'expected "PONG", got "NOPE"'


async def test_a_closed_port_is_connection_refused(closed_port: int, make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(CheckType.TCP, host="127.0.0.1", port=closed_port))

    assert not result.success
    assert result.error == "connection refused"


async def test_host_and_port_may_come_from_the_url(start_server: StartServer, make_spec: MakeSpec) -> None:
    port = await start_server(_echo)

    result = await run_probe(make_spec(CheckType.TCP, url=f"tcp://localhost:{port}"))

    assert result.success, result.error
    assert "dns" in result.details["timings"]


async def test_a_missing_port_fails_clearly(make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(CheckType.TCP, host="127.0.0.1"))

    assert not result.success
    assert result.error == "tcp check needs a port"


async def test_loopback_is_refused_by_the_policy(start_server: StartServer, make_spec: MakeSpec) -> None:
    port = await start_server(_echo)

    result = await run_probe(
        make_spec(CheckType.TCP, host="127.0.0.1", port=port), allow_address=refuse_non_public
    )

    assert not result.success
    assert result.error == "address 127.0.0.1 refused: loopback"
