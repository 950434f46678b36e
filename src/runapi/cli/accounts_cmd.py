"""`runapi accounts`, `runapi keys` and `runapi credits`: the operator's account book."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import typer

from runapi.cli.common import (
    Stores,
    command_group,
    console,
    errors,
    print_table,
    run_with_stores,
)
from runapi.cli.common import table as cli_table
from runapi.limits import promote_by_topups
from runapi.money import nanos_to_usd, usd_to_nanos

accounts_app = command_group("Create and list customer accounts.")
keys_app = command_group("Create, list and revoke API keys.")
credits_app = command_group("Top up or adjust an account's credit (USD).")


@accounts_app.command("create")
def accounts_create(name: str, tier: str = typer.Option("free", help="Usage tier")) -> None:
    """Create an account."""

    async def work(stores: Stores) -> None:
        account = await stores.accounts.create_account(name, tier)
        console.print(f"Created account [bold]{account.name}[/bold] ({account.id}), tier {account.tier}.")
        console.print(f"Next: [cyan]runapi credits add {account.name} 10[/cyan] and "
                      f"[cyan]runapi keys create {account.name}[/cyan]")

    run_with_stores(work)


@accounts_app.command("list")
def accounts_list() -> None:
    """List accounts with their balances."""

    async def work(stores: Stores) -> None:
        table = cli_table("ID", "Name", "Tier", "Balance (USD)", "Created", ids=("ID", "Balance (USD)"))
        for account in await stores.accounts.list_accounts():
            balance, _ = await stores.ledger.balance(account.id)
            table.add_row(account.id, account.name, account.tier, str(nanos_to_usd(balance)),
                          account.created_at.strftime("%Y-%m-%d %H:%M"))
        console.print(table)

    run_with_stores(work)


@keys_app.command("create")
def keys_create(account: str = typer.Argument(..., help="Account ID or name"),
                name: str = typer.Option("", help="A label for the key")) -> None:
    """Create a key. The key is shown once; only its hash is stored."""

    async def work(stores: Stores) -> None:
        found = await stores.accounts.find_account(account)
        key, secret = await stores.accounts.create_key(found.id, name)
        console.print(f"Key {key.id} for {found.name}:\n\n  [bold green]{secret}[/bold green]\n")
        console.print("[yellow]Copy it now: it cannot be shown again.[/yellow]")

    run_with_stores(work)


@keys_app.command("list")
def keys_list(account: str = typer.Argument(None, help="Account ID or name (all accounts if omitted)")) -> None:
    """List keys by prefix (secrets are never stored)."""

    async def work(stores: Stores) -> None:
        account_id = (await stores.accounts.find_account(account)).id if account else None
        headers = ["ID", "Account", "Name", "Prefix", "Created", "Status"]
        rows = [[key.id, key.account_id, key.name, key.prefix + "…", key.created_at.strftime("%Y-%m-%d %H:%M"),
                 "[red]revoked[/red]" if key.revoked_at else "active"]
                for key in await stores.accounts.list_keys(account_id)]
        # One account's keys need no Account column; in a narrow terminal the prefix and date go first.
        print_table(headers, rows, ids=("ID", "Account"),
                    optional=("Account", "Prefix", "Created") if account_id else ("Prefix", "Created", "Account"))

    run_with_stores(work)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key; every running gateway refuses it within a second."""

    async def work(stores: Stores) -> None:
        key = await stores.accounts.revoke_key(key_id)
        console.print(f"Revoked {key.id} ({key.prefix}…).")

    run_with_stores(work)


def _parse_usd(amount: str) -> int:
    try:
        return usd_to_nanos(Decimal(amount))
    except (InvalidOperation, ValueError) as exc:
        errors.print(f"[red]{amount!r} is not an amount of USD (e.g. 10 or 2.50).[/red]")
        raise typer.Exit(2) from exc


@credits_app.command("add")
def credits_add(account: str = typer.Argument(..., help="Account ID or name"),
                usd: str = typer.Argument(..., help="Amount in USD, e.g. 10 or 2.50"),
                note: str = typer.Option("", help="Why (kept in the ledger)")) -> None:
    """Top up an account (a positive ledger entry)."""

    async def work(stores: Stores) -> None:
        found = await stores.accounts.find_account(account)
        await stores.ledger.add_entry(found.id, "topup", _parse_usd(usd), note)
        balance, _ = await stores.ledger.balance(found.id)
        console.print(f"Added ${Decimal(usd)} to {found.name}; balance ${nanos_to_usd(balance)}.")
        promoted = await promote_by_topups(stores.engine, stores.settings.tiers, found.id)
        if promoted:
            console.print(f"Cumulative top-ups promote {found.name} to [bold]{promoted}[/bold].")

    run_with_stores(work)


@credits_app.command("adjust")
def credits_adjust(account: str, usd: str = typer.Argument(..., help="Signed amount in USD, e.g. -1.25"),
                   note: str = typer.Option(..., help="Why (kept in the ledger)")) -> None:
    """Correct a balance by a signed amount; it can never go below zero."""

    async def work(stores: Stores) -> None:
        found = await stores.accounts.find_account(account)
        await stores.ledger.add_entry(found.id, "adjustment", _parse_usd(usd), note)
        balance, _ = await stores.ledger.balance(found.id)
        console.print(f"Adjusted {found.name} by ${Decimal(usd)}; balance ${nanos_to_usd(balance)}.")

    run_with_stores(work)


@credits_app.command("ledger")
def credits_ledger(account: str) -> None:
    """Show an account's ledger."""

    async def work(stores: Stores) -> None:
        found = await stores.accounts.find_account(account)
        entries = await stores.ledger.entries(found.id)
        total = sum(entry.amount_nanos for entry in entries)
        rows = [[str(entry.id), entry.kind, str(nanos_to_usd(entry.amount_nanos)), entry.generation_id or "",
                 entry.note, entry.created_at.strftime("%Y-%m-%d %H:%M:%S")] for entry in entries]
        print_table(["#", "Kind", "Amount (USD)", "Generation", "Note", "When"], rows,
                    ids=("Amount (USD)", "Generation"), optional=("Note",))
        console.print(f"Balance: [bold]${nanos_to_usd(total)}[/bold]")

    run_with_stores(work)
