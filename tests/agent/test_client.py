"""agent.client against a mocked coordinator (respx): the agent protocol, error mapping, retries."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
import respx

from agent.client import (
    NOT_MODIFIED,
    BadRequest,
    CheckList,
    ClientError,
    CoordinatorClient,
    CoordinatorUnavailable,
    Forbidden,
    HeartbeatRequest,
    PayloadTooLarge,
    RetryPolicy,
    Unauthorized,
    UnexpectedResponse,
    parse_retry_after,
)
from shared.wire import CheckSpec, CheckType, ProbeResult

URL = "https://hc.example.com"
KEY = "agk_0123456789abcdef"
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


class FakeSleep:
    """Records the waits a retry asks for, and waits for none of them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
async def client(sleep: FakeSleep) -> AsyncIterator[CoordinatorClient]:
    policy = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=60)
    async with CoordinatorClient(URL, KEY, retry_policy=policy, sleep=sleep) as c:
        yield c


@pytest.fixture
def coordinator() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=URL, assert_all_called=False) as router:
        yield router


def error_body(status: int, detail: str, **extra: object) -> dict[str, object]:
    return {"status_code": status, "detail": detail, **extra}


def a_result(result_id: str = "r-1") -> ProbeResult:
    return ProbeResult(result_id=result_id, check_id=5, started_at=T0, success=True, response_time_ms=12.5)


# --- registration ---------------------------------------------------------------------------------


async def test_register_trades_the_token_for_a_key(coordinator: respx.MockRouter) -> None:
    route = coordinator.post("/api/agents/register").respond(
        201,
        json={
            "agent_id": 7, "api_key": "agk_new0123456789", "name": "dc1-probe", "mode": "private",
            "organization_id": 1, "location_id": None, "heartbeat_interval": 30,
        },
    )  # fmt: skip

    async with CoordinatorClient(URL) as anonymous:
        answer = await anonymous.register("reg_abc", "dc1-probe", "probe-1", "1.0.0", ["http", "tcp"])

    assert (answer.agent_id, answer.api_key, answer.organization_id) == (7, "agk_new0123456789", 1)
    request = route.calls.last.request
    assert json.loads(request.content) == {
        "token": "reg_abc", "name": "dc1-probe", "hostname": "probe-1", "version": "1.0.0",
        "capabilities": ["http", "tcp"],
    }  # fmt: skip
    assert "Authorization" not in request.headers  # the token in the body is the credential
    assert "agk_new0123456789" not in repr(answer)


async def test_a_refused_registration_token_says_why(
    client: CoordinatorClient, coordinator: respx.MockRouter
) -> None:
    route = coordinator.post("/api/agents/register").respond(
        401, json=error_body(401, "registration token already used")
    )

    with pytest.raises(Unauthorized) as caught:
        await client.register("reg_used", "n", "h", "1.0.0", [], retry=True)

    assert str(caught.value) == f"{URL} refused the registration token: registration token already used"
    assert caught.value.detail == "registration token already used"
    assert route.call_count == 1  # a 401 is never retried


async def test_registering_with_an_unreachable_coordinator_says_connection_refused() -> None:
    # A real, closed port: the refusal comes from the operating system, not from a mock.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    async with CoordinatorClient(url) as c:
        with pytest.raises(CoordinatorUnavailable) as caught:
            await c.register("reg_abc", "n", "h", "1.0.0", ["http"])

    assert str(caught.value) == f"cannot reach {url}: connection refused"
    assert caught.value.retry_after is None


# --- heartbeat and checks -------------------------------------------------------------------------


async def test_heartbeat_sends_the_key_and_reads_the_answer(
    client: CoordinatorClient, coordinator: respx.MockRouter
) -> None:
    route = coordinator.post("/api/agents/heartbeat").respond(
        200, json={"server_time": "2025-01-01T12:00:01Z", "checks_etag": '"v2"', "heartbeat_interval": 15}
    )
    beat = HeartbeatRequest(version="1.0.0", hostname="probe-1", sent_at=T0, running_checks=12, spool_depth=3)

    answer = await client.heartbeat(beat)

    assert answer.checks_etag == '"v2"'
    assert answer.heartbeat_interval == 15
    assert answer.server_time == T0 + timedelta(seconds=1)
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {
        "version": "1.0.0", "hostname": "probe-1", "sent_at": "2025-01-01T12:00:00Z",
        "running_checks": 12, "spool_depth": 3,
    }  # fmt: skip


async def test_fetch_checks_returns_the_checks_and_their_etag(
    client: CoordinatorClient, coordinator: respx.MockRouter
) -> None:
    route = coordinator.get("/api/agents/checks").respond(
        200,
        json={"checks": [{"id": 5, "type": "uptime", "url": "https://x.test", "interval": 60, "timeout": 10,
                          "auth_password": "write-only", "a_field_from_the_future": 1}]},
        headers={"ETag": '"v1"'},
    )  # fmt: skip

    answer = await client.fetch_checks()

    assert isinstance(answer, CheckList)
    checks, etag = answer
    assert etag == '"v1"'
    assert checks == [
        CheckSpec(
            id=5,
            type=CheckType.UPTIME,
            url="https://x.test",
            interval=60,
            timeout=10,
            auth_password="write-only",
        )
    ]
    assert "If-None-Match" not in route.calls.last.request.headers


async def test_fetch_checks_sends_the_etag_and_understands_304(
    client: CoordinatorClient, coordinator: respx.MockRouter
) -> None:
    route = coordinator.get("/api/agents/checks").respond(304, headers={"ETag": '"v1"'})

    answer = await client.fetch_checks('"v1"')

    assert answer is NOT_MODIFIED
    assert route.calls.last.request.headers["If-None-Match"] == '"v1"'


async def test_a_check_of_an_unknown_type_is_skipped_not_fatal(
    client: CoordinatorClient, coordinator: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    coordinator.get("/api/agents/checks").respond(
        200,
        json={"checks": [{"id": 5, "type": "grpc", "interval": 60, "timeout": 10},
                         {"id": 6, "type": "tcp", "host": "db", "port": 5432, "interval": 30, "timeout": 5}]},
    )  # fmt: skip

    answer = await client.fetch_checks()

    assert isinstance(answer, CheckList)
    assert [c.id for c in answer.checks] == [6]
    assert answer.etag is None
    assert "skipping a check this agent cannot run" in caplog.text


# --- results --------------------------------------------------------------------------------------


async def test_post_results_sends_the_batch(client: CoordinatorClient, coordinator: respx.MockRouter) -> None:
    route = coordinator.post("/api/agents/results").respond(
        200,
        json={"accepted": 1, "duplicates": 1, "rejected": [{"result_id": "r-3", "reason": "not assigned"}]},
    )

    answer = await client.post_results([a_result("r-1"), a_result("r-2"), a_result("r-3")])

    assert (answer.accepted, answer.duplicates) == (1, 1)
    assert [(r.result_id, r.reason) for r in answer.rejected] == [("r-3", "not assigned")]
    sent = json.loads(route.calls.last.request.content)
    assert [r["result_id"] for r in sent["results"]] == ["r-1", "r-2", "r-3"]
    assert sent["results"][0]["started_at"] == "2025-01-01T12:00:00Z"
    assert route.calls.last.request.headers["Content-Type"] == "application/json"


async def test_413_is_payload_too_large_and_not_retried(
    client: CoordinatorClient, coordinator: respx.MockRouter
) -> None:
    route = coordinator.post("/api/agents/results").respond(413, json=error_body(413, "at most 1000 results"))

    with pytest.raises(PayloadTooLarge, match="answered 413: at most 1000 results"):
        await client.post_results([a_result()])

    assert route.call_count == 1


async def test_422_is_a_bad_request_with_the_fields_at_fault(
    client: CoordinatorClient, coordinator: respx.MockRouter
) -> None:
    errors = [{"field": "results[0].check_id", "message": "expected int"}]
    coordinator.post("/api/agents/results").respond(
        422, json=error_body(422, "Validation failed", errors=errors)
    )

    with pytest.raises(BadRequest) as caught:
        await client.post_results([a_result()])

    assert caught.value.status_code == 422
    assert caught.value.detail == "Validation failed (results[0].check_id: expected int)"
    assert caught.value.errors == errors


@pytest.mark.parametrize(("status", "error"), [(401, Unauthorized), (403, Forbidden), (400, BadRequest)])
async def test_client_errors_are_never_retried(
    client: CoordinatorClient, coordinator: respx.MockRouter, sleep: FakeSleep, status: int, error: type
) -> None:
    route = coordinator.post("/api/agents/heartbeat").respond(status, json=error_body(status, "no"))
    beat = HeartbeatRequest(version="1", hostname="h", sent_at=T0, running_checks=0, spool_depth=0)

    with pytest.raises(error):
        await client.heartbeat(beat)

    assert route.call_count == 1
    assert sleep.waits == []


async def test_an_unexpected_status_is_not_retried(
    client: CoordinatorClient, coordinator: respx.MockRouter
) -> None:
    route = coordinator.get("/api/agents/checks").respond(404, text="<html>Not Found</html>")

    with pytest.raises(UnexpectedResponse, match=r"answered 404: <html>Not Found</html>"):
        await client.fetch_checks()

    assert route.call_count == 1


async def test_a_body_that_is_not_the_protocol_is_an_unexpected_response(
    client: CoordinatorClient, coordinator: respx.MockRouter
) -> None:
    coordinator.post("/api/agents/results").respond(200, text="<html>captive portal</html>")

    with pytest.raises(UnexpectedResponse, match="a body the agent does not understand"):
        await client.post_results([a_result()])


# --- retries --------------------------------------------------------------------------------------


async def test_a_5xx_is_retried_with_jitter_until_it_succeeds(
    client: CoordinatorClient, coordinator: respx.MockRouter, sleep: FakeSleep
) -> None:
    route = coordinator.post("/api/agents/results")
    route.side_effect = [httpx.Response(503), httpx.Response(502), httpx.Response(200, json={"accepted": 1})]

    answer = await client.post_results([a_result()])

    assert answer.accepted == 1
    assert route.call_count == 3
    # Full jitter: each wait is anywhere from 0 up to initial_wait * 2**n.
    assert len(sleep.waits) == 2
    assert 0 <= sleep.waits[0] <= 0.01
    assert 0 <= sleep.waits[1] <= 0.02


async def test_retry_after_seconds_is_honoured(
    client: CoordinatorClient, coordinator: respx.MockRouter, sleep: FakeSleep
) -> None:
    route = coordinator.post("/api/agents/results")
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "7"}, json=error_body(429, "slow down")),
        httpx.Response(200, json={"accepted": 1}),
    ]

    answer = await client.post_results([a_result()])

    assert answer.accepted == 1
    assert sleep.waits == [7.0]  # at least what was asked; the jitter (<= 0.01s) is below it


async def test_retry_after_as_an_http_date_is_honoured(
    client: CoordinatorClient, coordinator: respx.MockRouter, sleep: FakeSleep
) -> None:
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    route = coordinator.get("/api/agents/checks")
    route.side_effect = [httpx.Response(503, headers={"Retry-After": later}), httpx.Response(304)]

    assert await client.fetch_checks('"v1"') is NOT_MODIFIED

    assert len(sleep.waits) == 1
    assert 25 < sleep.waits[0] <= 30


async def test_a_retry_after_longer_than_max_wait_is_left_to_the_caller(
    coordinator: respx.MockRouter, sleep: FakeSleep
) -> None:
    route = coordinator.post("/api/agents/results").respond(503, headers={"Retry-After": "600"})
    policy = RetryPolicy(attempts=5, initial_wait=0.01, max_wait=60)

    async with CoordinatorClient(URL, KEY, retry_policy=policy, sleep=sleep) as c:
        with pytest.raises(CoordinatorUnavailable) as caught:
            await c.post_results([a_result()])

    assert caught.value.retry_after == 600
    assert caught.value.status_code == 503
    assert route.call_count == 1
    assert sleep.waits == []


async def test_retry_false_makes_one_attempt(
    client: CoordinatorClient, coordinator: respx.MockRouter, sleep: FakeSleep
) -> None:
    route = coordinator.post("/api/agents/results").respond(429, headers={"Retry-After": "2"})

    with pytest.raises(CoordinatorUnavailable) as caught:
        await client.post_results([a_result()], retry=False)

    assert caught.value.retry_after == 2
    assert route.call_count == 1
    assert sleep.waits == []


async def test_a_policy_per_call_sets_the_attempts(
    client: CoordinatorClient, coordinator: respx.MockRouter, sleep: FakeSleep
) -> None:
    route = coordinator.post("/api/agents/results").respond(500)

    with pytest.raises(CoordinatorUnavailable, match="answered 500"):
        await client.post_results(
            [a_result()], retry=RetryPolicy(attempts=5, initial_wait=0.001, max_wait=0.001)
        )

    assert route.call_count == 5
    assert len(sleep.waits) == 4
    assert all(0 <= w <= 0.001 for w in sleep.waits)


async def test_connect_errors_and_timeouts_are_retried_then_reported(
    client: CoordinatorClient, coordinator: respx.MockRouter, sleep: FakeSleep
) -> None:
    route = coordinator.post("/api/agents/heartbeat")
    route.side_effect = [httpx.ConnectError("[Errno 111] Connection refused"), httpx.ConnectTimeout("t/o"),
                         httpx.ReadTimeout("t/o")]  # fmt: skip
    beat = HeartbeatRequest(version="1", hostname="h", sent_at=T0, running_checks=0, spool_depth=0)

    with pytest.raises(CoordinatorUnavailable) as caught:
        await client.heartbeat(beat)

    assert str(caught.value) == f"cannot reach {URL}: timed out waiting for an answer"
    assert route.call_count == 3
    assert len(sleep.waits) == 2


# --- odds and ends --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        ("-5", 0.0),
        ("soon", None),
        ("inf", None),
        ("Wed, 01 Jan 2025 12:01:30 GMT", 90.0),
        ("Wed, 01 Jan 2025 11:00:00 GMT", 0.0),  # already past
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=T0) == seconds


def test_an_unreadable_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="cannot load the CA file"):
        CoordinatorClient(URL, ca_file=tmp_path / "missing.pem")
