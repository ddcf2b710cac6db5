"""Coordinator settings: read from `HC_*` environment variables, then overridden by CLI flags.

Settings are a frozen dataclass built once; nothing reads the environment after start-up, so a
test sets the environment (or builds `Settings` directly) before it creates the app.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_DATA_DIR = ".hc-data"


class SettingsError(ValueError):
    """A setting has a value the coordinator cannot use; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    # Signs session JWTs. When empty, one is generated once and kept in the database, so that
    # every coordinator sharing a database accepts the others' sessions.
    secret_key: str = ""
    jwt_ttl_seconds: int = 12 * 3600
    login_attempts_per_minute: int = 10
    login_attempts_per_minute_per_address: int = 30
    max_request_bytes: int = 1_048_576
    # Clients behind these proxies may name their address in X-Forwarded-For.
    trusted_proxies: tuple[str, ...] = ()
    central_allow_private: bool = False
    results_retention_days: int = 30
    log_level: str = "info"
    # Seconds between an agent's heartbeats; it is offline once three of them are missed.
    agent_heartbeat_interval: int = 30
    # After a key rotation the previous key keeps working this long, so the agent can switch over.
    agent_key_overlap_seconds: int = 600
    # How often the background jobs look for agents gone offline (and, hourly, prune old results).
    agent_jobs_interval_seconds: float = 5.0
    # Central execution: how often the coordinator looks for checks of its own that are due, and
    # how many of its probes may run at once.
    central_jobs_interval_seconds: float = 1.0
    central_concurrency: int = 50

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r}: must be at least {minimum}")
    return value


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r}: expected true or false")


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'coordinator.db'}"


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("HC_DATA_DIR") or DEFAULT_DATA_DIR)
    database_url = env.get("HC_DATABASE_URL") or default_database_url(data_dir)
    check_database_url(database_url)
    proxies = tuple(p.strip() for p in env.get("HC_TRUSTED_PROXIES", "").split(",") if p.strip())
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        secret_key=env.get("HC_SECRET_KEY", ""),
        jwt_ttl_seconds=_int(env, "HC_JWT_TTL_SECONDS", 12 * 3600, minimum=60),
        login_attempts_per_minute=_int(env, "HC_LOGIN_ATTEMPTS_PER_MINUTE", 10, minimum=1),
        login_attempts_per_minute_per_address=_int(env, "HC_LOGIN_ATTEMPTS_PER_MINUTE_PER_ADDRESS", 30, minimum=1),
        max_request_bytes=_int(env, "HC_MAX_REQUEST_BYTES", 1_048_576, minimum=1024),
        trusted_proxies=proxies,
        central_allow_private=_bool(env, "HC_CENTRAL_ALLOW_PRIVATE", False),
        results_retention_days=_int(env, "HC_RESULTS_RETENTION_DAYS", 30, minimum=1),
        log_level=env.get("HC_LOG_LEVEL", "info").lower(),
        agent_heartbeat_interval=_int(env, "HC_AGENT_HEARTBEAT_INTERVAL", 30, minimum=5),
        agent_key_overlap_seconds=_int(env, "HC_AGENT_KEY_OVERLAP_SECONDS", 600, minimum=0),
        agent_jobs_interval_seconds=float(_int(env, "HC_AGENT_JOBS_INTERVAL_SECONDS", 5, minimum=1)),
        central_jobs_interval_seconds=float(_int(env, "HC_CENTRAL_JOBS_INTERVAL_SECONDS", 1, minimum=1)),
        central_concurrency=_int(env, "HC_CENTRAL_CONCURRENCY", 50, minimum=1),
    )


def check_database_url(url: str) -> None:
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return
    if url.startswith(("postgresql://", "postgres://")):
        return
    raise SettingsError(f"HC_DATABASE_URL={url!r}: expected sqlite:///path/file.db or postgresql://user@host:port/db")
