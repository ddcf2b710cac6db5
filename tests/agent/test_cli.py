"""`hc-agent` through typer's CliRunner and as a real process: probe, register, run, version.

The probe target is a real aiohttp server on a thread of its own (the command runs its own event
loop); the coordinator at registration is mocked with respx in-process, or absent.
"""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import subprocess
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import respx
from typer.testing import CliRunner

from agent.cli import app
from agent.config import Credentials, load_credentials, save_credentials
from agent.logs import configure_logging
from tests.e2e.processes import agent_command, clean_env, free_port, http_target

COORDINATOR = "http://coordinator.test"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Runs commands in an empty folder, with no HC_* settings from the machine."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("HC_"):
            monkeypatch.delenv(name)
    return CliRunner()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The commands set up the root logger; the next test gets it back as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with http_target() as server:
        yield server.url


# --- probe ---------------------------------------------------------------------------------------


def test_probe_prints_a_table_with_status_and_timings(runner: CliRunner, target: str) -> None:
    result = runner.invoke(app, ["probe", target])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    assert "200" in result.output
    assert "connect" in result.output


def test_probe_json_prints_the_result_alone(runner: CliRunner, target: str) -> None:
    result = runner.invoke(app, ["probe", target, "--json", "--timeout", "5"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["success"] is True
    assert body["status_code"] == 200
    assert set(body["details"]["timings"]) >= {"connect", "ttfb"}


def test_a_failed_probe_exits_1_with_the_reason(runner: CliRunner) -> None:
    result = runner.invoke(app, ["probe", f"http://127.0.0.1:{free_port()}/"])
    assert result.exit_code == 1
    assert "FAILED" in result.output
    assert "connection refused" in result.output


def test_probe_tcp_takes_host_and_port(runner: CliRunner, target: str) -> None:
    port = target.rstrip("/").rsplit(":", 1)[1]
    result = runner.invoke(app, ["probe", "tcp", "127.0.0.1", port, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["success"] is True


@pytest.mark.parametrize(
    "args",
    [
        ["probe", "ftp://example.com/"],
        ["probe", "tcp", "127.0.0.1"],
        ["probe", "dns"],
        ["probe", "icmp", "a", "b"],
    ],
)
def test_probe_with_bad_arguments_exits_2(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2


def test_probe_runs_as_a_process_with_json_alone_on_stdout(target: str, tmp_path: Path) -> None:
    done = subprocess.run(
        agent_command("probe", target, "--json"),
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status_code"] == 200


def test_probe_runs_as_a_process_and_prints_a_table(target: str, tmp_path: Path) -> None:
    done = subprocess.run(
        agent_command("probe", target),
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "response time" in done.stdout


# --- configuration -------------------------------------------------------------------------------


def test_malformed_toml_exits_2_naming_file_line_and_column(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('name = "probe"\nconcurrency = = 3\n')
    done = subprocess.run(
        agent_command("run", "--config", str(config)),
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{config}:2:" in done.stderr
    assert "invalid TOML" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_bad_value_exits_2_naming_the_line_and_key(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("# comment\nconcurrency = 0\n")
    result = runner.invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert f"{config}:2: concurrency: must be at least 1" in result.output


def test_an_unknown_key_is_a_warning_and_an_unregistered_agent_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\nconcurrancy = 10\n')
    result = runner.invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert "unknown key 'concurrancy' (ignored); did you mean 'concurrency'?" in result.stderr
    assert "not registered" in result.stderr


# --- register ------------------------------------------------------------------------------------


def test_register_stores_the_key_readable_by_its_owner_only(runner: CliRunner, tmp_path: Path) -> None:
    answer = {
        "agent_id": 7,
        "api_key": "agk_secret_0123456789",
        "name": "dc1-probe",
        "mode": "private",
        "organization_id": 1,
        "location_id": None,
        "heartbeat_interval": 30,
    }
    with respx.mock() as mock:
        route = mock.post(f"{COORDINATOR}/api/agents/register").respond(201, json=answer)
        result = runner.invoke(app, ["register", "--url", COORDINATOR, "--token", "reg_abc", "--name", "dc1-probe"])
    assert result.exit_code == 0, result.output
    assert "registered agent 7 'dc1-probe'" in result.output
    sent = json.loads(route.calls.last.request.content)
    assert sent["token"] == "reg_abc"
    assert sent["name"] == "dc1-probe"
    assert sent["capabilities"] == ["http", "tcp", "udp", "dns", "icmp"]
    key_file = tmp_path / ".hc-agent" / "agent.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_credentials(key_file.parent) == Credentials(
        agent_id=7,
        api_key="agk_secret_0123456789",
        coordinator_url=COORDINATOR,
        name="dc1-probe",
        heartbeat_interval=30,
    )


def test_register_with_a_used_token_exits_1_saying_so(runner: CliRunner, tmp_path: Path) -> None:
    with respx.mock() as mock:
        mock.post(f"{COORDINATOR}/api/agents/register").respond(
            401, json={"status_code": 401, "detail": "registration token already used"}
        )
        result = runner.invoke(app, ["register", "--url", COORDINATOR, "--token", "reg_used"])
    assert result.exit_code == 1
    assert "registration token already used" in result.stderr
    assert not (tmp_path / ".hc-agent" / "agent.key").exists()


def test_register_with_an_unreachable_coordinator_exits_1_saying_so(tmp_path: Path) -> None:
    done = subprocess.run(
        agent_command("register", "--url", f"http://127.0.0.1:{free_port()}", "--token", "reg_abc"),
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot register" in done.stderr
    assert "connection refused" in done.stderr
    assert "Traceback" not in done.stderr


def test_register_refuses_to_replace_a_key_without_force(runner: CliRunner, tmp_path: Path) -> None:
    save_credentials(
        tmp_path / ".hc-agent",
        Credentials(agent_id=3, api_key="agk_old_0123456789", coordinator_url=COORDINATOR),
    )
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{COORDINATOR}/api/agents/register").respond(500)
        result = runner.invoke(app, ["register", "--url", COORDINATOR, "--token", "reg_abc"])
    assert result.exit_code == 1
    assert "already registered as agent 3" in result.stderr
    assert not route.called  # the single-use token was not spent


def test_register_with_a_bad_url_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["register", "--url", "coordinator.test", "--token", "reg_abc"])
    assert result.exit_code == 2


# --- logging -------------------------------------------------------------------------------------


def test_json_logs_are_one_object_a_line_with_the_extra_fields() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    logging.getLogger("agent.test").info("delivered %d results", 3, extra={"check_id": 5})
    logging.getLogger("agent.test").debug("below the level")

    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == "delivered 3 results"
    assert entry["level"] == "info"
    assert entry["logger"] == "agent.test"
    assert entry["check_id"] == 5


# --- version -------------------------------------------------------------------------------------


def test_version_prints_the_package_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"hc-agent {metadata.version('systeam-healthchecks')}"
