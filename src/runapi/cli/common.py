"""What every CLI command shares: settings, a short-lived database connection, error reporting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console

from runapi.config import ConfigError, Settings, load_settings
from runapi.errors import GatewayError
from runapi.storage import AccountStore, Ledger, SchemaMismatch, check_schema, create_engine

console = Console()
errors = Console(stderr=True)
T = TypeVar("T")


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        errors.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


class Stores:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_engine(settings.database_url)
        self.accounts = AccountStore(self.engine)
        self.ledger = Ledger(self.engine)


def run_with_stores(work: Callable[[Stores], Awaitable[T]]) -> T:
    """Run `work` against the configured database; turn known errors into a clear exit."""
    settings = settings_or_exit()

    async def main() -> T:
        stores = Stores(settings)
        try:
            await check_schema(stores.engine)
            return await work(stores)
        finally:
            await stores.engine.dispose()

    try:
        return asyncio.run(main())
    except SchemaMismatch as exc:
        errors.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    except GatewayError as exc:
        errors.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from exc
