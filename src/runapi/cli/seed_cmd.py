"""`runapi db seed`: synthetic accounts, keys, credit and history, for benchmarks (issue 24)."""

from __future__ import annotations

import os
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from runapi.catalog import Catalog
from runapi.cli.common import Stores, console, errors, run_with_stores
from runapi.money import nanos_to_usd, usd_to_nanos
from runapi.storage import SeedModel, SeedPlan, has_traffic, seed, unreconciled


def seed_models(catalog: Catalog) -> list[SeedModel]:
    """Every deployment of every text model in the catalog, at the model's customer price."""
    return [SeedModel(model=entry.id, provider=spec.provider, upstream_model=spec.upstream_model,
                      pricing=entry.pricing)
            for entry in catalog.models.values() if entry.mode == "text" for spec in entry.deployments]


def write_keys(path: Path, keys: list[str]) -> None:
    """The keys' secrets, one a line, in a file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as out:
        out.write("".join(key + "\n" for key in keys))


def db_seed(accounts: int = typer.Option(1_000, min=1, help="Accounts to create, each with one key and credit"),
            generations: int = typer.Option(100_000, min=0, help="Generations (and their charges) to write"),
            days: int = typer.Option(90, min=1, help="Spread them over the last DAYS UTC days"),
            hot: int = typer.Option(0, min=0, help="Of the generations, how many go to the first account"),
            credit: str = typer.Option("100", help="Each account's balance after seeding, USD"),
            tier: str = typer.Option("free", help="The accounts' usage tier"),
            keys_file: Path | None = typer.Option(None, help="Write the keys (secrets, one a line) to this "
                                                 "file, readable by its owner only"),
            force: bool = typer.Option(False, "--force", help="Seed even a database that has real traffic"),
            ) -> None:
    """Fill the database with synthetic accounts and history (for benchmarks; never on a live database)."""
    if hot > generations:
        errors.print("[red]--hot cannot exceed --generations.[/red]")
        raise typer.Exit(2)
    try:
        credit_nanos = usd_to_nanos(Decimal(credit))
    except InvalidOperation:
        credit_nanos = -1
    if credit_nanos < 0:
        errors.print(f"[red]--credit must be an amount of USD, 0 or more, not {credit!r}.[/red]")
        raise typer.Exit(2)

    async def work(stores: Stores) -> None:
        if await has_traffic(stores.engine) and not force:
            errors.print("[red]This database has real traffic (generations or ledger entries the seeder did not "
                         "write). Seed an empty database, or pass --force.[/red]")
            raise typer.Exit(1)
        models = seed_models(stores.settings.catalog)
        plan = SeedPlan(accounts=accounts, generations=generations, credit_nanos=credit_nanos, days=days,
                        hot_generations=hot, tier=tier)
        started = time.perf_counter()
        with Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as bar:
            stages = {name: bar.add_task(name, total=total) for name, total in
                      (("accounts", accounts), ("generations", generations), ("credit", accounts))}
            result = await seed(stores.engine, plan, models,
                                lambda stage, done, total: bar.update(stages[stage], completed=done))
        elapsed = time.perf_counter() - started
        wrong = await unreconciled(stores.engine, result.run, credit_nanos)
        if keys_file:
            write_keys(keys_file, result.secrets)
        console.print(f"Seeded {result.accounts:,} accounts (seed-{result.run}-…) with {result.keys:,} keys, "
                      f"{result.generations:,} generations over {days} days on {len(models)} deployments, "
                      f"{result.charges:,} charges and {result.topups:,} top-ups in {elapsed:.1f} s.")
        console.print(f"Charged ${nanos_to_usd(result.charged_nanos)}; each balance is ${nanos_to_usd(credit_nanos)}. "
                      f"First account {result.first_account_id}: {result.first_account_generations:,} generations.")
        if keys_file:
            console.print(f"Keys written to {keys_file} (mode 600).")
        if wrong:
            errors.print(f"[red]The books do not balance for {', '.join(wrong)}.[/red]")
            raise typer.Exit(1)
        console.print("[green]Reconciled: every seeded account's ledger sums to its balance.[/green]")

    run_with_stores(work)
