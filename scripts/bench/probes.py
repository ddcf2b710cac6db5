"""Probe throughput, CPU per probe, scheduling lag and memory of one agent process.

Every phase runs in processes of its own, so that each CPU figure belongs to one process:

- the target: a tiny aiohttp app on 127.0.0.1 (`GET /` answers 200 "ok"), in its own process;
- throughput: one agent process runs `agent.scheduler.Scheduler` with the real `run_probe` on N
  `uptime` checks whose schedule (via `time_scale`) offers more probes than it can run; the sink
  only counts. It reports sustained probes/s and its own CPU ms per probe (os.times) over the
  measured window, after a warm-up;
- lag: another agent process runs 10,000 checks at a 10 s interval (1,000 probes/s offered) and
  reports the scheduler's event-loop lag p99 (a finer `LagMonitor` tick than the daemon's) and
  the p99 of each probe's start delay behind its planned slot (which includes the wait at the
  concurrency cap);
- memory: another agent process reconciles 10,000 specs (at an interval long enough that none
  fires) and reports VmRSS and ru_maxrss;
- reference: where `prometheus-blackbox-exporter` is on PATH, it is started with an `http_2xx`
  module on a free port and driven with the same number of probes of the same target, through
  concurrent GET /probe requests; its CPU ms per probe comes from /proc/<pid>/stat.

    python scripts/bench/probes.py                      # defaults: about 80 s
    python scripts/bench/probes.py --duration 30 --checks 4000 --concurrency 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

GOAL_CPU_RATIO = 0.8
GOAL_RATE = 1500.0
GOAL_LAG_MS = 100.0
GOAL_LAG_RATE = 1000.0
GOAL_RSS_MB = 80.0
RSS_CHECKS = 10_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def _spec(check_id: int, url: str, interval: int) -> Any:
    from shared.wire import CheckSpec, CheckType

    return CheckSpec(id=check_id, type=CheckType.UPTIME, interval=interval, timeout=5, url=url)


def _vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# --- the target (a process of its own) ------------------------------------------------------------


def serve_target(port: int) -> None:
    from aiohttp import web

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=4096)


# --- agent phases (each in a process of its own; they print one JSON line) ------------------------


async def phase_throughput(url: str, checks: int, duration: float, warmup: float, concurrency: int) -> dict[str, Any]:
    from agent.scheduler import Scheduler

    counts = {"ok": 0, "failed": 0}
    errors: dict[str, int] = {}

    async def sink(result: Any, _changed: bool) -> None:
        if result.success:
            counts["ok"] += 1
        else:
            counts["failed"] += 1
            errors[result.error or "?"] = errors.get(result.error or "?", 0) + 1

    # interval 1 s x time_scale 0.5: every check is offered twice a second, far above capacity.
    scheduler = Scheduler(on_result=sink, concurrency=concurrency, time_scale=0.5)
    scheduler.reconcile([_spec(i, url, 1) for i in range(1, checks + 1)])
    await asyncio.sleep(warmup)
    done0, cpu0, t0 = counts["ok"] + counts["failed"], _cpu_seconds(), time.perf_counter()
    await asyncio.sleep(duration)
    done1, cpu1, t1 = counts["ok"] + counts["failed"], _cpu_seconds(), time.perf_counter()
    await scheduler.stop(grace=2.0)
    probes = done1 - done0
    return {
        "probes": probes,
        "rate": probes / (t1 - t0),
        "cpu_ms_per_probe": (cpu1 - cpu0) * 1000 / max(1, probes),
        "failed": counts["failed"],
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:3]),
    }


async def phase_lag(
    url: str, checks: int, interval: int, duration: float, warmup: float, concurrency: int
) -> dict[str, Any]:
    from agent.probes import run_probe
    from agent.scheduler import LagMonitor, Scheduler, offset_fraction

    loop = asyncio.get_running_loop()
    measuring = False
    delays: list[float] = []
    ticks: list[float] = []
    counts = {"ok": 0, "failed": 0}

    async def probe(spec: Any) -> Any:
        # How late this probe starts behind its slot (slots are wall-clock phases of the interval).
        planned_phase = offset_fraction(spec.id) * spec.interval
        late = (time.time() - planned_phase) % spec.interval
        if measuring and late < spec.interval / 2:  # a start a hair early would wrap to an interval
            delays.append(late)
        return await run_probe(spec)

    async def sink(result: Any, _changed: bool) -> None:
        if measuring:
            counts["ok" if result.success else "failed"] += 1

    async def steady_lag(tick: float = 0.05) -> None:
        # The scheduler's LagMonitor algorithm, but sampling only the measured window (after the
        # start-up burst of creating every check's task).
        while True:
            expected = loop.time() + tick
            await asyncio.sleep(tick)
            ticks.append(max(0.0, loop.time() - expected))

    scheduler = Scheduler(
        on_result=sink, concurrency=concurrency, probe=probe, lag=LagMonitor(tick=0.05, window=100_000)
    )
    scheduler.reconcile([_spec(i, url, interval) for i in range(1, checks + 1)])
    await asyncio.sleep(warmup)
    measuring = True
    sampler = asyncio.create_task(steady_lag())
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    await asyncio.sleep(duration)
    cpu1, t1 = _cpu_seconds(), time.perf_counter()
    measuring = False
    sampler.cancel()
    done = counts["ok"] + counts["failed"]
    await scheduler.stop(grace=2.0)
    return {
        "probes": done,
        "rate": done / (t1 - t0),
        "cpu_ms_per_probe": (cpu1 - cpu0) * 1000 / max(1, done),
        "loop_lag_p99_ms": _p99(ticks) * 1000,
        "loop_lag_max_ms": max(ticks, default=0.0) * 1000,
        "lag_with_start_p99_ms": scheduler.lag.p99_ms,
        "start_delay_p99_ms": _p99(delays) * 1000,
        "failed": counts["failed"],
    }


async def phase_rss(url: str, checks: int) -> dict[str, Any]:
    from agent.scheduler import Scheduler

    async def sink(_result: Any, _changed: bool) -> None:
        return None

    before = _vm_rss_mb()
    # An hour's interval: the checks are loaded and sleeping, only a handful probe meanwhile.
    scheduler = Scheduler(on_result=sink)
    scheduler.reconcile([_spec(i, url, 3600) for i in range(1, checks + 1)])
    await asyncio.sleep(1.0)  # every task has started and gone to sleep
    rss = _vm_rss_mb()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    running = scheduler.running_checks
    await scheduler.stop(grace=1.0)
    return {"checks": running, "rss_mb": rss, "maxrss_mb": maxrss, "baseline_mb": before}


def run_phase(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--phase", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# --- blackbox_exporter (the reference) ------------------------------------------------------------

BLACKBOX_CONFIG = """\
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
"""


def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def blackbox_exporter(binary: str) -> Iterator[tuple[int, int]]:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-bbe-") as tmp:
        config = Path(tmp) / "blackbox.yml"
        config.write_text(BLACKBOX_CONFIG)
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_port(port)
            yield proc.pid, port
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def drive_blackbox(pid: int, port: int, target: str, probes: int, concurrency: int) -> dict[str, Any]:
    import aiohttp

    url = f"http://127.0.0.1:{port}/probe"
    params = {"target": target, "module": "http_2xx"}
    remaining = probes
    ok = failed = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal remaining, ok, failed
            while remaining > 0:
                remaining -= 1
                async with session.get(url, params=params) as response:
                    body = await response.text()
                if response.status == 200 and "\nprobe_success 1" in body:
                    ok += 1
                else:
                    failed += 1

        # a few unmeasured probes: the exporter's first requests set up its pools
        for _ in range(20):
            async with session.get(url, params=params) as response:
                await response.read()
        cpu0, t0 = _proc_cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu1, t1 = _proc_cpu_seconds(pid), time.perf_counter()
    done = ok + failed
    return {
        "probes": done,
        "rate": done / (t1 - t0),
        "cpu_ms_per_probe": (cpu1 - cpu0) * 1000 / max(1, done),
        "failed": failed,
    }


# --- orchestration --------------------------------------------------------------------------------


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@contextlib.contextmanager
def target_process() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-target", str(port)])
    try:
        _wait_port(port)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(5)


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds of each timed phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each agent window")
    parser.add_argument("--checks", type=int, default=3000, help="checks of the throughput phase")
    parser.add_argument("--concurrency", type=int, default=200, help="the scheduler's cap (the daemon's default)")
    parser.add_argument("--lag-checks", type=int, default=10_000, help="checks of the lag phase")
    parser.add_argument("--lag-interval", type=int, default=10, help="their interval in seconds")
    parser.add_argument("--bbe-concurrency", type=int, default=200, help="concurrent /probe requests")
    parser.add_argument("--no-blackbox", action="store_true", help="skip the blackbox_exporter reference")
    parser.add_argument("--serve-target", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve_target:
        serve_target(args.serve_target)
        return
    if args.phase:
        name, url, *rest = args.phase
        if name == "throughput":
            result = asyncio.run(phase_throughput(url, int(rest[0]), float(rest[1]), float(rest[2]), int(rest[3])))
        elif name == "lag":
            result = asyncio.run(
                phase_lag(url, int(rest[0]), int(rest[1]), float(rest[2]), float(rest[3]), int(rest[4]))
            )
        else:
            result = asyncio.run(phase_rss(url, int(rest[0])))
        print(json.dumps(result))
        return

    binary = None if args.no_blackbox else shutil.which("prometheus-blackbox-exporter")
    with target_process() as url:
        print(f"target {url} (own process); {os.cpu_count()} CPUs", file=sys.stderr)
        print(f"throughput: {args.checks} checks offered at 2/s each, {args.duration:g} s ...", file=sys.stderr)
        thr = run_phase(
            ["throughput", url, str(args.checks), str(args.duration), str(args.warmup), str(args.concurrency)]
        )
        lag_rate = args.lag_checks / args.lag_interval
        print(f"lag: {args.lag_checks} checks every {args.lag_interval} s, {args.duration:g} s ...", file=sys.stderr)
        lag_args = [str(args.lag_checks), str(args.lag_interval), str(args.duration), str(args.warmup)]
        lag = run_phase(["lag", url, *lag_args, str(args.concurrency)])
        print(f"rss: {RSS_CHECKS} checks loaded ...", file=sys.stderr)
        rss = run_phase(["rss", url, str(RSS_CHECKS)])
        bbe: dict[str, Any] | None = None
        if binary:
            print(f"blackbox_exporter: {thr['probes']} probes ...", file=sys.stderr)
            with blackbox_exporter(binary) as (pid, port):
                bbe = asyncio.run(drive_blackbox(pid, port, url, int(thr["probes"]), args.bbe_concurrency))

    rows: list[tuple[str, str, str, str]] = []
    if bbe is not None:
        limit = GOAL_CPU_RATIO * bbe["cpu_ms_per_probe"]
        cpu_goal = f"≤ {limit:.3f} ms (0.8 x bbe)"
        cpu_mark = _mark(thr["cpu_ms_per_probe"] <= limit)
    else:
        cpu_goal, cpu_mark = "≤ 0.8 x bbe", "no reference"
    rows.append(("agent CPU per probe (saturated)", f"{thr['cpu_ms_per_probe']:.3f} ms", cpu_goal, cpu_mark))
    rows.append(("agent CPU per probe (at lag rate)", f"{lag['cpu_ms_per_probe']:.3f} ms", "", ""))
    if bbe is not None:
        rows.append(("blackbox_exporter CPU per probe", f"{bbe['cpu_ms_per_probe']:.3f} ms", "reference", ""))
        rows.append(
            (
                "blackbox_exporter probes/s",
                f"{bbe['rate']:,.0f}",
                f"{bbe['probes']:,} probes, {bbe['failed']} failed",
                "",
            )
        )
    rows.append(
        (
            "agent sustained probes/s, 1 process",
            f"{thr['rate']:,.0f}",
            f"≥ {GOAL_RATE:,.0f}",
            _mark(thr["rate"] >= GOAL_RATE),
        )
    )
    rows.append(("  probes measured / failed", f"{thr['probes']:,} / {thr['failed']:,}", "", ""))
    lag_ok = lag["loop_lag_p99_ms"] <= GOAL_LAG_MS and lag["rate"] >= 0.95 * GOAL_LAG_RATE
    rows.append(
        (
            f"loop lag p99 at {lag_rate:,.0f} offered/s",
            f"{lag['loop_lag_p99_ms']:.1f} ms",
            f"≤ {GOAL_LAG_MS:.0f} ms",
            _mark(lag_ok),
        )
    )
    rows.append(("  achieved probes/s / failed", f"{lag['rate']:,.0f} / {lag['failed']:,}", "", ""))
    rows.append(("  loop lag max", f"{lag['loop_lag_max_ms']:.1f} ms", "", ""))
    rows.append(("  loop lag p99 incl. start-up", f"{lag['lag_with_start_p99_ms']:.1f} ms", "", ""))
    rows.append(("  probe start delay p99 (vs slot)", f"{lag['start_delay_p99_ms']:.1f} ms", "", ""))
    rows.append(
        (
            f"RSS with {rss['checks']:,} checks loaded",
            f"{rss['rss_mb']:.1f} MB",
            f"≤ {GOAL_RSS_MB:.0f} MB",
            _mark(rss["rss_mb"] <= GOAL_RSS_MB),
        )
    )
    rows.append(("  ru_maxrss / before reconcile", f"{rss['maxrss_mb']:.1f} / {rss['baseline_mb']:.1f} MB", "", ""))

    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    header = ("metric", "value", "goal", "")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if thr["errors"]:
        print(f"throughput errors (top): {thr['errors']}")


if __name__ == "__main__":
    main()
