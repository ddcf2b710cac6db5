"""A real coordinator and a real agent, as an operator runs them (CONTRACT §1 and §3).

`hc-coordinator serve` on a temporary SQLite folder, a user of Acme with a personal access token, a
registration token from the API, `hc-agent register`, a check of a local HTTP server assigned to
the agent, then `hc-agent run`: its results reach the coordinator's database, and SIGTERM ends it
with exit code 0 within 10 seconds.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import (
    Coordinator,
    agent_command,
    clean_env,
    http_target,
    run,
    start_coordinator,
    stop_process,
)

pytestmark = pytest.mark.e2e

EMAIL = "ops@example.com"


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Coordinator]:
    server = start_coordinator(tmp_path / "coordinator")
    try:
        yield server
    finally:
        server.stop()


def result_rows(coordinator: Coordinator, check_id: int) -> list[tuple[str, int]]:
    """(source, success) of the check's results, read from the coordinator's SQLite file."""
    with sqlite3.connect(coordinator.database_file, timeout=10) as db:
        rows = db.execute('SELECT source, success FROM results WHERE "check" = ?', (check_id,)).fetchall()
    return [(str(source), int(success)) for source, success in rows]


def test_a_registered_agent_delivers_its_results_and_stops_cleanly_on_sigterm(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    coordinator.cli("create-user", "--email", EMAIL, "--password", "s3cret-pass-e2e", "--org", "Acme")
    pat = coordinator.cli("create-token", "--email", EMAIL, "--name", "e2e")
    api = httpx.Client(base_url=coordinator.url, headers={"Authorization": f"Bearer {pat}"}, timeout=10)
    org_id = api.get("/api/users/me").json()["organizations"][0]["id"]
    minted = api.post(
        "/api/agents/registration-token", json={"name": "e2e-probe", "mode": "private", "organization_id": org_id}
    )
    assert minted.status_code == 201, minted.text

    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    agent_env = clean_env()
    registered = run(
        agent_command("register", "--url", coordinator.url, "--token", minted.json()["token"]),
        env=agent_env,
        cwd=agent_dir,
    )
    assert "registered agent" in registered
    agent_id = int(registered.split("registered agent ", 1)[1].split()[0])

    with http_target() as target:
        check = api.post(
            "/api/checks/",
            json={
                "name": "local site",
                "type": "uptime",
                "url": target.url,
                "interval": 10,
                "timeout": 5,
                "assigned_agent_ids": [agent_id],
            },
        )
        assert check.status_code == 201, check.text
        check_id = check.json()["id"]

        log_file = agent_dir / "agent.log"
        with log_file.open("w") as log:
            agent = subprocess.Popen(
                agent_command("run"), env=agent_env, cwd=agent_dir, stdout=log, stderr=subprocess.STDOUT, text=True
            )
        try:
            # The first probe comes within one interval (10 s) of the start, at the check's offset.
            deadline = time.monotonic() + 40
            while not result_rows(coordinator, check_id) and time.monotonic() < deadline:
                assert agent.poll() is None, log_file.read_text()
                time.sleep(0.5)
            rows = result_rows(coordinator, check_id)
            assert rows, f"no result arrived\n{log_file.read_text()}"
            assert set(rows) == {(f"agent:{agent_id}", 1)}
            assert target.hits

            shown = api.get(f"/api/agents/{agent_id}").json()
            assert shown["status"] == "online"

            started = time.monotonic()
            exit_code = stop_process(agent, timeout=15)
            took = time.monotonic() - started
        finally:
            stop_process(agent)
    assert exit_code == 0, log_file.read_text()
    assert took < 10, f"took {took:.1f}s to stop"
    assert "agent stopped" in log_file.read_text()
