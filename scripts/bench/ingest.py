"""Load generator for POST /api/agents/results, beside the raw SQLite insert rate of the same rows.

By default it starts a real `hc-coordinator serve` on a temporary SQLite data folder, creates a user
and organization with the CLI, registers N private agents and one check per agent over the API, then
lets the N simulated agents post batches of results as fast as the coordinator answers, for a fixed
time. Afterwards it inserts every row the agents sent into a fresh SQLite file holding the same
`results` table (DDL taken from the migration), with executemany, one transaction per batch; that
is the floor the HTTP path is measured against.

    python scripts/bench/ingest.py                       # 8 agents, 20 s, batches of 100
    python scripts/bench/ingest.py --agents 32 --duration 60
    python scripts/bench/ingest.py --url http://host:8000 --token pat_…   # an already running one
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from coordinator.db.migrate import statements  # noqa: E402

EMAIL = "bench@example.com"
PASSWORD = "bench-password-1"


@dataclasses.dataclass
class Agent:
    id: int
    key: str
    check_id: int


@dataclasses.dataclass
class Totals:
    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: int = 0
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    # Every row sent, as the raw insert below takes it.
    rows: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)


# --- the coordinator ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("hc-coordinator")
    return [str(script)] if script.exists() else [sys.executable, "-m", "coordinator.cli"]


@contextlib.contextmanager
def coordinator(data_dir: Path) -> Iterator[tuple[str, str]]:
    """A `hc-coordinator serve` process on its own SQLite folder; yields (base url, access token)."""
    env = {**os.environ, "HC_DATA_DIR": str(data_dir), "HC_LOG_LEVEL": "warning"}
    env.pop("HC_DATABASE_URL", None)
    run = {"env": env, "check": True, "capture_output": True, "text": True, "cwd": data_dir}
    cli = _cli()
    subprocess.run([*cli, "create-user", "--email", EMAIL, "--password", PASSWORD, "--org", "bench"], **run)
    token = subprocess.run([*cli, "create-token", "--email", EMAIL, "--name", "bench"], **run).stdout.strip()
    port = _free_port()
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port)], env=env, cwd=data_dir, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server)
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the coordinator exited with {server.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit("the coordinator did not become healthy within 30 s")


# --- set-up over the API --------------------------------------------------------------------------


async def make_agents(url: str, token: str, count: int) -> list[Agent]:
    people = {"Authorization": f"Bearer {token}"}
    agents = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for n in range(count):
            reg = await http.post(
                "/api/agents/registration-token", json={"name": f"bench-{n}"}, headers=people
            )
            reg.raise_for_status()
            registered = await http.post(
                "/api/agents/register",
                json={"token": reg.json()["token"], "hostname": f"bench-{n}", "version": "bench"},
            )
            registered.raise_for_status()
            agent_id = int(registered.json()["agent_id"])
            check = await http.post(
                "/api/checks/",
                json={
                    "name": f"bench {n}",
                    "type": "uptime",
                    "url": "https://example.com/",
                    "assigned_agent_ids": [agent_id],
                },
                headers=people,
            )
            check.raise_for_status()
            agents.append(Agent(agent_id, registered.json()["api_key"], int(check.json()["id"])))
    return agents


# --- the load -------------------------------------------------------------------------------------


def _batch(agent: Agent, size: int, totals: Totals) -> list[dict[str, Any]]:
    now = datetime.datetime.now(datetime.timezone.utc)
    results = []
    for _ in range(size):
        result = {
            "result_id": str(uuid.uuid4()),
            "check_id": agent.check_id,
            "started_at": now.isoformat(),
            "success": True,
            "response_time_ms": 87.5,
            "status_code": 200,
            "error": None,
            "details": {"timings": {"dns": 1.2, "connect": 3.4, "tls": 20.1, "ttfb": 50.0}},
        }
        results.append(result)
        totals.rows.append(
            (
                result["result_id"],
                agent.check_id,
                f"agent:{agent.id}",
                agent.id,
                str(now),
                str(datetime.datetime.now(datetime.timezone.utc)),
                True,
                87.5,
                200,
                None,
                json.dumps(result["details"]),
            )
        )
    return results


async def simulate(agent: Agent, url: str, size: int, deadline: float, totals: Totals) -> None:
    """One agent: post a batch, wait for the answer, post the next, until the deadline."""
    headers = {"Authorization": f"Bearer {agent.key}"}
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as http:
        while time.monotonic() < deadline:
            body = {"results": _batch(agent, size, totals)}
            began = time.perf_counter()
            try:
                response = await http.post("/api/agents/results", json=body)
            except httpx.HTTPError:
                totals.errors += 1
                continue
            totals.latencies_ms.append((time.perf_counter() - began) * 1000)
            if response.status_code != 200:
                totals.errors += 1
                continue
            answer = response.json()
            totals.batches += 1
            totals.accepted += answer["accepted"]
            totals.duplicates += answer["duplicates"]
            totals.rejected += len(answer["rejected"])


# --- the raw floor --------------------------------------------------------------------------------


def raw_sqlite_rate(rows: list[tuple[Any, ...]], batch: int, check_ids: set[int]) -> float:
    """Rows per second into the same `results` table, executemany, one transaction per batch."""
    sql = (ROOT / "coordinator/db/migrations/0002_agent_protocol.sql").read_text(encoding="utf-8")
    wanted = ("CREATE TABLE results", "CREATE INDEX results_")
    ddl = [s for s in statements(sql, "sqlite") if s.startswith(wanted)]
    with tempfile.TemporaryDirectory() as folder:
        conn = sqlite3.connect(Path(folder) / "raw.db", isolation_level=None)
        # As the coordinator has it: WAL, synchronous=NORMAL, foreign keys enforced.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("CREATE TABLE checks (id INTEGER PRIMARY KEY)")
        conn.executemany("INSERT INTO checks (id) VALUES (?)", [(c,) for c in check_ids])
        for statement in ddl:
            conn.execute(statement)
        insert = (
            'INSERT INTO results (result_id, "check", source, agent, started_at, received_at, success, '
            "response_time_ms, status_code, error, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (result_id) DO NOTHING"
        )
        began = time.perf_counter()
        for start in range(0, len(rows), batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, rows[start : start + batch])
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - began
        conn.close()
    return len(rows) / elapsed if elapsed > 0 else 0.0


# --- main -----------------------------------------------------------------------------------------


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


async def run(args: argparse.Namespace, url: str, token: str) -> None:
    agents = await make_agents(url, token, args.agents)
    totals = Totals()
    began = time.monotonic()
    deadline = began + args.duration
    await asyncio.gather(*(simulate(a, url, args.batch, deadline, totals) for a in agents))
    elapsed = time.monotonic() - began
    raw = raw_sqlite_rate(totals.rows, args.batch, {a.check_id for a in agents})
    print(
        f"\ningest over HTTP: {args.agents} agents, batches of {args.batch}, {elapsed:.1f} s, "
        f"coordinator at {url}"
    )
    table = [
        ("batches posted", f"{totals.batches}"),
        ("results accepted", f"{totals.accepted}"),
        ("duplicates / rejected / failed", f"{totals.duplicates} / {totals.rejected} / {totals.errors}"),
        ("results/s over HTTP", f"{totals.accepted / elapsed:,.0f}"),
        ("request latency p50", f"{_percentile(totals.latencies_ms, 0.50):.1f} ms"),
        ("request latency p99", f"{_percentile(totals.latencies_ms, 0.99):.1f} ms"),
        ("raw SQLite insert, same rows (rows/s)", f"{raw:,.0f}"),
    ]
    width = max(len(name) for name, _ in table)
    for name, value in table:
        print(f"  {name:<{width}}  {value:>14}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=8, help="simulated agents posting at once (8)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load (20)")
    parser.add_argument("--batch", type=int, default=100, help="results per request (100)")
    parser.add_argument("--url", help="a running coordinator to target instead of starting one")
    parser.add_argument("--token", help="with --url: an ADMIN's access token (pat_…) of one organization")
    args = parser.parse_args()
    if args.url:
        if not args.token:
            parser.error("--url needs --token")
        asyncio.run(run(args, args.url.rstrip("/"), args.token))
        return
    with tempfile.TemporaryDirectory(prefix="hc-bench-") as folder, coordinator(Path(folder)) as (url, token):
        asyncio.run(run(args, url, token))


if __name__ == "__main__":
    main()
