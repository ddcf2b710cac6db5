"""`hc-coordinator` as operators run it: real processes, exit codes of CONTRACT §1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent


def hc(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # The caller's HC_DATABASE_URL, if any, must not leak in: each test names its own database.
    full_env = {k: v for k, v in os.environ.items() if k != "HC_DATABASE_URL"} | (env or {})
    return subprocess.run(
        [str(BIN / "hc-coordinator"), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60
    )


def test_create_user_with_no_configuration_uses_sqlite_under_hc_data(tmp_path: Path) -> None:
    done = hc("create-user", "--email", "ops@example.com", "--password", "long-enough", "--org", "Acme", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    database = tmp_path / ".hc-data" / "coordinator.db"
    assert database.exists()
    assert oct(database.parent.stat().st_mode & 0o777) == "0o700"


def test_create_user_joins_an_existing_organization_with_a_role(database_url: str, tmp_path: Path) -> None:
    env = {"HC_DATABASE_URL": database_url}
    first = hc(
        "create-user",
        "--email",
        "owner@example.com",
        "--password",
        "long-enough",
        "--org",
        "Acme",
        cwd=tmp_path,
        env=env,
    )
    second = hc(
        "create-user",
        "--email",
        "viewer@example.com",
        "--password",
        "long-enough",
        "--org",
        "Acme",
        "--role",
        "viewer",
        cwd=tmp_path,
        env=env,
    )
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert int(second.stdout) == int(first.stdout) + 1
    token = hc("create-token", "--email", "viewer@example.com", "--name", "ci", cwd=tmp_path, env=env)
    assert token.returncode == 0, token.stderr
    assert token.stdout.strip().startswith("pat_")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["create-user", "--email", "not-an-email", "--password", "long-enough"], 1, "not an email address"),
        (["create-user", "--email", "a@example.com", "--password", "short"], 1, "at least 8 characters"),
        (["create-user", "--email", "a@example.com"], 2, "--password"),
        (["create-user", "--email", "a@example.com", "--password", "long-enough", "--role", "boss"], 2, "--role"),
        (["create-token", "--email", "ghost@example.com"], 1, "no user with email ghost@example.com"),
        (["serve", "--port", "70000"], 2, "--port"),
        (["frobnicate"], 2, "No such command"),
    ],
)
def test_mistakes_exit_with_the_contract_code_and_a_message(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    done = hc(*args, cwd=tmp_path)
    assert done.returncode == code, done.stderr
    assert message in done.stderr


def test_an_existing_user_is_not_created_twice(tmp_path: Path) -> None:
    args = ("create-user", "--email", "ops@example.com", "--password", "long-enough")
    assert hc(*args, cwd=tmp_path).returncode == 0
    again = hc(*args, cwd=tmp_path)
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_an_unusable_database_url_exits_2_naming_the_variable(tmp_path: Path) -> None:
    done = hc("migrate", cwd=tmp_path, env={"HC_DATABASE_URL": "mysql://db/hc"})
    assert done.returncode == 2
    assert "HC_DATABASE_URL" in done.stderr


def test_an_unreachable_postgresql_exits_1(tmp_path: Path) -> None:
    done = hc("migrate", cwd=tmp_path, env={"HC_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert done.returncode == 1
    assert "cannot reach the database" in done.stderr


def test_serve_answers_healthz_and_the_openapi_document(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ}
    env.pop("HC_DATABASE_URL", None)
    server = subprocess.Popen(
        [str(BIN / "hc-coordinator"), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        health = None
        for _ in range(300):
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if server.poll() is not None:
                    break
                import time

                time.sleep(0.1)
        assert health is not None, server.stdout.read().decode() if server.stdout else ""
        assert health.status_code == 200
        assert health.json()["database"] == "ok"
        schema = httpx.get(f"http://127.0.0.1:{port}/schema/openapi.json", timeout=5)
        assert schema.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/schema/swagger", timeout=5).status_code == 200
    finally:
        server.terminate()
        assert server.wait(timeout=15) == 0
