"""agent.config: layered settings, their origins, errors that point at the line, the key file."""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import fields
from pathlib import Path

import pytest

from agent.config import (
    AgentSettings,
    ConfigError,
    Credentials,
    effective_settings,
    load_credentials,
    load_settings,
    mask_secret,
    mask_url,
    parse_duration,
    parse_size,
    save_credentials,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and the example file ----------------------------------------------------------------


def test_defaults_apply_when_nothing_is_set() -> None:
    loaded = load_settings(None, {}, {})

    s = loaded.settings
    assert s.coordinator_urls == ()
    assert s.coordinator_url is None
    assert s.state_dir == Path(".hc-agent")
    assert s.concurrency == 200
    assert s.spool_max_age == 24 * 3600
    assert s.spool_max_bytes == 100_000_000
    assert (s.log_level, s.log_format) == ("info", "text")
    assert s.status_address == "127.0.0.1:9108"
    assert s.ca_file is None
    assert s.key_file == Path(".hc-agent/agent.key")
    assert {str(o) for o in loaded.origins.values()} == {"default"}
    assert loaded.warnings == []


def test_example_file_documents_every_key_with_its_default() -> None:
    example = REPO_ROOT / "agent.example.toml"

    loaded = load_settings(example, {}, {})

    assert loaded.warnings == []
    assert loaded.settings == AgentSettings()
    from_file = {name for name, origin in loaded.origins.items() if origin.kind == "file"}
    assert from_file == {f.name for f in fields(AgentSettings)}, "a key is missing from agent.example.toml"
    # The one-coordinator spelling is documented in a comment (setting both is an error).
    assert "coordinator_url =" in example.read_text()


# --- layers and origins ---------------------------------------------------------------------------


def test_file_values_are_loaded_and_their_line_recorded(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '# comment\nname = "probe-1"\nconcurrency = 50\n'
        'allow_networks = ["10.0.0.0/8", "fd00::/8"]\nspool_max_age = "2h"\nspool_max_bytes = "1MiB"\n',
    )

    loaded = load_settings(path, {}, {})

    s = loaded.settings
    assert s.name == "probe-1"
    assert s.concurrency == 50
    assert s.allow_networks == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    assert s.spool_max_age == 7200
    assert s.spool_max_bytes == 1024 * 1024
    assert loaded.origins["concurrency"].line == 3
    assert str(loaded.origins["name"]) == f"{path}:2 (name)"
    assert loaded.origins["log_level"].kind == "default"


def test_environment_beats_file_and_flags_beat_environment(tmp_path: Path) -> None:
    path = write(tmp_path, 'concurrency = 50\nname = "from-file"\nlog_level = "debug"\n')
    environ = {"HC_CONCURRENCY": "60", "HC_NAME": "from-env", "HC_DATABASE_URL": "sqlite:///x.db"}

    loaded = load_settings(path, {"name": "from-flag", "log_format": None}, environ)

    assert loaded.settings.concurrency == 60
    assert str(loaded.origins["concurrency"]) == "environment variable HC_CONCURRENCY"
    assert loaded.settings.name == "from-flag"
    assert str(loaded.origins["name"]) == "--name"
    assert loaded.settings.log_level == "debug"
    assert loaded.origins["log_level"].kind == "file"
    # A flag that was not given (None) leaves the lower layers alone.
    assert loaded.origins["log_format"].kind == "default"


def test_environment_values_are_parsed_from_text() -> None:
    environ = {
        "HC_COORDINATOR_URLS": "https://a.example.com/, https://b.example.com",
        "HC_DENY_NETWORKS": "169.254.169.254/32,10.0.0.0/8",
        "HC_SPOOL_MAX_AGE": "1h30m",
        "HC_SPOOL_MAX_BYTES": "5MB",
        "HC_LOG_FORMAT": "JSON",
        "HC_STATE_DIR": "/var/lib/hc-agent",
        "HC_STATUS_ADDRESS": "",
    }

    s = load_settings(None, {}, environ).settings

    assert s.coordinator_urls == ("https://a.example.com", "https://b.example.com")
    assert s.coordinator_url == "https://a.example.com"
    assert len(s.deny_networks) == 2
    assert s.spool_max_age == 5400
    assert s.spool_max_bytes == 5_000_000
    assert s.log_format == "json"
    assert s.state_dir == Path("/var/lib/hc-agent")
    assert s.status_address == ""  # the status endpoint is disabled


def test_single_coordinator_url_is_the_list_of_one(tmp_path: Path) -> None:
    path = write(tmp_path, 'coordinator_urls = ["https://a.example.com", "https://b.example.com"]\n')

    loaded = load_settings(path, {}, {"HC_COORDINATOR_URL": "https://c.example.com"})

    assert loaded.settings.coordinator_urls == ("https://c.example.com",)
    assert str(loaded.origins["coordinator_urls"]) == "environment variable HC_COORDINATOR_URL"


def test_both_spellings_of_the_coordinator_in_one_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, 'coordinator_url = "https://a.example.com"\ncoordinator_urls = []\n')

    with pytest.raises(ConfigError, match=r"agent\.toml:1 \(coordinator_url\) and .*agent\.toml:2"):
        load_settings(path, {}, {})


def test_config_path_can_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "concurrency = 7\n")

    loaded = load_settings(None, {}, {"HC_CONFIG": str(path)})

    assert loaded.settings.concurrency == 7
    assert loaded.config_path == path


def test_flags_take_typed_values_and_text(tmp_path: Path) -> None:
    s = load_settings(None, {"state_dir": tmp_path, "concurrency": 3, "spool_max_age": "10m"}, {}).settings

    assert (s.state_dir, s.concurrency, s.spool_max_age) == (tmp_path, 3, 600)


def test_an_unknown_flag_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="concurency"):
        load_settings(None, {"concurency": 3}, {})


# --- errors and warnings --------------------------------------------------------------------------


def test_malformed_toml_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "a"\nconcurrency = = 3\n')

    with pytest.raises(ConfigError) as caught:
        load_settings(path, {}, {})

    assert str(caught.value).startswith(f"{path}:2:15: invalid TOML: ")
    assert (caught.value.line, caught.value.column) == (2, 15)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", {}, {})


@pytest.mark.parametrize(
    ("text", "key", "line", "problem"),
    [
        ('name = "x"\n\nconcurrency = "many"\n', "concurrency", 3, "expected an integer, got 'many' (str)"),
        ("concurrency = 0\n", "concurrency", 1, "must be at least 1, got 0"),
        ("concurrency = true\n", "concurrency", 1, "expected an integer"),
        ('deny_networks = ["10.0.0.1/8"]\n', "deny_networks", 1, "has host bits set"),
        ('allow_networks = ["not-a-net"]\n', "allow_networks", 1, "not a network in CIDR notation"),
        ('allow_networks = "10.0.0.0/8"\n', "allow_networks", 1, "expected a list of strings"),
        ('log_format = "xml"\n', "log_format", 1, "expected one of text, json, got 'xml'"),
        ('coordinator_url = "ftp://x"\n', "coordinator_url", 1, "expected an http:// or https:// URL"),
        ('status_address = "localhost"\n', "status_address", 1, 'expected "host:port"'),
        ('spool_max_age = "soon"\n', "spool_max_age", 1, "expected a duration"),
        ('spool_max_bytes = "lots"\n', "spool_max_bytes", 1, "expected a size"),
        ("results_batch_size = 5000\n", "results_batch_size", 1, "between 1 and 1000"),
        ('ca_file = "missing.pem"\n', "ca_file", 1, "no such file: missing.pem"),
    ],
)
def test_a_bad_value_names_key_file_and_line(
    tmp_path: Path, text: str, key: str, line: int, problem: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_settings(path, {}, {})

    assert str(caught.value).startswith(f"{path}:{line}: {key}: ")
    assert problem in str(caught.value)
    assert (caught.value.key, caught.value.path, caught.value.line) == (key, path, line)


def test_a_bad_value_is_an_error_even_when_a_higher_layer_overrides_it(tmp_path: Path) -> None:
    path = write(tmp_path, 'log_format = "xml"\n')

    with pytest.raises(ConfigError, match="log_format"):
        load_settings(path, {}, {"HC_LOG_FORMAT": "json"})


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^environment variable HC_CONCURRENCY: expected an integer"):
        load_settings(None, {}, {"HC_CONCURRENCY": "lots"})


def test_a_bad_flag_names_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--log-level: expected one of"):
        load_settings(None, {"log_level": "loud"}, {})


def test_unknown_keys_are_warnings_with_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "a"\nconcurency = 5\n\n[extras]\nx = 1\n')

    loaded = load_settings(path, {}, {})

    assert loaded.settings.name == "a"
    assert loaded.warnings == [
        f"{path}:2: unknown key 'concurency' (ignored); did you mean 'concurrency'?",
        f"{path}:4: unknown key 'extras' (ignored)",
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("24h", 86400), ("1d", 86400), ("1h 30m", 5400), ("250ms", 0.25)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("512k", 512_000),
        ("100MB", 100_000_000),
        ("100 MiB", 100 * 2**20),
        ("1gb", 10**9),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


# --- showing the effective settings ---------------------------------------------------------------


def test_effective_settings_show_origins_and_mask_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, 'http_proxy = "http://user:hunter2@proxy:3128"\n')
    environ = {"HC_COORDINATOR_URL": "https://agent:s3cret@hc.example.com"}

    rows = {
        key: (value, origin) for key, value, origin in effective_settings(load_settings(path, {}, environ))
    }

    assert rows["http_proxy"] == ('"http://user:***@proxy:3128"', f"{path}:1 (http_proxy)")
    assert rows["coordinator_urls"] == (
        '["https://agent:***@hc.example.com"]',
        "environment variable HC_COORDINATOR_URL",
    )
    assert rows["concurrency"] == ("200", "default")
    assert rows["ca_file"] == ('""', "default")
    assert "hunter2" not in repr(rows)
    assert "s3cret" not in repr(rows)


def test_mask_helpers() -> None:
    assert mask_url("http://proxy:3128") == "http://proxy:3128"
    assert mask_secret("agk_0123456789abcdef") == "agk_…cdef"
    assert mask_secret("short") == "***"


# --- credentials ----------------------------------------------------------------------------------


CREDS = Credentials(agent_id=7, api_key="agk_0123456789abcdef", coordinator_url="https://hc.example.com")


def test_credentials_round_trip_and_the_file_is_private(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"

    path = save_credentials(state_dir, CREDS)

    assert path == state_dir / "agent.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_credentials(state_dir) == CREDS
    assert os.listdir(state_dir) == ["agent.key"]  # no temporary file left behind


def test_the_key_file_is_never_visible_with_wider_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_modes = []
    real_replace = os.replace

    def spying_replace(src: str, dst: str) -> None:
        seen_modes.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spying_replace)
    old_umask = os.umask(0)  # even a permissive umask must not widen the file
    try:
        save_credentials(tmp_path, CREDS)
    finally:
        os.umask(old_umask)

    assert seen_modes == [0o600]


def test_saving_again_replaces_the_credentials(tmp_path: Path) -> None:
    save_credentials(tmp_path, CREDS)
    newer = Credentials(agent_id=8, api_key="agk_ffffffffffffffff", coordinator_url="https://b.example.com")

    save_credentials(tmp_path, newer)

    assert load_credentials(tmp_path) == newer


def test_no_key_file_means_not_registered(tmp_path: Path) -> None:
    assert load_credentials(tmp_path) is None


def test_a_damaged_key_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "agent.key").write_text("{not json")

    with pytest.raises(ConfigError, match=r"agent\.key: the agent key file is damaged"):
        load_credentials(tmp_path)


def test_credentials_repr_hides_the_key() -> None:
    assert "0123456789abcdef" not in repr(CREDS)
