"""Read-back latency: geo-summary and 7-day geo-timeseries over HTTP, against a loaded SQLite file.

It migrates a fresh SQLite data folder with the real migrations (through `hc-coordinator
create-user`), writes N geo checks straight into the file: 4 sources each, their source states, and
7 days of 5-minute rollups (N x 4 x 2016 rows), plus 24 hours of raw results (one a minute per
source, interleaved by time as agents deliver them) for a sample of the checks, since geo-summary
reads its 24-hour figures from raw results.
Then it starts a real `hc-coordinator serve` on that folder and asks, one request at a time, for the
geo-summary and the 7-day geo-timeseries of randomly chosen sampled checks, and prints percentiles.

    python scripts/bench/geo_queries.py                      # 2,000 checks, 200 with raw results
    python scripts/bench/geo_queries.py --checks 20000 --raw-checks 500 --requests 500

Goals (issue 4): geo-summary p95 < 25 ms, 7-day timeseries p95 < 100 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import random
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

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from coordinator.geo.histogram import BOUNDS_MS, COLUMNS  # noqa: E402

EMAIL = "bench@example.com"
PASSWORD = "bench-password-1"
SOURCES = ("geo:EU-PL", "geo:EU-DE", "geo:US-EAST", "geo:AP-SG")
BUCKET = 300
DAYS = 7
UTC = datetime.timezone.utc


def _ts(moment: datetime.datetime) -> str:
    return str(moment.astimezone(UTC))  # the text Piccolo stores for a TIMESTAMPTZ on SQLite


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("hc-coordinator")
    return [str(script)] if script.exists() else [sys.executable, "-m", "coordinator.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "HC_DATA_DIR": str(data_dir), "HC_LOG_LEVEL": "warning"}
    env.pop("HC_DATABASE_URL", None)
    return env


def prepare(data_dir: Path) -> str:
    """Migrates the data folder (the CLI does) and returns a personal access token."""
    run = {"env": _env(data_dir), "check": True, "capture_output": True, "text": True, "cwd": data_dir}
    subprocess.run([*_cli(), "create-user", "--email", EMAIL, "--password", PASSWORD, "--org", "bench"], **run)
    return subprocess.run([*_cli(), "create-token", "--email", EMAIL, "--name", "bench"], **run).stdout.strip()


# --- loading --------------------------------------------------------------------------------------


def _histogram(mean: float) -> list[int]:
    """Where one bucket's results fall: most near the mean, a few in the next histogram bucket."""
    counts = [0] * len(COLUMNS)
    index = next((i for i, bound in enumerate(BOUNDS_MS) if mean <= bound), len(BOUNDS_MS))
    counts[index] = 4
    counts[min(index + 1, len(COLUMNS) - 1)] += 1
    return counts


def load(db: Path, checks: int, raw_checks: int, now: datetime.datetime) -> dict[str, float]:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    org = conn.execute("SELECT id FROM organizations WHERE name = 'bench'").fetchone()[0]
    rng = random.Random(4)
    timings: dict[str, float] = {}

    began = time.perf_counter()
    stamp = _ts(now)
    conn.executemany(
        "INSERT INTO checks (uuid, organization, name, type, url, interval, timeout, geo_monitoring_enabled, "
        "check_source_critical, status, created_at, updated_at) VALUES (?, ?, ?, 'uptime', ?, 60, 10, 1, "
        "'{\"geo:EU-PL\": true}', 'UP', ?, ?)",
        [(str(uuid.uuid4()), org, f"bench {n}", f"https://example.com/{n}", stamp, stamp) for n in range(checks)],
    )
    check_ids = [row[0] for row in conn.execute("SELECT id FROM checks ORDER BY id")]
    conn.executemany(
        'INSERT INTO source_states ("check", source, agent, status, consecutive_failures, last_result_at, '
        "last_success_at, last_success, last_response_time_ms, updated_at) VALUES (?, ?, ?, 'UP', 0, ?, ?, 1, ?, ?)",
        [(c, s, i + 1, stamp, stamp, 100.0 + i, stamp) for c in check_ids for i, s in enumerate(SOURCES)],
    )
    conn.commit()
    timings["checks + source states"] = time.perf_counter() - began

    began = time.perf_counter()
    # Generated inside SQLite (a Python loop would take ten times as long), ordered as the unique
    # index is, one statement per slice of checks.
    shapes = (40.0, 90.0, 140.0, 230.0, 480.0)

    def by_shape(values: list[str]) -> str:
        return "CASE shape " + " ".join(f"WHEN {j} THEN {v}" for j, v in enumerate(values)) + " END"

    hists = [_histogram(mean) for mean in shapes]
    hist_sql = ", ".join(by_shape([str(h[i]) for h in hists]) for i in range(len(COLUMNS)))
    mean_sql = by_shape([str(m) for m in shapes])
    sources_sql = ", ".join(f"({i}, '{s}')" for i, s in enumerate(SOURCES))
    first = int((now - datetime.timedelta(days=DAYS)).timestamp())
    per_day = 86400 // BUCKET
    columns = '"check", source, bucket_start, count, failures, count_ms, sum_ms, max_ms, ' + ", ".join(COLUMNS)
    step = 250
    for low in range(0, len(check_ids), step):
        chunk = check_ids[low : low + step]
        conn.execute(
            f"WITH RECURSIVE b(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM b WHERE k < {DAYS * per_day - 1}), "
            f"src(i, source) AS (VALUES {sources_sql}), "
            "cs AS (SELECT c.id AS cid, src.source AS source, (c.id * 3 + src.i) % 5 AS shape "
            "FROM checks c, src WHERE c.id BETWEEN ? AND ?) "
            f"INSERT INTO result_rollups ({columns}) "
            f"SELECT cid, source, datetime({first} + k * {BUCKET}, 'unixepoch') || '+00:00', 5, "
            f"CASE WHEN abs(random()) % 100 = 0 THEN 1 ELSE 0 END, 5, 5 * {mean_sql}, 1.6 * {mean_sql}, {hist_sql} "
            "FROM cs, b ORDER BY cid, source, k",
            (chunk[0], chunk[-1]),
        )
        conn.commit()
    rows = len(check_ids) * len(SOURCES) * DAYS * per_day
    timings[f"rollups ({rows:,} rows)"] = time.perf_counter() - began

    began = time.perf_counter()
    raw = 0
    sampled = check_ids[:raw_checks]
    # Oldest first, every check's sources minute by minute, as agents deliver them: one source's
    # results are scattered over the table, one row in each of 1440 places, as in production.
    minutes = [now - datetime.timedelta(minutes=m) for m in range(24 * 60, 0, -1)]
    for at in minutes:
        stamp = _ts(at)
        batch = []
        for check_id in sampled:
            for agent, source in enumerate(SOURCES, start=1):
                ok = rng.random() >= 0.01
                batch.append(
                    (str(uuid.uuid4()), check_id, source, agent, stamp, stamp, int(ok),
                     rng.uniform(50, 300) if ok else None, 200 if ok else None, None if ok else "timeout")
                )  # fmt: skip
        conn.executemany(
            'INSERT INTO results (result_id, "check", source, agent, started_at, received_at, success, '
            "response_time_ms, status_code, error, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}')",
            batch,
        )
        raw += len(batch)
    # These rows are already "rolled up" (the rollups above stand for them): the server's rollup
    # round must not spend the measurement folding them.
    conn.execute("UPDATE rollup_progress SET last_id = (SELECT COALESCE(MAX(id), 0) FROM results)")
    conn.commit()
    timings[f"raw results ({raw:,} rows)"] = time.perf_counter() - began
    conn.execute("ANALYZE")
    conn.close()
    return timings


# --- measuring ------------------------------------------------------------------------------------


@contextlib.contextmanager
def serve(data_dir: Path) -> Iterator[str]:
    port = _free_port()
    server = subprocess.Popen(
        [*_cli(), "serve", "--port", str(port)], env=_env(data_dir), cwd=data_dir, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the coordinator exited with {server.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the coordinator did not become healthy within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def measure(http: httpx.Client, paths: list[tuple[str, dict[str, str]]]) -> tuple[list[float], int]:
    latencies = []
    size = 0
    for path, params in paths:
        began = time.perf_counter()
        response = http.get(path, params=params)
        latencies.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.text[:200]}")
        size = len(response.content)
    return latencies, size


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--raw-checks", type=int, default=200, help="checks that also get 24 h of raw results")
    parser.add_argument("--requests", type=int, default=300, help="requests per endpoint")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    args = parser.parse_args()
    args.raw_checks = min(args.raw_checks, args.checks)

    data_dir = Path(tempfile.mkdtemp(prefix="hc-geo-bench-"))
    try:
        token = prepare(data_dir)
        db = data_dir / "coordinator.db"
        now = datetime.datetime.fromtimestamp(time.time() // BUCKET * BUCKET, UTC)
        print(f"loading {args.checks:,} checks x {len(SOURCES)} sources x {DAYS} days of rollups into {db.name} …")
        timings = load(db, args.checks, args.raw_checks, now)
        for what, seconds in timings.items():
            print(f"  {what:<40} {seconds:8.1f} s")
        print(f"  database file: {db.stat().st_size / 1e9:.2f} GB")

        rng = random.Random(7)
        sampled = list(range(1, args.raw_checks + 1))
        week_ago = (now - datetime.timedelta(days=7)).isoformat()
        cases = {
            # The floor every read pays: authentication and the check's own row.
            "getCheck (baseline)": [(f"/api/checks/{rng.choice(sampled)}/x", {})],
            "geo-summary": [(f"/api/agents/checks/{rng.choice(sampled)}/geo-summary", {})],
            "geo-timeseries 7 d, 300 s": [
                (f"/api/agents/checks/{rng.choice(sampled)}/geo-timeseries", {"from": week_ago, "bucket": "300"})
            ],
            "geo-timeseries 7 d, 3600 s": [
                (f"/api/agents/checks/{rng.choice(sampled)}/geo-timeseries", {"from": week_ago, "bucket": "3600"})
            ],
        }
        with (
            serve(data_dir) as url,
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        ):
            rows = []
            for name, (template,) in cases.items():
                path, params = template
                base = path.rsplit("/", 2)
                paths = [
                    (f"{base[0]}/{rng.choice(sampled)}/{base[2]}".removesuffix("/x"), params)
                    for _ in range(args.requests)
                ]
                measure(http, paths[:20])  # warm-up
                latencies, size = measure(http, paths)
                rows.append((name, latencies, size))
        print()
        print(f"{'endpoint':<28} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'body':>9}")
        for name, latencies, size in rows:
            print(
                f"{name:<28} {len(latencies):>5} {statistics.median(latencies):8.1f} {pct(latencies, 0.95):8.1f} "
                f"{pct(latencies, 0.99):8.1f} {max(latencies):8.1f} {size / 1024:7.0f} K"
            )
        print("\ngoals: geo-summary p95 < 25 ms; 7-day geo-timeseries p95 < 100 ms")
    finally:
        if args.keep:
            print(f"data kept in {data_dir}")
        else:
            import shutil

            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
