"""The coordinator's agent API (CONTRACT §3), over httpx.

Exceptions, all raised by `CoordinatorClient`:

    ClientError                  the base: any call that did not get its answer
    ├── Unauthorized             401: unknown or revoked key; a used, expired or unknown
    │   └── Forbidden            403     registration token. Retrying will not help.
    ├── PayloadTooLarge          413: the batch is over 1000 results or 1 MiB; send less
    ├── BadRequest               400, 422: the coordinator rejects what was sent (`detail`, `errors`)
    ├── UnexpectedResponse       any other status, or a body that is not what §3 promises
    └── CoordinatorUnavailable   no answer (refused, unresolvable, TLS, timeout), 408, 429, 5xx;
                                 `retry_after` is what the coordinator asked for, in seconds

Only CoordinatorUnavailable is retried: with full-jitter exponential backoff, and never sooner than
a Retry-After says. A Retry-After longer than the policy's `max_wait` ends the retries at once, so
that the caller (which keeps its results in the spool anyway) decides when to come back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx
import msgspec
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_random_exponential

from agent.config import mask_secret
from shared.wire import CheckSpec, ProbeResult

log = logging.getLogger(__name__)

S = TypeVar("S")


# --- errors --------------------------------------------------------------------------------------


class ClientError(Exception):
    """A call to the coordinator that did not get its answer."""

    def __init__(self, message: str, *, status_code: int | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class Unauthorized(ClientError):
    pass


class Forbidden(Unauthorized):
    pass


class PayloadTooLarge(ClientError):
    pass


class BadRequest(ClientError):
    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, detail=detail)
        self.errors = errors or []


class UnexpectedResponse(ClientError):
    pass


class CoordinatorUnavailable(ClientError):
    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, detail=detail)
        self.retry_after = retry_after


# --- wire types of the agent endpoints -----------------------------------------------------------


class RegisterResponse(msgspec.Struct, kw_only=True):
    agent_id: int
    api_key: str
    name: str
    mode: str
    organization_id: int | None = None
    location_id: str | None = None
    heartbeat_interval: int = 30

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return (
            f"RegisterResponse(agent_id={self.agent_id}, api_key={mask_secret(self.api_key)!r}, "
            f"name={self.name!r}, mode={self.mode!r})"
        )


class HeartbeatRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    version: str
    hostname: str
    sent_at: datetime
    running_checks: int
    spool_depth: int
    # How late the agent's event loop wakes up (recent p99 and max): a busy agent probes late.
    loop_lag_p99_ms: float | None = None
    loop_lag_max_ms: float | None = None


class HeartbeatResponse(msgspec.Struct, kw_only=True):
    server_time: datetime
    checks_etag: str | None = None
    heartbeat_interval: int = 30


class RejectedResult(msgspec.Struct, kw_only=True):
    result_id: str
    reason: str


class ResultsResponse(msgspec.Struct, kw_only=True):
    accepted: int
    duplicates: int = 0
    rejected: list[RejectedResult] = msgspec.field(default_factory=list)


class CheckList(NamedTuple):
    checks: list[CheckSpec]
    etag: str | None


class NotModified:
    """What fetch_checks returns when the checks have not changed since `etag` (304)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_MODIFIED"


NOT_MODIFIED = NotModified()


class _RegisterRequest(msgspec.Struct):
    token: str
    name: str
    hostname: str
    version: str
    capabilities: list[str]


class _ResultsRequest(msgspec.Struct):
    results: list[ProbeResult]


class _RawCheckList(msgspec.Struct):
    checks: list[msgspec.Raw]


class _ErrorBody(msgspec.Struct):
    detail: Any = None
    errors: list[dict[str, Any]] = msgspec.field(default_factory=list)


# --- retries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one call tries: `attempts` in all (1 = no retry), waits of full-jitter backoff
    from up to `initial_wait` seconds, doubling, each at most `max_wait`."""

    attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 30.0


NO_RETRY = RetryPolicy(attempts=1)


def _unavailable(state: RetryCallState) -> CoordinatorUnavailable | None:
    exc = state.outcome.exception() if state.outcome is not None else None
    return exc if isinstance(exc, CoordinatorUnavailable) else None


class _wait_jitter_or_retry_after(wait_base):
    """Full jitter, but never less than the Retry-After the coordinator sent."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._jitter = wait_random_exponential(multiplier=policy.initial_wait, max=policy.max_wait)

    def __call__(self, retry_state: RetryCallState) -> float:
        delay = self._jitter(retry_state)
        exc = _unavailable(retry_state)
        if exc is not None and exc.retry_after is not None:
            return max(exc.retry_after, delay)
        return delay


def backoff_wait(policy: RetryPolicy) -> wait_base:
    """The waits of `policy` (full jitter, at least Retry-After), for callers that retry on their own."""
    return _wait_jitter_or_retry_after(policy)


class _stop_if_retry_after_exceeds(stop_base):
    """Give up when the coordinator asks for a longer pause than this call may wait."""

    def __init__(self, max_wait: float) -> None:
        self._max_wait = max_wait

    def __call__(self, retry_state: RetryCallState) -> bool:
        exc = _unavailable(retry_state)
        return exc is not None and exc.retry_after is not None and exc.retry_after > self._max_wait


def _log_retry(state: RetryCallState) -> None:
    delay = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning("%s; retrying in %.1fs (attempt %d)", _unavailable(state), delay, state.attempt_number + 1)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


# --- the client ----------------------------------------------------------------------------------


class CoordinatorClient:
    """One coordinator, as seen by an agent. Use as `async with CoordinatorClient(...) as client`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        ca_file: Path | str | None = None,
        proxy: str | None = None,
        timeout: float = 10.0,
        user_agent: str = "hc-agent",
        retry_policy: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry_policy = retry_policy
        self._sleep = sleep  # tests pass a fake: a retry must never make a test wait for real
        verify: ssl.SSLContext | bool = True
        if ca_file:
            try:
                verify = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ClientError(f"cannot load the CA file {ca_file}: {exc}") from None
        headers = {"User-Agent": user_agent}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            verify=verify,
            proxy=proxy or None,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> CoordinatorClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- the endpoints ---------------------------------------------------------------------------

    async def register(
        self,
        token: str,
        name: str,
        hostname: str,
        version: str,
        capabilities: Sequence[str],
        *,
        retry: RetryPolicy | bool = False,
    ) -> RegisterResponse:
        """Trade a registration token for this agent's key.

        Not retried unless asked: the token is single-use, so a retry after an answer that got
        lost on the way back would be refused as "used", hiding the real failure.
        """
        body = _RegisterRequest(token, name, hostname, version, list(capabilities))
        try:
            response = await self._call("POST", "/api/agents/register", body, retry=retry)
        except Unauthorized as exc:
            reason = exc.detail or "the token is unknown, used or expired"
            raise Unauthorized(
                f"{self.base_url} refused the registration token: {reason}",
                status_code=exc.status_code,
                detail=exc.detail,
            ) from None
        return self._decode(response, RegisterResponse)

    async def heartbeat(
        self, payload: HeartbeatRequest, *, retry: RetryPolicy | bool = True
    ) -> HeartbeatResponse:
        response = await self._call("POST", "/api/agents/heartbeat", payload, retry=retry)
        return self._decode(response, HeartbeatResponse)

    async def fetch_checks(
        self, etag: str | None = None, *, retry: RetryPolicy | bool = True
    ) -> CheckList | NotModified:
        """This agent's checks and their ETag, or NOT_MODIFIED when they still match `etag`."""
        headers = {"If-None-Match": etag} if etag else None
        response = await self._call("GET", "/api/agents/checks", headers=headers, retry=retry)
        if response.status_code == 304:
            return NOT_MODIFIED
        raw = self._decode(response, _RawCheckList)
        checks = []
        for item in raw.checks:
            # A newer coordinator may hand out a check type this agent does not know yet: skip
            # that check rather than refusing the whole list and running none.
            try:
                checks.append(msgspec.json.decode(item, type=CheckSpec))
            except msgspec.DecodeError as exc:
                log.warning("skipping a check this agent cannot run (%s): %s", exc, bytes(item)[:200])
        return CheckList(checks, response.headers.get("ETag"))

    async def post_results(
        self, results: Sequence[ProbeResult], *, retry: RetryPolicy | bool = True
    ) -> ResultsResponse:
        """Deliver results; safe to repeat, the coordinator counts a known result_id as a duplicate."""
        response = await self._call(
            "POST", "/api/agents/results", _ResultsRequest(list(results)), retry=retry
        )
        return self._decode(response, ResultsResponse)

    # --- one call, retried -----------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        body: msgspec.Struct | None = None,
        *,
        headers: dict[str, str] | None = None,
        retry: RetryPolicy | bool,
    ) -> httpx.Response:
        policy = self.retry_policy if retry is True else NO_RETRY if retry is False else retry
        content = None
        if body is not None:
            content = msgspec.json.encode(body)
            headers = {**(headers or {}), "Content-Type": "application/json"}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts) | _stop_if_retry_after_exceeds(policy.max_wait),
            wait=_wait_jitter_or_retry_after(policy),
            retry=retry_if_exception_type(CoordinatorUnavailable),
            sleep=self._sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._send(method, path, content, headers)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _send(
        self, method: str, path: str, content: bytes | None, headers: dict[str, str] | None
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, path, content=content, headers=headers)
        except httpx.UnsupportedProtocol as exc:
            raise ClientError(f"cannot call {self.base_url}: {exc}") from exc
        except httpx.TransportError as exc:
            raise CoordinatorUnavailable(f"cannot reach {self.base_url}: {_transport_reason(exc)}") from exc
        _raise_for_status(response)
        return response

    def _decode(self, response: httpx.Response, kind: type[S]) -> S:
        try:
            return msgspec.json.decode(response.content, type=kind)
        except msgspec.DecodeError as exc:
            raise UnexpectedResponse(
                f"{response.request.method} {response.request.url} answered {response.status_code} "
                f"with a body the agent does not understand: {exc}",
                status_code=response.status_code,
            ) from None


def _raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300 or status == 304:
        return
    detail, errors = _error_detail(response)
    where = f"{response.request.method} {response.request.url}"
    message = f"{where} answered {status}" + (f": {detail}" if detail else "")
    if status == 401:
        raise Unauthorized(message, status_code=status, detail=detail)
    if status == 403:
        raise Forbidden(message, status_code=status, detail=detail)
    if status == 413:
        raise PayloadTooLarge(message, status_code=status, detail=detail)
    if status in (400, 422):
        raise BadRequest(message, status_code=status, detail=detail, errors=errors)
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise CoordinatorUnavailable(message, status_code=status, detail=detail, retry_after=retry_after)
    raise UnexpectedResponse(message, status_code=status, detail=detail)


def _error_detail(response: httpx.Response) -> tuple[str | None, list[dict[str, Any]]]:
    """The `detail` and `errors` of a CONTRACT §6 error body; the start of the text otherwise."""
    try:
        body = msgspec.json.decode(response.content, type=_ErrorBody)
    except msgspec.DecodeError:
        text = response.text.strip()[:200]
        return (text or None), []
    detail = body.detail if isinstance(body.detail, str) else None
    fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in body.errors if isinstance(e, dict))
    if fields:
        detail = f"{detail} ({fields})" if detail else fields
    return detail, body.errors


def _transport_reason(exc: httpx.TransportError) -> str:
    """Why no answer came, in words an operator acts on ("connection refused")."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "timed out connecting"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for an answer"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host name ({cause.strerror or cause})"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed ({cause.reason or cause})"
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    return text or type(exc).__name__
