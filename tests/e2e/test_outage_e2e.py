"""A coordinator outage loses no result (CONTRACT §3: spool first, duplicates dropped by result_id).

Real processes only: `hc-coordinator serve` on a temporary SQLite folder, one registered `hc-agent
run` with several checks (interval 10 s) of a local HTTP server. While results flow the coordinator
is stopped with SIGTERM for at least 20 s, then started again on the same folder and port. The agent
probes on through the outage, keeps the results in its spool, and delivers them once the
coordinator is back: every result it made arrives exactly once, and each check's results cover the
outage without a missing slot.

The second test also kills the agent with SIGKILL during the outage and starts it again: the spool
survives the kill, the restarted agent resumes its checks from the last pull without the
coordinator, and the results made before the kill arrive once.

The agent's time_scale is not reachable from its CLI, so the tests use several checks at the
shortest interval instead. The agent logs at debug level, where every delivered batch says how many
results the coordinator accepted: their sum must equal the rows in the coordinator's database.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import (
    Coordinator,
    HttpTarget,
    agent_command,
    clean_env,
    http_target,
    run,
    start_coordinator,
    stop_process,
)

pytestmark = pytest.mark.e2e

EMAIL = "ops@example.com"
CHECKS = 4
INTERVAL = 10  # seconds, the shortest a check may have
MIN_OUTAGE = 20.0  # seconds the coordinator stays away at least
# After an outage the agent's delivery backoff (full jitter, up to a minute) may wait a while.
DRAIN_TIMEOUT = 90.0
DELIVERED = re.compile(r"delivered \d+ results \((\d+) accepted, (\d+) duplicates, (\d+) rejected\)")


def wait_until(condition: Callable[[], bool], timeout: float, what: str, details: Callable[[], str]) -> None:
    """Polls `condition` every half second; fails with `what` and `details()` past `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s\n{details()}")
        time.sleep(0.5)


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


@dataclass(frozen=True)
class Row:
    result_id: str
    check_id: int
    started_at: float  # unix seconds


def coordinator_rows(coordinator: Coordinator) -> list[Row]:
    """Every row of the coordinator's `results` table, read from its SQLite file."""
    db = read_only(coordinator.database_file)
    try:
        rows = db.execute('SELECT result_id, "check", started_at FROM results').fetchall()
    finally:
        db.close()
    return [Row(str(rid), int(check), _unix(started)) for rid, check, started in rows]


def _unix(value: object) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


@dataclass
class Scenario:
    """One coordinator (restartable on its folder and port), one agent, CHECKS checks of a target."""

    tmp_path: Path
    target: HttpTarget
    coordinator: Coordinator
    agent_dir: Path = field(init=False)
    agent_env: dict[str, str] = field(init=False)
    agent_id: int = 0
    check_ids: list[int] = field(default_factory=list)
    agents: list[subprocess.Popen[str]] = field(default_factory=list)
    agent_logs: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.agent_dir = self.tmp_path / "agent"
        self.agent_dir.mkdir()
        # Debug: every delivered batch is logged with its counts. No status endpoint: no port to share.
        self.agent_env = clean_env({"HC_LOG_LEVEL": "debug", "HC_STATUS_ADDRESS": ""})

    # --- set-up ----------------------------------------------------------------------------------

    def register_agent_with_checks(self) -> None:
        c = self.coordinator
        c.cli("create-user", "--email", EMAIL, "--password", "s3cret-pass-e2e", "--org", "Acme")
        pat = c.cli("create-token", "--email", EMAIL, "--name", "e2e")
        with httpx.Client(base_url=c.url, headers={"Authorization": f"Bearer {pat}"}, timeout=10) as api:
            org_id = api.get("/api/users/me").json()["organizations"][0]["id"]
            minted = api.post(
                "/api/agents/registration-token",
                json={"name": "outage-probe", "mode": "private", "organization_id": org_id},
            )
            assert minted.status_code == 201, minted.text
            registered = run(
                agent_command("register", "--url", c.url, "--token", minted.json()["token"]),
                env=self.agent_env,
                cwd=self.agent_dir,
            )
            self.agent_id = int(registered.split("registered agent ", 1)[1].split()[0])
            for n in range(CHECKS):
                check = api.post(
                    "/api/checks/",
                    json={
                        "name": f"local site {n}",
                        "type": "uptime",
                        "url": f"{self.target.url}site-{n}",
                        "interval": INTERVAL,
                        "timeout": 5,
                        "assigned_agent_ids": [self.agent_id],
                    },
                )
                assert check.status_code == 201, check.text
                self.check_ids.append(check.json()["id"])

    # --- processes -------------------------------------------------------------------------------

    @property
    def agent(self) -> subprocess.Popen[str]:
        return self.agents[-1]

    def start_agent(self) -> None:
        log_file = self.agent_dir / f"agent-{len(self.agents) + 1}.log"
        with log_file.open("w") as log:
            process = subprocess.Popen(
                agent_command("run"),
                env=self.agent_env,
                cwd=self.agent_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.agents.append(process)
        self.agent_logs.append(log_file)

    def stop_coordinator(self) -> None:
        exit_code = self.coordinator.stop()
        assert exit_code == 0, self.coordinator.log()

    def restart_coordinator(self) -> None:
        self.coordinator = start_coordinator(self.coordinator.cwd, port=self.coordinator.port)

    def close(self) -> None:
        for process in self.agents:
            stop_process(process)
        self.coordinator.stop()

    # --- what each side holds --------------------------------------------------------------------

    def spool(self) -> list[Row]:
        """The results waiting in the agent's spool (its SQLite file, read while the agent runs)."""
        path = self.agent_dir / ".hc-agent" / "spool.db"
        if not path.exists():
            return []
        db = read_only(path)
        try:
            rows = db.execute("SELECT result_id, started_at, payload FROM results").fetchall()
        finally:
            db.close()
        return [Row(str(rid), int(json.loads(payload)["check_id"]), float(started)) for rid, started, payload in rows]

    def delivered(self) -> list[Row]:
        return [row for row in coordinator_rows(self.coordinator) if row.check_id in self.check_ids]

    def accepted_in_logs(self) -> int:
        """Results the coordinator accepted, summed over the delivery lines of every agent run."""
        return sum(int(m.group(1)) for log in self.agent_logs for m in DELIVERED.finditer(log.read_text()))

    def logs(self) -> str:
        parts = [f"--- {log.name}\n{log.read_text(errors='replace')[-6000:]}" for log in self.agent_logs]
        parts.append(f"--- coordinator\n{self.coordinator.log()[-4000:]}")
        return "\n".join(parts)

    # --- waiting ---------------------------------------------------------------------------------

    def assert_agent_alive(self) -> None:
        assert self.agent.poll() is None, f"the agent exited {self.agent.returncode}\n{self.logs()}"

    def wait_for_results_of_every_check(self) -> None:
        def every_check_delivered() -> bool:
            self.assert_agent_alive()
            return {row.check_id for row in self.delivered()} >= set(self.check_ids)

        # The first probe of a check comes within one interval of the start, at the check's offset.
        wait_until(every_check_delivered, 4 * INTERVAL, "a result of every check in the database", self.logs)

    def wait_for_spooled_results_since(self, since: float, outage_started: float) -> None:
        """Until the spool holds a result of every check started after `since`, and the outage
        has lasted MIN_OUTAGE seconds."""

        def spooled() -> bool:
            self.assert_agent_alive()
            fresh = {row.check_id for row in self.spool() if row.started_at > since}
            return fresh >= set(self.check_ids) and time.time() - outage_started >= MIN_OUTAGE

        wait_until(spooled, MIN_OUTAGE + 4 * INTERVAL, "results of every check in the spool", self.logs)

    def wait_for_drain(self, expected: set[str], outage_ended: float) -> None:
        """Until the spool is empty, every id of `expected` is in the coordinator's database, and
        every check has a result made after the outage there (delivery goes on as before)."""

        def drained() -> bool:
            self.assert_agent_alive()
            if self.spool():
                return False
            rows = self.delivered()
            after = {row.check_id for row in rows if row.started_at > outage_ended}
            return expected <= {row.result_id for row in rows} and after >= set(self.check_ids)

        wait_until(drained, DRAIN_TIMEOUT, "the spool drained into the coordinator", self.logs)

    def stop_agent(self) -> None:
        exit_code = stop_process(self.agent, timeout=15)
        assert exit_code == 0, self.logs()
        assert not self.spool(), f"results left in the spool after the stop\n{self.logs()}"

    # --- the verdict -----------------------------------------------------------------------------

    def assert_each_result_arrived_once(self, made_before: set[str]) -> list[Row]:
        rows = self.delivered()
        ids = [row.result_id for row in rows]
        assert len(ids) == len(set(ids)), "a result_id is in the results table twice"
        missing = made_before - set(ids)
        assert not missing, f"{len(missing)} spooled results never arrived\n{self.logs()}"
        # Every accepted result is one row, no more and no less: retries came back as duplicates.
        assert self.accepted_in_logs() == len(rows), self.logs()
        with read_only(self.coordinator.database_file) as db:
            sources = {
                str(source)
                for (source,) in db.execute(
                    f'SELECT DISTINCT source FROM results WHERE "check" IN ({",".join("?" * CHECKS)})',
                    self.check_ids,
                )
            }
        assert sources == {f"agent:{self.agent_id}"}
        return rows

    def assert_covers(self, rows: list[Row], start: float, end: float, what: str) -> None:
        for check_id in self.check_ids:
            inside = [row for row in rows if row.check_id == check_id and start < row.started_at < end]
            assert inside, f"check {check_id} has no result {what}\n{self.logs()}"

    def assert_no_gap(self, rows: list[Row], allowed: float) -> None:
        for check_id in self.check_ids:
            times = sorted(row.started_at for row in rows if row.check_id == check_id)
            gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
            assert gaps, f"check {check_id}: a single result {times}\n{self.logs()}"
            assert max(gaps) <= allowed, f"check {check_id}: gaps {gaps}\n{self.logs()}"


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    with http_target() as target:
        setup = Scenario(tmp_path, target, start_coordinator(tmp_path / "coordinator"))
        try:
            setup.register_agent_with_checks()
            yield setup
        finally:
            setup.close()


def test_a_coordinator_outage_loses_no_result(scenario: Scenario) -> None:
    scenario.start_agent()
    scenario.wait_for_results_of_every_check()

    outage_started = time.time()
    scenario.stop_coordinator()
    scenario.wait_for_spooled_results_since(outage_started, outage_started)
    made_in_outage = {row.result_id for row in scenario.spool()}
    outage_ended = time.time()
    scenario.restart_coordinator()

    scenario.wait_for_drain(made_in_outage, outage_ended)
    scenario.stop_agent()

    rows = scenario.assert_each_result_arrived_once(made_in_outage)
    scenario.assert_covers(rows, outage_started, outage_ended, "made during the outage")
    scenario.assert_covers(rows, outage_ended, time.time(), "after the outage")
    # One result a slot, the outage included: a gap of two intervals would be a lost result.
    scenario.assert_no_gap(rows, allowed=1.5 * INTERVAL)
    assert scenario.target.hits


def test_an_agent_killed_during_the_outage_keeps_its_spool(scenario: Scenario) -> None:
    scenario.start_agent()
    scenario.wait_for_results_of_every_check()

    outage_started = time.time()
    scenario.stop_coordinator()
    # Results made during the outage, before the kill: only the spool holds them.
    wait_until(
        lambda: {r.check_id for r in scenario.spool() if r.started_at > outage_started} >= set(scenario.check_ids),
        MIN_OUTAGE + 4 * INTERVAL,
        "results of every check in the spool",
        scenario.logs,
    )
    killed_at = time.time()
    assert stop_process(scenario.agent, signal.SIGKILL) == -signal.SIGKILL
    made_before_kill = {row.result_id for row in scenario.spool()}
    assert made_before_kill, "the spool lost its results to the kill"

    # Started again while the coordinator is away: it resumes the checks of its last pull.
    scenario.start_agent()
    restarted_at = time.time()
    scenario.wait_for_spooled_results_since(restarted_at, outage_started)
    assert made_before_kill <= {row.result_id for row in scenario.spool()}
    made_in_outage = {row.result_id for row in scenario.spool()}
    outage_ended = time.time()
    scenario.restart_coordinator()

    scenario.wait_for_drain(made_in_outage, outage_ended)
    scenario.stop_agent()

    rows = scenario.assert_each_result_arrived_once(made_in_outage)
    scenario.assert_covers(rows, outage_started, killed_at, "made before the kill")
    scenario.assert_covers(rows, restarted_at, outage_ended, "made by the restarted agent in the outage")
    scenario.assert_covers(rows, outage_ended, time.time(), "after the outage")
    # The slots missed are those of the agent's downtime only.
    scenario.assert_no_gap(rows, allowed=1.5 * INTERVAL + (restarted_at - killed_at))
