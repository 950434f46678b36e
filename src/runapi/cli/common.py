"""What every CLI command shares: settings, a short-lived database connection, error reporting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from runapi.config import ConfigError, Settings, load_settings
from runapi.errors import GatewayError
from runapi.storage import (
    AccountStore,
    Ledger,
    SchemaMismatch,
    check_schema,
    create_engine,
)

console = Console()
errors = Console(stderr=True)
T = TypeVar("T")


def command_group(help: str, **options: Any) -> typer.Typer:
    """A `runapi` command group. Help is plain text (no rich panels): flags show no `<bool>` type,
    and it wraps to any terminal width."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, **options)


def table(*headers: str, ids: tuple[str, ...] = ("ID",), title: str | None = None) -> Table:
    """A compact table that fits narrow terminals: cells wrap (never an ellipsis), and the `ids`
    columns (IDs, amounts) keep each value whole on one line."""
    grid = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title=title)
    for header in headers:
        if header in ids:
            grid.add_column(header, no_wrap=True, overflow="fold")
        else:
            grid.add_column(header, overflow="fold")
    return grid


def print_table(headers: list[str], rows: list[list[str]], *, ids: tuple[str, ...] = ("ID",),
                optional: tuple[str, ...] = (), title: str | None = None) -> None:
    """Print a `table` that fits the terminal: the `optional` columns are dropped, in that order, while
    it is wider than the terminal; what is still too wide wraps. ID columns are never cut."""
    keep = list(headers)
    for name in (None, *optional):
        if name is not None:
            keep.remove(name)
        grid = table(*keep, ids=ids, title=title)
        for row in rows:
            grid.add_row(*(cell for header, cell in zip(headers, row, strict=True) if header in keep))
        if console.measure(grid, options=console.options.update(max_width=1_000_000)).maximum <= console.width:
            break
    console.print(grid)


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
