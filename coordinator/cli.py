"""`hc-coordinator`: serve the API, apply migrations, create users and tokens.

Exit codes (CONTRACT §1): 0 ok, 1 runtime failure, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from coordinator.auth import service
from coordinator.auth.principal import Role
from coordinator.db import engine as db_engine
from coordinator.db.migrate import migrate
from coordinator.settings import Settings, SettingsError, check_database_url, settings_from_env

app = typer.Typer(
    help="The SysTeam HealthChecks coordinator.\n\nExample: hc-coordinator serve --port 8000",
    no_args_is_help=True,
    add_completion=True,
)
T = TypeVar("T")

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", help="sqlite:///path/file.db or postgresql://… (else HC_DATABASE_URL)"),
]


def _settings(database_url: str | None) -> Settings:
    try:
        settings = settings_from_env()
        if database_url:
            check_database_url(database_url)
            settings = dataclasses.replace(settings, database_url=database_url)
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return settings


def _run(settings: Settings, job: Callable[[Any], Awaitable[T]]) -> T:
    """Runs `job(engine)` with the schema migrated, then closes the engine."""

    async def main() -> T:
        engine = db_engine.make_engine(settings.database_url)
        db_engine.bind_tables(engine)
        await db_engine.start(engine)
        try:
            await migrate(engine)
            return await job(engine)
        finally:
            await db_engine.stop(engine)

    try:
        return asyncio.run(main())
    except service.AccountError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"error: cannot reach the database: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 8000,
    database_url: DatabaseOption = None,
) -> None:
    """Runs the coordinator. With no configuration it keeps everything in ./.hc-data/coordinator.db.

    Example: HC_DATABASE_URL=postgresql://hc@db/hc hc-coordinator serve --host 0.0.0.0
    """
    import uvicorn

    from coordinator.app import create_app

    settings = _settings(database_url)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    typer.echo(
        f"coordinator listening on http://{host}:{port} (database: {_redacted(settings.database_url)})", err=True
    )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again to the handler
    # that was there before it; this one turns that into exit code 0, the contract's "ok".
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _exit_ok)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level, access_log=False)


def _exit_ok(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _redacted(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, _, location = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{location}" if ":" in credentials else url
    return url


@app.command("migrate")
def migrate_command(database_url: DatabaseOption = None) -> None:
    """Applies pending schema migrations (serve does this on start too)."""
    settings = _settings(database_url)

    async def job(engine: Any) -> None:
        return None

    _run(settings, job)
    typer.echo("database schema is up to date")


@app.command("create-user")
def create_user(
    email: Annotated[str, typer.Option(help="the user's email, used to log in")],
    password: Annotated[str, typer.Option(help="at least 8 characters")],
    superadmin: Annotated[bool, typer.Option("--superadmin", help="may act on every organization")] = False,
    org: Annotated[str | None, typer.Option(help="organization: created (user as OWNER) or joined")] = None,
    role: Annotated[Role, typer.Option(case_sensitive=False, help="role when joining an existing --org")] = Role.MEMBER,
    database_url: DatabaseOption = None,
) -> None:
    """Creates a user and prints its id.

    Example: hc-coordinator create-user --email ops@example.com --password 's3cret-pass' --org Acme
    """
    settings = _settings(database_url)

    async def job(engine: Any) -> int:
        return await service.create_user(engine, email, password, superadmin=superadmin, organization=org, role=role)

    typer.echo(_run(settings, job))


@app.command("create-token")
def create_token(
    email: Annotated[str, typer.Option(help="the user the token acts as")],
    name: Annotated[str, typer.Option(help="a name to recognise the token by")] = "cli",
    database_url: DatabaseOption = None,
) -> None:
    """Prints a new personal access token (pat_…) for the user. It is shown only once.

    Example: export HC_TOKEN=$(hc-coordinator create-token --email ops@example.com --name ci)
    """
    settings = _settings(database_url)

    async def job(engine: Any) -> str:
        user_id = await service.user_id_by_email(engine, email)
        if user_id is None:
            raise service.AccountError(f"no user with email {email}")
        return (await service.create_access_token(engine, user_id, name))[1]

    typer.echo(_run(settings, job))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
