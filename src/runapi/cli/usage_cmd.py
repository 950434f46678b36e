"""`runapi usage`: usage by day and model, filtered, as a table or CSV; and `runapi tiers`."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta

import typer

from runapi.accounting import usage_csv, usage_total
from runapi.cli.common import (
    Stores,
    command_group,
    console,
    errors,
    print_table,
    run_with_stores,
)
from runapi.cli.common import table as cli_table
from runapi.limits import pin_tier
from runapi.money import nanos_to_usd
from runapi.storage import UsageFilter, usage_by_day_and_model

tiers_app = command_group("Usage tiers: list them, pin or unpin an account's tier.")


def _day(text: str | None, default: date, name: str) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        errors.print(f"[red]--{name} must be a date as YYYY-MM-DD, got {text!r}.[/red]")
        raise typer.Exit(2) from exc


def usage(account: str = typer.Option(None, help="Account ID or name (all accounts if omitted)"),
          key: str = typer.Option(None, help="Key ID"),
          model: str = typer.Option(None, help="Public model ID"),
          start: str = typer.Option(None, help="First day, YYYY-MM-DD (UTC; default: 29 days before --end)"),
          end: str = typer.Option(None, help="Last day, YYYY-MM-DD (UTC; default: today)"),
          csv: bool = typer.Option(False, "--csv", help="Write CSV to stdout instead of a table")) -> None:
    """Requests, tokens and spend by day and model (billed generations; failed ones counted apart)."""
    last = _day(end, datetime.now(UTC).date(), "end")
    first = _day(start, last - timedelta(days=29), "start")

    async def work(stores: Stores) -> None:
        account_id = (await stores.accounts.find_account(account)).id if account else None
        rows_data = await usage_by_day_and_model(stores.engine, UsageFilter(
            start=first, end=last, account_id=account_id, key_id=key, model=model))
        if csv:
            sys.stdout.write(usage_csv(rows_data, stores.settings.catalog))
            return
        headers = ["Date", "Model", "Requests", "Failed", "Input", "Output", "Cache\nread", "Cache\nwrite",
                   "Cost (USD)"]
        rows = [[row.day, row.model, str(row.requests), str(row.failed), str(row.input_tokens),
                 str(row.output_tokens), str(row.cache_read_tokens), str(row.cache_write_tokens),
                 str(nanos_to_usd(row.cost_nanos))] for row in rows_data]
        total = usage_total(rows_data)
        rows.append(["[bold]total[/bold]", "", str(total["requests"]), str(total["failed"]),
                     str(total["input_tokens"]), str(total["output_tokens"]), str(total["cache_read_tokens"]),
                     str(total["cache_write_tokens"]), f"[bold]{total['cost']}[/bold]"])
        print_table(headers, rows, ids=("Date", "Model", "Cost (USD)"), title=f"Usage {first} … {last}",
                    optional=("Cache\nwrite", "Failed", "Cache\nread"))

    run_with_stores(work)


@tiers_app.command("list")
def tiers_list() -> None:
    """The configured tiers (defaults plus the config file's [tiers.NAME] tables)."""

    async def work(stores: Stores) -> None:
        table = cli_table("Tier", "Requests/min", "Tokens/min", "Concurrent", "Monthly cap (USD)",
                          "Qualifies at (USD)", ids=("Tier",))
        for name, spec in stores.settings.tiers.tiers.items():
            table.add_row(name, str(spec.requests_per_minute), str(spec.tokens_per_minute),
                          str(spec.concurrent_requests), str(spec.monthly_spend_cap_usd),
                          str(spec.qualifying_topup_usd))
        console.print(table)

    run_with_stores(work)


@tiers_app.command("pin")
def tiers_pin(account: str = typer.Argument(..., help="Account ID or name"),
              tier: str = typer.Argument(..., help="Tier name")) -> None:
    """Pin an account's tier: automatic promotion by top-ups stops until unpinned."""

    async def work(stores: Stores) -> None:
        found = await stores.accounts.find_account(account)
        await pin_tier(stores.engine, stores.settings.tiers, found.id, tier)
        console.print(f"{found.name} is pinned to {tier}.")

    run_with_stores(work)


@tiers_app.command("unpin")
def tiers_unpin(account: str = typer.Argument(..., help="Account ID or name")) -> None:
    """Unpin an account's tier: it returns to the tier its cumulative top-ups earn."""

    async def work(stores: Stores) -> None:
        found = await stores.accounts.find_account(account)
        tier = await pin_tier(stores.engine, stores.settings.tiers, found.id, None)
        console.print(f"{found.name} is unpinned, now {tier}.")

    run_with_stores(work)


def register(app: typer.Typer) -> None:
    """Add `runapi usage` and `runapi tiers` to the CLI."""
    app.command("usage")(usage)
    app.add_typer(tiers_app, name="tiers")
