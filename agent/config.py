"""The agent's settings and its stored credentials.

Settings are read from four layers; a later layer wins:

    defaults  <  TOML file  <  environment (HC_<KEY>)  <  flags (the `overrides` argument)

The TOML file is flat: every key sits at the top level (`agent.example.toml` documents each one).
The environment variable of a key is `HC_` + the key in upper case (`HC_STATE_DIR`); lists are
comma-separated there (`HC_ALLOW_NETWORKS=10.0.0.0/8,192.168.0.0/16`). `HC_CONFIG` names the file when
no path is given. Relative paths are taken from the working directory.

Every value is validated in the layer it comes from, so an error can say where to fix it: the file
and line (found by scanning the file's text for `key =`: simple, and right for a flat file), the
environment variable, or the flag. `LoadedSettings.origins` keeps where each effective value came
from, for `hc-agent config check`. An unknown key in the file is a warning, not an error, so that an
older agent can read a newer agent's file.

The credentials the agent gets at registration live apart from the settings, in
`<state_dir>/agent.key` (JSON, mode 0600), written by `save_credentials`.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ENV_PREFIX = "HC_"
CONFIG_PATH_ENV = "HC_CONFIG"
KEY_FILE_NAME = "agent.key"
MAX_RESULTS_PER_REQUEST = 1000  # CONTRACT §3: the coordinator refuses bigger batches with 413


class ConfigError(Exception):
    """A configuration the agent cannot run with (the CLI exits with code 2).

    The message names the key and where it was set: `agent.toml:12: concurrency: …`,
    `environment variable HC_CONCURRENCY: …` or `--concurrency: …`.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        path: Path | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.path = path
        self.line = line
        self.column = column


@dataclass(frozen=True)
class AgentSettings:
    """The effective settings of one agent process."""

    coordinator_urls: tuple[str, ...] = ()
    state_dir: Path = Path(".hc-agent")
    name: str = ""  # "" = the machine's hostname
    concurrency: int = 200
    spool_max_age: float = 24 * 3600.0  # seconds
    spool_max_bytes: int = 100_000_000
    log_level: str = "info"
    log_format: str = "text"
    status_address: str = "127.0.0.1:9108"  # "" = no local status endpoint
    allow_networks: tuple[IPNetwork, ...] = ()
    deny_networks: tuple[IPNetwork, ...] = ()
    http_proxy: str = ""  # "" = none configured (httpx still honours HTTPS_PROXY & co.)
    ca_file: Path | None = None  # None = httpx's CA bundle (certifi, or SSL_CERT_FILE)
    request_timeout: float = 10.0
    results_batch_size: int = MAX_RESULTS_PER_REQUEST
    results_flush_interval: float = 1.0  # and at once when a check's outcome changes

    @property
    def coordinator_url(self) -> str | None:
        """The first coordinator; the others are for fail-over."""
        return self.coordinator_urls[0] if self.coordinator_urls else None

    @property
    def key_file(self) -> Path:
        return self.state_dir / KEY_FILE_NAME

    @property
    def spool_file(self) -> Path:
        return self.state_dir / "spool.db"

    @property
    def checks_file(self) -> Path:
        """The last check list pulled, so a restart during an outage keeps probing."""
        return self.state_dir / "checks.json"


@dataclass(frozen=True)
class Origin:
    """Where one effective value came from."""

    kind: Literal["default", "file", "env", "flag"]
    name: str = ""  # the key in the file, the environment variable or the flag
    path: Path | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.kind == "file":
            where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
            return f"{where} ({self.name})"
        if self.kind == "env":
            return f"environment variable {self.name}"
        if self.kind == "flag":
            return _flag_name(self.name)
        return "default"


@dataclass(frozen=True)
class LoadedSettings:
    settings: AgentSettings
    origins: dict[str, Origin]  # setting name -> where its value came from
    warnings: list[str] = field(default_factory=list)
    config_path: Path | None = None


# --- value parsers: raw value -> typed value, or ValueError with a message for the operator -------
#
# `textual` is true when the value came as text (environment, a string flag): then "200" is a
# number and "a,b" a list. A TOML file has types of its own, so there a string is not a number.

Parser = Callable[[object, bool], object]


def _describe(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def _parse_str(value: object, textual: bool) -> object:
    if isinstance(value, Path):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_describe(value)}")
    return value


def _parse_int(minimum: int, maximum: int | None = None) -> Parser:
    def parse(value: object, textual: bool) -> object:
        if textual and isinstance(value, str):
            try:
                value = int(value.strip().replace("_", ""))
            except ValueError:
                raise ValueError(f"expected an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_describe(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise ValueError(f"must be {bounds}, got {value}")
        return value

    return parse


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "kib": 2**10,
    "m": 10**6, "mb": 10**6, "mib": 2**20,
    "g": 10**9, "gb": 10**9, "gib": 2**30,
}  # fmt: skip
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in `text`: "90", "90s", "15m", "24h", "1d", "1h30m", "250ms"."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", text):
        raise ValueError(f'expected a duration such as 90, "15m" or "24h", got {text!r}')
    return sum(float(number) * _DURATION_UNITS[unit.lower()] for number, unit in parts)


def parse_size(text: str) -> int:
    """Bytes in `text`: "1048576", "512k", "100MB" (decimal), "100MiB" (binary)."""
    match = _SIZE_RE.fullmatch(text)
    if match is None or match[2].lower() not in _SIZE_UNITS:
        raise ValueError(f'expected a size such as 1048576, "512kB" or "100MB", got {text!r}')
    return int(float(match[1]) * _SIZE_UNITS[match[2].lower()])


def _parse_duration(value: object, textual: bool) -> object:
    if isinstance(value, str):
        seconds = parse_duration(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f'expected seconds or a duration such as "24h", got {_describe(value)}')
    if seconds <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return seconds


def _parse_size(value: object, textual: bool) -> object:
    if isinstance(value, str):
        size = parse_size(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        raise ValueError(f'expected bytes or a size such as "100MB", got {_describe(value)}')
    if size <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return size


def _parse_choice(*choices: str) -> Parser:
    def parse(value: object, textual: bool) -> object:
        text = str(_parse_str(value, textual)).strip().lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


def _parse_list(item: Callable[[str], object]) -> Parser:
    def parse(value: object, textual: bool) -> object:
        if textual and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of strings, got {_describe(value)}")
        return tuple(item(v) for v in value)

    return parse


def _network(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text.strip())
    except ValueError as exc:
        raise ValueError(f"not a network in CIDR notation: {exc}") from None


def _http_url(text: str) -> str:
    text = text.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return text.rstrip("/")


def _parse_url(value: object, textual: bool) -> object:
    return (_http_url(str(_parse_str(value, textual))),)


def _parse_proxy(value: object, textual: bool) -> object:
    text = str(_parse_str(value, textual)).strip()
    if text and not urlsplit(text).hostname:
        raise ValueError(f"expected a proxy URL such as http://proxy:3128, got {text!r}")
    return text


def _parse_path(value: object, textual: bool) -> object:
    return Path(str(_parse_str(value, textual)))


def _parse_ca_file(value: object, textual: bool) -> object:
    text = str(_parse_str(value, textual))
    if not text:
        return None
    if not Path(text).is_file():
        raise ValueError(f"no such file: {text}")
    return Path(text)


def _parse_address(value: object, textual: bool) -> object:
    text = str(_parse_str(value, textual)).strip()
    if not text:
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'expected "host:port" (or "" to disable), got {text!r}')
    return text


_PARSERS: dict[str, Parser] = {
    "coordinator_urls": _parse_list(_http_url),
    "state_dir": _parse_path,
    "name": _parse_str,
    "concurrency": _parse_int(1),
    "spool_max_age": _parse_duration,
    "spool_max_bytes": _parse_size,
    "log_level": _parse_choice("debug", "info", "warning", "error", "critical"),
    "log_format": _parse_choice("text", "json"),
    "status_address": _parse_address,
    "allow_networks": _parse_list(_network),
    "deny_networks": _parse_list(_network),
    "http_proxy": _parse_proxy,
    "ca_file": _parse_ca_file,
    "request_timeout": _parse_duration,
    "results_batch_size": _parse_int(1, MAX_RESULTS_PER_REQUEST),
    "results_flush_interval": _parse_duration,
}
# `coordinator_url = "…"` is the one-coordinator spelling of `coordinator_urls = ["…"]`.
_ALIASES = {"coordinator_url": "coordinator_urls"}
_PARSERS_BY_KEY: dict[str, Parser] = {**_PARSERS, "coordinator_url": _parse_url}


# --- loading -------------------------------------------------------------------------------------


def load_settings(
    config_path: Path | None,
    overrides: Mapping[str, object],
    environ: Mapping[str, str],
) -> LoadedSettings:
    """The effective settings: flags (`overrides`) > environment > file > defaults.

    An override whose value is None is ignored (a flag that was not given). Raises ConfigError.
    """
    values: dict[str, Any] = {}  # each parser returns its field's type
    origins = {f.name: Origin("default") for f in fields(AgentSettings)}
    warnings: list[str] = []

    if config_path is None and environ.get(CONFIG_PATH_ENV):
        config_path = Path(environ[CONFIG_PATH_ENV])
    if config_path is not None:
        text, table = _read_toml(config_path)
        layer: dict[str, tuple[object, Origin]] = {}
        for key, raw in table.items():
            line = _key_line(text, key)
            if key not in _PARSERS_BY_KEY:
                warnings.append(_unknown_key_warning(config_path, line, key))
                continue
            origin = Origin("file", key, config_path, line)
            layer[key] = (_parse(key, raw, textual=False, origin=origin), origin)
        _apply(layer, values, origins)

    env_layer = {}
    for key in _PARSERS_BY_KEY:
        env_name = ENV_PREFIX + key.upper()
        if env_name in environ:
            origin = Origin("env", env_name)
            env_layer[key] = (_parse(key, environ[env_name], textual=True, origin=origin), origin)
    _apply(env_layer, values, origins)

    flag_layer = {}
    for key, raw in overrides.items():
        if raw is None:
            continue
        if key not in _PARSERS_BY_KEY:
            raise ValueError(f"unknown setting {key!r}")  # a bug in the caller, not in the config
        origin = Origin("flag", key)
        flag_layer[key] = (_parse(key, raw, textual=isinstance(raw, str), origin=origin), origin)
    _apply(flag_layer, values, origins)

    settings = AgentSettings(**values)
    return LoadedSettings(settings, origins, warnings, config_path)


def _read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}", path=path) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.14 and tomli >= 2.1 carry lineno/colno; older tomllib only has them in the text.
        message = str(exc)
        line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        match = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
        if match is not None:
            line, column = line or int(match[1]), column or int(match[2])
            message = message[: match.start()] + message[match.end() :]
        where = f"{path}:{line}:{column}" if line is not None else str(path)
        raise ConfigError(f"{where}: invalid TOML: {message}", path=path, line=line, column=column) from None


def _key_line(text: str, key: str) -> int | None:
    """The 1-based line where `key = …` is written, found by scanning the text (the file is flat)."""
    pattern = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*=""")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    # A table (`[key]`) is not a setting, but point at it all the same.
    table = re.compile(rf"^\s*\[+\s*{re.escape(key)}\s*[\].]")
    for number, line in enumerate(text.splitlines(), start=1):
        if table.match(line):
            return number
    return None


def _unknown_key_warning(path: Path, line: int | None, key: str) -> str:
    where = f"{path}:{line}" if line is not None else str(path)
    message = f"{where}: unknown key {key!r} (ignored)"
    close = difflib.get_close_matches(key, _PARSERS_BY_KEY, n=1)
    return f"{message}; did you mean {close[0]!r}?" if close else message


def _parse(key: str, raw: object, *, textual: bool, origin: Origin) -> object:
    try:
        return _PARSERS_BY_KEY[key](raw, textual)
    except ValueError as exc:
        if origin.kind == "file":
            where = f"{origin.path}:{origin.line}" if origin.line is not None else str(origin.path)
            raise ConfigError(f"{where}: {key}: {exc}", key=key, path=origin.path, line=origin.line) from None
        raise ConfigError(f"{origin}: {exc}", key=key) from None


def _apply(layer: dict[str, tuple[object, Origin]], values: dict[str, Any], origins: dict[str, Origin]) -> None:
    for alias, target in _ALIASES.items():
        if alias in layer and target in layer:
            first, second = layer[alias][1], layer[target][1]
            raise ConfigError(
                f"{first} and {second} both name the coordinator; keep one",
                key=alias,
                path=first.path,
                line=first.line,
            )
    for key, (value, origin) in layer.items():
        name = _ALIASES.get(key, key)
        values[name] = value
        origins[name] = origin


def _flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


# --- showing the effective settings ---------------------------------------------------------------


def mask_url(url: str) -> str:
    """`url` with the password of its user part replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def mask_secret(secret: str) -> str:
    """Enough of a key to tell two apart, not enough to use it: `agk_…3f9a`."""
    prefix = secret[:4] if secret[3:4] == "_" else ""
    return f"{prefix}…{secret[-4:]}" if len(secret) >= 12 else "***"


def _toml_value(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if value is None:
        return '""'
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def effective_settings(loaded: LoadedSettings) -> list[tuple[str, str, str]]:
    """(key, value as TOML, origin) per setting, secrets masked: what `hc-agent config check` prints."""
    settings = loaded.settings
    rows = []
    for f in fields(AgentSettings):
        value = getattr(settings, f.name)
        if f.name == "http_proxy":
            value = mask_url(value)
        elif f.name == "coordinator_urls":
            value = tuple(mask_url(url) for url in value)
        rows.append((f.name, _toml_value(value), str(loaded.origins[f.name])))
    return rows


# --- credentials ----------------------------------------------------------------------------------


class Credentials(msgspec.Struct, frozen=True, kw_only=True):
    """What registration gave this agent (CONTRACT §3)."""

    agent_id: int
    api_key: str
    coordinator_url: str
    name: str | None = None
    # What the coordinator asked for at registration; each heartbeat's answer may change it.
    heartbeat_interval: int | None = None

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return (
            f"Credentials(agent_id={self.agent_id}, api_key={mask_secret(self.api_key)!r}, "
            f"coordinator_url={self.coordinator_url!r}, name={self.name!r})"
        )


def save_credentials(state_dir: Path, creds: Credentials) -> Path:
    """Write `<state_dir>/agent.key` atomically, readable by its owner only; returns its path.

    The temporary file is created with mode 0600 (mkstemp does), so the key is never readable by
    anyone else, not even for the moment between create and chmod; os.replace then swaps it in
    whole, so a crash leaves the old file or the new one, never half of one.
    """
    return write_private(state_dir / KEY_FILE_NAME, msgspec.json.format(msgspec.json.encode(creds)) + b"\n")


def write_private(target: Path, data: bytes) -> Path:
    """Writes `target` atomically with mode 0600 in a 0700 folder (for keys and check secrets)."""
    folder = target.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(folder)
    return target


def load_credentials(state_dir: Path) -> Credentials | None:
    """The stored credentials, or None when this agent has not registered yet."""
    path = state_dir / KEY_FILE_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the agent key: {exc}", path=path) from None
    try:
        creds = msgspec.json.decode(data, type=Credentials)
    except msgspec.DecodeError as exc:
        raise ConfigError(
            f"{path}: the agent key file is damaged ({exc}); register the agent again", path=path
        ) from None
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users; it holds the agent's key (chmod 600 it)", path)
    return creds


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
