"""The demo: everything the product does today, for real, on this machine.

Starts a coordinator on a fresh embedded SQLite database (in .hc-demo/, reset on every run),
creates an admin, registers a local agent, serves two local targets (one healthy web page, one
that fails every other minute), creates checks of several types assigned to the agent, runs the
agent, and prints the URLs, the credentials and what arrives. Ctrl-C stops everything.

    python scripts/demo.py [--port 8000] [--once]

--once stops after the first results are stored and shown (used by the test suite).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / ".hc-demo"  # --state-dir changes it
BIN = Path(sys.executable).parent
ADMIN_EMAIL = "admin@example.com"


def tool(name: str) -> str:
    found = BIN / name
    return str(found) if found.exists() else name


def run(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"demo: {' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


async def serve_targets(port: int) -> web.AppRunner:
    """A healthy page, and one that is down during every odd minute."""

    async def home(_: web.Request) -> web.Response:
        return web.Response(text="<h1>Welcome to the demo shop</h1>", content_type="text/html")

    async def flaky(_: web.Request) -> web.Response:
        if time.gmtime().tm_min % 2:
            return web.Response(status=503, text="maintenance")
        return web.Response(text="ok")

    app = web.Application()
    app.add_routes([web.get("/", home), web.get("/flaky", flaky)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def wait_healthy(base: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            if process.poll() is not None:
                sys.exit("demo: the coordinator exited at start; see .hc-demo/coordinator.log")
            try:
                if (await client.get(f"{base}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    sys.exit("demo: the coordinator did not become healthy in 20 s")


async def main(port: int, target_port: int, once: bool) -> int:
    marker = DEMO_DIR / ".hc-demo-state"
    if DEMO_DIR.exists() and any(DEMO_DIR.iterdir()) and not marker.exists():
        sys.exit(f"demo: {DEMO_DIR} holds files the demo did not make; choose another --state-dir")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    marker.touch()
    env = {**os.environ, "HC_DATA_DIR": str(DEMO_DIR / "coordinator"), "HC_DATABASE_URL": ""}
    env.pop("HC_DATABASE_URL")
    # The demo's targets are on this machine; a real coordinator refuses to probe private addresses.
    env["HC_CENTRAL_ALLOW_PRIVATE"] = "true"
    base = f"http://127.0.0.1:{port}"
    password = secrets.token_urlsafe(12)

    run(tool("hc-coordinator"), "migrate", env=env)
    run(
        tool("hc-coordinator"),
        "create-user",
        "--email",
        ADMIN_EMAIL,
        "--password",
        password,
        "--superadmin",
        "--org",
        "Demo",
        env=env,
    )
    token = run(tool("hc-coordinator"), "create-token", "--email", ADMIN_EMAIL, "--name", "demo", env=env)

    log = (DEMO_DIR / "coordinator.log").open("wb")
    coordinator = subprocess.Popen(
        [tool("hc-coordinator"), "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    targets = await serve_targets(target_port)
    agent: subprocess.Popen[bytes] | None = None
    try:
        await wait_healthy(base, coordinator)
        api = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        me = (await api.get("/api/users/me")).raise_for_status().json()
        org_id = me["organizations"][0]["id"]
        reg = (
            (
                await api.post(
                    "/api/agents/registration-token",
                    json={"name": "demo-agent", "mode": "private", "organization_id": org_id},
                )
            )
            .raise_for_status()
            .json()
        )

        config = DEMO_DIR / "agent.toml"
        config.write_text(
            f'state_dir = "{(DEMO_DIR / "agent").as_posix()}"\nname = "demo-agent"\nstatus_address = ""\n'
        )
        run(
            tool("hc-agent"),
            "register",
            "--url",
            base,
            "--token",
            reg["token"],
            "--name",
            "demo-agent",
            "--config",
            str(config),
            env=env,
        )
        agents = (await api.get("/api/agents/")).raise_for_status().json()
        agent_id = (agents["agents"] if isinstance(agents, dict) else agents)[0]["id"]

        target = f"http://127.0.0.1:{target_port}"
        checks = [
            {
                "name": "Demo shop",
                "type": "uptime",
                "url": f"{target}/",
                "interval": 10,
                "content_match_enabled": True,
                "content_match_text": "Welcome",
                "content_match_type": "contains",
            },
            {
                "name": "Flaky API",
                "type": "uptime",
                "url": f"{target}/flaky",
                "interval": 10,
                "expected_status_codes": [200],
            },
            {"name": "Coordinator port", "type": "tcp", "host": "127.0.0.1", "port": port, "interval": 10},
            {"name": "Loopback ping", "type": "icmp", "host": "127.0.0.1", "interval": 10, "ping_count": 3},
        ]
        created = []
        for body in checks:
            body["assigned_agent_ids"] = [agent_id]
            body["check_source_critical"] = {f"agent:{agent_id}": True}
            created.append((await api.post("/api/checks/", json=body)).raise_for_status().json())
        # No agent and no geo: the coordinator probes this one itself, as the source "central".
        central = {"name": "Shop (from coordinator)", "type": "uptime", "url": f"{target}/", "interval": 10}
        created.append((await api.post("/api/checks/", json=central)).raise_for_status().json())

        agent_log = (DEMO_DIR / "agent.log").open("wb")
        agent = subprocess.Popen(
            [tool("hc-agent"), "run", "--config", str(config)], env=env, stdout=agent_log, stderr=subprocess.STDOUT
        )
        print(
            f"""
SysTeam HealthChecks demo is running (state in {DEMO_DIR.name}/, reset on every run)

  API            {base}/api/
  API docs       {base}/schema/swagger
  Health         {base}/healthz
  Log in         {ADMIN_EMAIL} / {password}   (POST {base}/api/auth/token)
  Access token   {token}
  Agent          #{agent_id} demo-agent, logs in {DEMO_DIR.name}/agent.log
  Targets        {target}/ (healthy), {target}/flaky (down every odd minute)

Try:
  curl -s -H 'Authorization: Bearer {token}' {base}/api/checks/ | python3 -m json.tool
  curl -s -H 'Authorization: Bearer {token}' {base}/api/agents/{agent_id}
""",
            flush=True,
        )
        return await watch(api, agent, created, agent_id, once)
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=15)
        coordinator.send_signal(signal.SIGTERM)
        coordinator.wait(timeout=15)
        await targets.cleanup()


async def watch(
    api: httpx.AsyncClient, agent: subprocess.Popen[bytes], checks: list[dict], agent_id: int, once: bool
) -> int:
    """Prints each check's status and its sources every few seconds, as the API serves them.

    With --once, stops when every check has a known status from every source.
    """
    deadline = time.monotonic() + 90
    while True:
        await asyncio.sleep(3)
        if agent.poll() is not None:
            print(f"demo: the agent exited with {agent.returncode}; see .hc-demo/agent.log", file=sys.stderr)
            return 1
        info = (await api.get(f"/api/agents/{agent_id}")).json()
        print(f"[{time.strftime('%H:%M:%S')}] agent #{agent_id} {info.get('status')}", flush=True)
        settled = True
        for check in checks:
            summary = (await api.get(f"/api/agents/checks/{check['id']}/geo-summary")).json()
            sources = summary.get("sources", [])
            parts = []
            for source in sources:
                timing = source.get("last_response_time_ms")
                took = f" {timing:.0f} ms" if isinstance(timing, (int, float)) else ""
                error = f" ({source['last_error']})" if source.get("last_error") else ""
                critical = " critical" if source.get("critical") else ""
                parts.append(f"{source['source']}{critical} {source['status']}{took}{error}")
            print(f"    {check['name']:<24} {summary.get('status', '?'):<9} {'; '.join(parts)}", flush=True)
            settled = settled and bool(sources) and all(src["status"] != "UNKNOWN" for src in sources)
        if once:
            if settled:
                print("demo: every check has a status from every source; stopping (--once)")
                return 0
            if time.monotonic() > deadline:
                print("demo: not every check had a status within 90 s", file=sys.stderr)
                return 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--target-port", type=int, default=8081)
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--state-dir", type=Path, default=DEMO_DIR, help="reset on every run (default .hc-demo)")
    options = parser.parse_args()
    DEMO_DIR = options.state_dir.resolve()
    try:
        sys.exit(asyncio.run(main(options.port, options.target_port, options.once)))
    except KeyboardInterrupt:
        sys.exit(0)
