"""The agent daemon (`hc-agent run`): heartbeats, pulls its checks, probes, delivers the results.

Four loops share one coordinator client:

    heartbeat   every heartbeat_interval; pulls the checks when the answer's checks_etag is new
    scheduler   probes each check on its interval (agent.scheduler); every result goes to the spool
    delivery    posts the spool's newest batch every results_flush_interval seconds, and at once
                when a check's outcome changed; acks what the coordinator answered for
    prune       keeps the spool within its age and size limits

A result is written to the spool before anything tries to send it, and leaves the spool only when
the coordinator has answered for it (accepted, duplicate or rejected), so an outage, a crash or a
restart loses nothing; the coordinator drops repeats by result_id. While the coordinator is away,
delivery backs off with full jitter (and never sooner than its Retry-After) and the probes go on.

Stopping (SIGTERM, SIGINT) lets the probes in flight finish and flushes the spool within
STOP_BUDGET seconds; what the coordinator does not take by then waits in the spool for the next
start. A refused key (401) is read again from its file once, in case it was rotated; if it is
still refused the daemon stops with DaemonError (exit code 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from importlib import metadata

import msgspec
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from agent.client import (
    BadRequest,
    ClientError,
    CoordinatorClient,
    CoordinatorUnavailable,
    HeartbeatRequest,
    NotModified,
    PayloadTooLarge,
    RetryPolicy,
    Unauthorized,
    UnexpectedResponse,
    backoff_wait,
)
from agent.config import AgentSettings, ConfigError, Credentials, load_credentials, write_private
from agent.probes import AllowAddress, IPAddress, run_probe
from agent.scheduler import ProbeFn, Scheduler
from agent.spool import Spool
from shared.wire import CheckSpec, ProbeResult

log = logging.getLogger(__name__)

STOP_BUDGET = 10.0  # seconds from the stop signal to the exit
MAX_BATCH_BYTES = 1_048_576  # CONTRACT §3: the coordinator refuses bigger requests with 413
DEFAULT_HEARTBEAT_INTERVAL = 30.0
# Waits between two delivery attempts while the coordinator is away: full jitter up to a minute.
DELIVERY_BACKOFF = RetryPolicy(attempts=0, initial_wait=1.0, max_wait=60.0)


def agent_version() -> str:
    try:
        return metadata.version("systeam-healthchecks")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


class DaemonError(Exception):
    """The daemon cannot go on; `exit_code` is what the process should exit with."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NotRegistered(DaemonError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


def address_filter(settings: AgentSettings) -> AllowAddress | None:
    """The probes' address check from allow_networks / deny_networks; None when neither is set."""
    allow, deny = settings.allow_networks, settings.deny_networks
    if not allow and not deny:
        return None

    def check(ip: IPAddress) -> str | None:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in deny):
            return "in deny_networks"
        if allow and not any(ip in net for net in allow):
            return "outside allow_networks"
        return None

    return check


_CHECK_LIST = msgspec.json.Encoder()


class Daemon:
    """One agent process's work. `await run()` until `stop()`; `reload()` re-reads settings and key.

    `reload_settings` gives the settings anew (SIGHUP); `probe` replaces run_probe in tests;
    `backoff` paces delivery retries; `backoff_sleep` waits between them (default: a wait that
    `stop()` ends early); `time_scale` shrinks the checks' intervals (see Scheduler).
    """

    def __init__(
        self,
        settings: AgentSettings,
        *,
        reload_settings: Callable[[], AgentSettings] | None = None,
        probe: ProbeFn | None = None,
        backoff: RetryPolicy = DELIVERY_BACKOFF,
        backoff_sleep: Callable[[float], Awaitable[None]] | None = None,
        prune_interval: float = 60.0,
        time_scale: float = 1.0,
        hostname: str | None = None,
        version: str | None = None,
    ) -> None:
        self.settings = settings
        self._reload_settings = reload_settings
        self._probe_override = probe
        self._backoff = backoff
        self._backoff_sleep = backoff_sleep or self._pause
        self._prune_interval = prune_interval
        self._time_scale = time_scale
        self.hostname = hostname or socket.gethostname()
        self.version = version or agent_version()

        self._stop_requested = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._probes_done = asyncio.Event()  # set at shutdown: the delivery loop's cue to finish
        self._batch_limit = settings.results_batch_size
        self._heartbeat_interval = DEFAULT_HEARTBEAT_INTERVAL
        self._checks_etag: str | None = None
        self._key_reread = False  # set by a 401; cleared by the next call the coordinator accepts
        self._credentials: Credentials | None = None
        self._client: CoordinatorClient | None = None
        self._retired_clients: list[CoordinatorClient] = []
        self._spool: Spool | None = None
        self._scheduler: Scheduler | None = None

    # --- control ---------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop_requested.set()

    def reload(self) -> None:
        asyncio.get_running_loop().create_task(self._reload(), name="hc-reload")

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    # --- the run ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Runs until stop(); raises DaemonError when it cannot go on (NotRegistered: exit 2)."""
        credentials = self._read_credentials()
        if credentials is None:
            raise NotRegistered(
                f"not registered: no agent key at {self.settings.key_file}; "
                "run `hc-agent register --url URL --token reg_…` first"
            )
        s = self.settings
        self._spool = Spool(s.spool_file, s.spool_max_age, s.spool_max_bytes)
        self._use_credentials(credentials)
        self._scheduler = Scheduler(
            on_result=self._keep,
            concurrency=s.concurrency,
            probe=self._probe_fn(),
            time_scale=self._time_scale,
        )
        self._resume_checks()
        log.info(
            "agent %s (%s) started: coordinator %s, spool %s holds %d results",
            credentials.agent_id,
            credentials.name or self.hostname,
            self._coordinator_url(credentials),
            s.spool_file,
            await self._spool.depth(),
        )
        loops = [
            asyncio.create_task(self._heartbeat_loop(), name="hc-heartbeat"),
            asyncio.create_task(self._delivery_loop(), name="hc-delivery"),
            asyncio.create_task(self._prune_loop(), name="hc-prune"),
        ]
        stop_wait = asyncio.create_task(self._stop_requested.wait())
        failure: BaseException | None = None
        try:
            done, _ = await asyncio.wait([*loops, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            failure = next((t.exception() for t in done if t is not stop_wait and t.exception()), None)
        finally:
            self._stop_requested.set()
            stop_wait.cancel()
            await self._shut_down(loops, flush=not isinstance(failure, DaemonError))
        if failure is not None:
            raise failure

    async def _shut_down(self, loops: list[asyncio.Task[None]], *, flush: bool) -> None:
        """Probes in flight finish, then the delivery loop makes its last flush, within the budget."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_BUDGET - 1.0  # a second left for closing and exiting
        heartbeat, delivery, prune = loops
        for task in (heartbeat, prune):
            task.cancel()
        if not flush:
            delivery.cancel()
        if self._scheduler is not None:
            # Half the budget for probes in flight, so that their results can still be sent.
            await self._scheduler.stop(grace=(deadline - loop.time()) / 2)
        # Not cancelled but told: a batch half-posted would be sent again at the next start.
        self._probes_done.set()
        self._flush_now.set()
        _, late = await asyncio.wait([delivery], timeout=max(0.1, deadline - loop.time()))
        for task in late:
            log.warning("stopping before the coordinator answered the last batch")
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        if self._spool is not None:
            left = await self._spool.depth()
            if left:
                log.info("%d results stay in the spool until the next start", left)
            await self._spool.close()
        for client in [*self._retired_clients, *([self._client] if self._client else [])]:
            await client.aclose()
        log.info("agent stopped")

    # --- heartbeats and checks -------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while not self.stopping:
            try:
                await self._heartbeat()
            except Unauthorized as exc:
                self._after_unauthorized(exc)
                continue  # at once, with the key read again
            except ClientError as exc:
                log.warning("heartbeat failed: %s", exc)
            await self._pause(self._heartbeat_interval)

    async def _heartbeat(self) -> None:
        assert self._scheduler is not None
        assert self._spool is not None
        payload = HeartbeatRequest(
            version=self.version,
            hostname=self.hostname,
            sent_at=datetime.now(timezone.utc),
            running_checks=self._scheduler.running_checks,
            spool_depth=await self._spool.depth(),
            loop_lag_p99_ms=self._scheduler.lag.p99_ms,
            loop_lag_max_ms=self._scheduler.lag.max_ms,
        )
        answer = await self._http().heartbeat(payload, retry=False)
        self._key_reread = False
        self._heartbeat_interval = float(max(1, answer.heartbeat_interval))
        if answer.checks_etag is None or answer.checks_etag != self._checks_etag:
            await self._pull_checks()

    async def _pull_checks(self) -> None:
        assert self._scheduler is not None
        listing = await self._http().fetch_checks(self._checks_etag, retry=False)
        if isinstance(listing, NotModified):
            return
        self._scheduler.reconcile(listing.checks)
        self._checks_etag = listing.etag
        try:
            write_private(self.settings.checks_file, _CHECK_LIST.encode(listing.checks))
        except OSError as exc:
            log.warning("cannot keep the check list in %s: %s", self.settings.checks_file, exc)

    def _resume_checks(self) -> None:
        """Starts the checks of the last pull at once: an agent restarted while the coordinator is
        away goes on probing (results wait in the spool) instead of waiting for the first pull."""
        assert self._scheduler is not None
        try:
            checks = msgspec.json.decode(self.settings.checks_file.read_bytes(), type=list[CheckSpec])
        except FileNotFoundError:
            return
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("ignoring the kept check list %s: %s", self.settings.checks_file, exc)
            return
        self._scheduler.reconcile(checks)
        log.info("resumed %d checks from the last pull", len(checks))

    # --- results ---------------------------------------------------------------------------------

    async def _keep(self, result: ProbeResult, outcome_changed: bool) -> None:
        """The scheduler's sink: the spool first; a changed outcome is worth a flush of its own."""
        assert self._spool is not None
        await self._spool.add([result])
        if outcome_changed:
            self._flush_now.set()

    async def _delivery_loop(self) -> None:
        """Flushes on every tick and on demand; once the probes are done, flushes one last time."""
        while True:
            last = self._probes_done.is_set()
            # Each attempt takes the newest batch anew: what waited during an outage follows it.
            # Once stopping, one attempt is all: the results wait in the spool for the next start.
            retrying = AsyncRetrying(
                wait=backoff_wait(self._backoff),
                retry=retry_if_exception_type(CoordinatorUnavailable),
                stop=lambda _state: self.stopping,
                sleep=self._backoff_sleep,
                before_sleep=_log_delivery_retry,
                reraise=True,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        await self._flush()
            except CoordinatorUnavailable as exc:
                log.warning("results wait in the spool: %s", exc)
            except Unauthorized as exc:
                self._after_unauthorized(exc)
            if last:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), self.settings.results_flush_interval)
            self._flush_now.clear()

    async def _flush(self) -> None:
        """Posts batches until the spool is empty; raises CoordinatorUnavailable or Unauthorized."""
        assert self._spool is not None
        while True:
            batch = await self._spool.take_batch(self._batch_limit, MAX_BATCH_BYTES)
            if not batch:
                return
            try:
                answer = await self._http().post_results(batch, retry=False)
            except (PayloadTooLarge, BadRequest) as exc:
                await self._shrink_or_drop(batch, exc)
                continue
            except UnexpectedResponse as exc:
                # Not an answer about these results: keep them and try again later.
                raise CoordinatorUnavailable(str(exc), status_code=exc.status_code) from exc
            self._key_reread = False
            for rejected in answer.rejected:
                # Sending it again would be rejected again: the coordinator's reason is the record.
                log.warning("the coordinator rejected result %s: %s", rejected.result_id, rejected.reason)
            await self._spool.ack([result.result_id for result in batch])
            log.debug(
                "delivered %d results (%d accepted, %d duplicates, %d rejected)",
                len(batch),
                answer.accepted,
                answer.duplicates,
                len(answer.rejected),
            )

    async def _shrink_or_drop(self, batch: list[ProbeResult], exc: ClientError) -> None:
        """413 or 400/422 for a whole batch: halve it until the culprit is alone, then drop that one."""
        assert self._spool is not None
        if len(batch) > 1:
            self._batch_limit = max(1, len(batch) // 2)
            log.warning("the coordinator refused a batch of %d (%s); sending %d at a time",
                        len(batch), exc, self._batch_limit)  # fmt: skip
            return
        log.error("dropping result %s of check %s: the coordinator refuses it (%s)",
                  batch[0].result_id, batch[0].check_id, exc)  # fmt: skip
        await self._spool.ack([batch[0].result_id])

    async def _prune_loop(self) -> None:
        assert self._spool is not None
        while not self.stopping:
            await self._spool.prune()
            await self._pause(self._prune_interval)

    # --- the key, the client and the settings ----------------------------------------------------

    def _read_credentials(self) -> Credentials | None:
        return load_credentials(self.settings.state_dir)

    def _coordinator_url(self, credentials: Credentials) -> str:
        return self.settings.coordinator_url or credentials.coordinator_url

    def _use_credentials(self, credentials: Credentials) -> None:
        if self._client is not None:
            # Another loop may be in the middle of a call on the old client: close it at the end.
            self._retired_clients.append(self._client)
        s = self.settings
        self._credentials = credentials
        if credentials.heartbeat_interval and self._checks_etag is None:
            self._heartbeat_interval = float(credentials.heartbeat_interval)
        self._client = CoordinatorClient(
            self._coordinator_url(credentials),
            credentials.api_key,
            ca_file=s.ca_file,
            proxy=s.http_proxy or None,
            timeout=s.request_timeout,
            user_agent=f"hc-agent/{self.version}",
        )

    def _http(self) -> CoordinatorClient:
        assert self._client is not None
        return self._client

    def _after_unauthorized(self, exc: Unauthorized) -> None:
        """Use a key that changed in its file since; otherwise the agent has no business going on."""
        if not self._key_reread:
            self._key_reread = True
            try:
                fresh = self._read_credentials()
            except ConfigError as error:
                log.error("%s", error)
                fresh = None
            current = self._credentials.api_key if self._credentials is not None else None
            if fresh is not None and fresh.api_key != current:
                log.warning("the coordinator refused the agent key; using the new key found in %s",
                            self.settings.key_file)  # fmt: skip
                self._use_credentials(fresh)
                return
        raise DaemonError(
            f"the coordinator refused this agent's key ({exc}); it was revoked or replaced. "
            "Register the agent again with `hc-agent register`."
        )

    def _probe_fn(self) -> ProbeFn:
        if self._probe_override is not None:
            return self._probe_override
        allow = address_filter(self.settings)
        return functools.partial(run_probe, allow_address=allow) if allow else run_probe

    async def _reload(self) -> None:
        """SIGHUP: settings and key anew; what only a restart can change is named in the log."""
        if self._reload_settings is not None:
            try:
                fresh = self._reload_settings()
            except ConfigError as exc:
                log.error("reload: keeping the current settings: %s", exc)
                return
            if fresh.state_dir != self.settings.state_dir:
                log.warning("reload: state_dir changes only with a restart")
                fresh = dataclasses.replace(fresh, state_dir=self.settings.state_dir)
            logging.getLogger().setLevel(fresh.log_level.upper())
            self.settings = fresh
            self._batch_limit = fresh.results_batch_size
            if self._scheduler is not None:
                self._scheduler.set_concurrency(fresh.concurrency)
                self._scheduler.probe = self._probe_fn()
        try:
            credentials = self._read_credentials()
        except ConfigError as exc:
            log.error("reload: keeping the current key: %s", exc)
            credentials = self._credentials
        if credentials is not None:
            self._use_credentials(credentials)
        log.info("reloaded the settings and the agent key")

    async def _pause(self, seconds: float) -> None:
        """Sleeps `seconds`, or less when stop() comes first."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), timeout=seconds)


def _log_delivery_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    delay = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning("results wait in the spool: %s; next try in %.1fs", exc, delay)


async def serve(daemon: Daemon) -> None:
    """Runs `daemon` with SIGTERM/SIGINT stopping it and SIGHUP reloading it."""
    loop = asyncio.get_running_loop()
    handled = [signal.SIGTERM, signal.SIGINT]
    for sig in handled:
        loop.add_signal_handler(sig, daemon.stop)
    if hasattr(signal, "SIGHUP"):
        loop.add_signal_handler(signal.SIGHUP, daemon.reload)
        handled.append(signal.SIGHUP)
    try:
        await daemon.run()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
