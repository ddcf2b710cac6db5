"""`hc-agent`: register, run the daemon, probe once by hand (CONTRACT §1).

Thin: each command parses, loads the settings, and calls into agent.config, agent.client,
agent.daemon or agent.probes. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Annotated, NoReturn
from urllib.parse import urlsplit

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from agent.client import ClientError, CoordinatorClient, CoordinatorUnavailable, Unauthorized
from agent.config import (
    AgentSettings,
    ConfigError,
    Credentials,
    load_credentials,
    load_settings,
    save_credentials,
)
from agent.daemon import Daemon, DaemonError, agent_version, serve
from agent.logs import configure_logging
from agent.probes import run_probe
from shared.wire import CheckSpec, CheckType, ProbeResult

CAPABILITIES = ("http", "tcp", "udp", "dns", "icmp")
PROBE_KINDS = {"tcp": CheckType.TCP, "udp": CheckType.UDP, "dns": CheckType.DNS, "icmp": CheckType.ICMP}

app = typer.Typer(
    name="hc-agent",
    help="The SysTeam HealthChecks probe agent.\n\nExample: hc-agent probe https://example.com/",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="the TOML config file (else HC_CONFIG; see agent.example.toml)"),
]


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings(config: Path | None) -> AgentSettings:
    """The effective settings, with logging set up by them; a bad configuration exits 2."""
    try:
        loaded = load_settings(config, {}, os.environ)
    except ConfigError as exc:
        _fail(str(exc), 2)
    for warning in loaded.warnings:
        typer.echo(f"warning: {warning}", err=True)
    configure_logging(loaded.settings.log_level, loaded.settings.log_format)
    return loaded.settings


# --- register ------------------------------------------------------------------------------------


@app.command()
def register(
    url: Annotated[str, typer.Option(help="the coordinator, e.g. https://hc.example.com")],
    token: Annotated[str, typer.Option(help="a registration token (reg_…), single use")],
    name: Annotated[str | None, typer.Option(help="the agent's name (default: setting `name`, else hostname)")] = None,
    config: ConfigOption = None,
    force: Annotated[bool, typer.Option("--force", help="replace the key of an already registered agent")] = False,
) -> None:
    """Trades a registration token for this agent's key and stores it (mode 0600) in the state_dir.

    Example: hc-agent register --url https://hc.example.com --token reg_…
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise typer.BadParameter(f"expected an http:// or https:// URL, got {url!r}", param_hint="--url")
    if not token.startswith("reg_"):
        raise typer.BadParameter("a registration token starts with reg_", param_hint="--token")
    settings = _settings(config)
    try:
        existing = load_credentials(settings.state_dir)
    except ConfigError as exc:
        existing = None
        typer.echo(f"warning: {exc}", err=True)
    if existing is not None and not force:
        _fail(
            f"already registered as agent {existing.agent_id} with {existing.coordinator_url} "
            f"({settings.key_file}); --force replaces that key",
            1,
        )
    agent_name = name or settings.name or socket.gethostname()
    base_url = url.rstrip("/")

    async def trade() -> Credentials:
        async with CoordinatorClient(
            base_url,
            ca_file=settings.ca_file,
            proxy=settings.http_proxy or None,
            timeout=settings.request_timeout,
        ) as client:
            answer = await client.register(token, agent_name, socket.gethostname(), agent_version(), CAPABILITIES)
        return Credentials(
            agent_id=answer.agent_id,
            api_key=answer.api_key,
            coordinator_url=base_url,
            name=answer.name,
            heartbeat_interval=answer.heartbeat_interval,
        )

    try:
        credentials = asyncio.run(trade())
    except Unauthorized as exc:
        _fail(f"{exc}; ask for a new registration token", 1)
    except CoordinatorUnavailable as exc:
        _fail(f"cannot register: {exc}", 1)
    except ClientError as exc:
        _fail(f"registration failed: {exc}", 1)
    path = save_credentials(settings.state_dir, credentials)
    typer.echo(f"registered agent {credentials.agent_id} {credentials.name!r} with {base_url}")
    typer.echo(f"key stored in {path} (mode 0600); start it with: hc-agent run")


# --- run -----------------------------------------------------------------------------------------


@app.command()
def run(config: ConfigOption = None) -> None:
    """Runs the agent until SIGTERM or Ctrl-C: heartbeats, pulls checks, probes, delivers results.

    SIGHUP reloads the config file and the key. Example: hc-agent run --config /etc/hc-agent.toml
    """
    settings = _settings(config)

    def reload_settings() -> AgentSettings:
        loaded = load_settings(config, {}, os.environ)
        for warning in loaded.warnings:
            typer.echo(f"warning: {warning}", err=True)
        return loaded.settings

    daemon = Daemon(settings, reload_settings=reload_settings)
    try:
        asyncio.run(serve(daemon))
    except ConfigError as exc:
        _fail(str(exc), 2)
    except DaemonError as exc:
        _fail(str(exc), exc.exit_code)
    except (OSError, sqlite3.Error) as exc:  # the state_dir or the spool cannot be used
        _fail(f"cannot run the agent: {exc}", 1)


# --- probe ---------------------------------------------------------------------------------------


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def probe(
    target: Annotated[str, typer.Argument(help="a URL, or one of tcp, udp, dns, icmp", show_default=False)],
    args: Annotated[
        list[str] | None, typer.Argument(help="tcp/udp: HOST PORT; dns: NAME; icmp: HOST", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON, alone on stdout")] = False,
    timeout: Annotated[int, typer.Option(min=1, max=300, help="seconds for the whole probe")] = 10,
    method: Annotated[str, typer.Option(help="HTTP method")] = "GET",
    insecure: Annotated[bool, typer.Option("--insecure", help="do not verify the TLS certificate")] = False,
    send: Annotated[str | None, typer.Option(help="tcp/udp: text to send")] = None,
    expect: Annotated[str | None, typer.Option(help="tcp/udp: text the answer must contain")] = None,
    record_type: Annotated[str, typer.Option("--type", help="dns: record type")] = "A",
    server: Annotated[str | None, typer.Option(help="dns: the server to ask (default: the system's)")] = None,
    count: Annotated[int, typer.Option(min=1, max=20, help="icmp: echo requests")] = 3,
) -> None:
    """Probes once from this machine; needs no coordinator. Exit 0 when the probe succeeded, 1 when not.

    \b
    Examples:
      hc-agent probe https://example.com/ --json
      hc-agent probe tcp db.internal 5432
      hc-agent probe udp 10.0.0.5 514 --send ping
      hc-agent probe dns example.com --type MX --server 1.1.1.1
      hc-agent probe icmp 10.0.0.1 --count 5
    """
    rest = args or []
    kind = PROBE_KINDS.get(target.lower())
    fields: dict[str, object] = {"timeout": timeout}
    if kind is None:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname or rest:
            raise typer.BadParameter(
                "expected an http(s) URL, or tcp HOST PORT, udp HOST PORT, dns NAME, icmp HOST",
                param_hint="TARGET",
            )
        kind = CheckType.UPTIME
        fields.update(url=target, http_method=method.upper(), ssl_verify=not insecure)
    elif kind in (CheckType.TCP, CheckType.UDP):
        if len(rest) != 2 or not rest[1].isdigit():
            raise typer.BadParameter(f"{target} needs HOST PORT", param_hint="ARGS")
        fields.update(host=rest[0], port=int(rest[1]), send_text=send, expect_text=expect)
    elif kind is CheckType.DNS:
        if len(rest) != 1:
            raise typer.BadParameter("dns needs NAME", param_hint="ARGS")
        fields.update(host=rest[0], dns_record_type=record_type.upper(), dns_server=server)
    else:
        if len(rest) != 1:
            raise typer.BadParameter("icmp needs HOST", param_hint="ARGS")
        fields.update(host=rest[0], ping_count=count)
    spec = CheckSpec(id=0, type=kind, interval=max(60, timeout + 1), **fields)  # type: ignore[arg-type]
    result = asyncio.run(run_probe(spec))
    if as_json:
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    else:
        Console().print(_result_table(spec, result))
    raise typer.Exit(0 if result.success else 1)


def _target_text(spec: CheckSpec) -> str:
    if spec.url:
        return f"{spec.http_method} {spec.url}"
    where = f"{spec.host}:{spec.port}" if spec.port is not None else str(spec.host)
    return f"{spec.type.value} {where}"


def _result_table(spec: CheckSpec, result: ProbeResult) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("target", _target_text(spec))
    table.add_row("result", "[green]OK[/green]" if result.success else "[red]FAILED[/red]")
    if result.status_code is not None:
        table.add_row("status", str(result.status_code))
    if result.response_time_ms is not None:
        table.add_row("response time", f"{result.response_time_ms:.1f} ms")
    timings = result.details.get("timings")
    if isinstance(timings, dict):
        for phase, value in timings.items():
            table.add_row(f"  {phase}", f"{value:.1f} ms" if isinstance(value, int | float) else str(value))
    if "ip" in result.details:
        table.add_row("address", str(result.details["ip"]))
    if "tls_expires_at" in result.details:
        days = result.details.get("tls_days_left")
        left = f" ({days} days left)" if days is not None else ""
        table.add_row("TLS expires", f"{result.details['tls_expires_at']}{left}")
    if result.error:
        table.add_row("error", f"[red]{result.error}[/red]")
    return table


# --- version -------------------------------------------------------------------------------------


@app.command()
def version() -> None:
    """Prints the agent's version."""
    typer.echo(f"hc-agent {agent_version()}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
