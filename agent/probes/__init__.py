"""Probes: one module per check type. `run_probe` runs the one a check asks for.

A probe's outcome is data: whatever happens to the target, and whatever goes wrong inside a probe,
`run_probe` returns a `ProbeResult` and never raises (only cancellation passes through, so that
the agent can stop). The time limit is enforced here, once, for the whole probe.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from agent.probes import dns, http, icmp, tcp, udp
from agent.probes._address import AllowAddress, IPAddress, refuse_non_public
from agent.probes._context import Outcome, ProbeContext, ProbeFailure, ms, shorten
from shared.wire import CheckSpec, CheckType, ProbeResult

__all__ = ["AllowAddress", "IPAddress", "refuse_non_public", "run_probe"]

_Probe = Callable[[CheckSpec, ProbeContext], Awaitable[Outcome]]

_PROBES: dict[CheckType, _Probe] = {
    CheckType.UPTIME: http.probe,
    CheckType.TCP: tcp.probe,
    CheckType.UDP: udp.probe,
    CheckType.DNS: dns.probe,
    CheckType.ICMP: icmp.probe,
}


async def run_probe(spec: CheckSpec, *, allow_address: AllowAddress | None = None) -> ProbeResult:
    """Probe the check's target once. `allow_address` may refuse addresses (see `refuse_non_public`)."""
    started_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    ctx = ProbeContext(allow_address=allow_address)
    outcome = await _outcome(spec, ctx)
    elapsed_ms = ms(time.perf_counter() - started)
    return ProbeResult(
        result_id=str(uuid.uuid4()),
        check_id=spec.id,
        started_at=started_at,
        success=outcome.success,
        response_time_ms=outcome.response_time_ms if outcome.response_time_ms is not None else elapsed_ms,
        status_code=outcome.status_code,
        error=None if outcome.success else outcome.error or "failed",
        details=ctx.details,
    )


async def _outcome(spec: CheckSpec, ctx: ProbeContext) -> Outcome:
    probe = _PROBES.get(spec.type)
    if probe is None:
        return Outcome(success=False, error=f"{_type_name(spec)} checks are not probed by an agent")
    if spec.timeout <= 0:
        return Outcome(success=False, error=f"invalid timeout {spec.timeout}: must be at least 1 s")
    try:
        return await asyncio.wait_for(probe(spec, ctx), timeout=spec.timeout)
    except ProbeFailure as failure:
        return Outcome(success=False, error=failure.error)
    except asyncio.TimeoutError:
        return Outcome(success=False, error=ctx.timeout_error or f"timed out after {spec.timeout} s")
    except Exception as exc:  # a bug in a probe is still a result, never a crashed scheduler
        return Outcome(success=False, error=f"probe error: {type(exc).__name__}: {shorten(str(exc), 200)}")


def _type_name(spec: CheckSpec) -> str:
    # msgspec validates on decode only; a spec built in code may carry a plain string.
    return spec.type.value if isinstance(spec.type, CheckType) else str(spec.type)
