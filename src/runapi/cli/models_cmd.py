"""`runapi models`: the catalog as the gateway serves it."""

from __future__ import annotations

import typer
from rich.table import Table

from runapi.cli.common import console, errors, settings_or_exit

models_app = typer.Typer(help="The model catalog (built-in plus RUNAPI_CONFIG overrides).", no_args_is_help=True)


@models_app.command("list")
def models_list() -> None:
    """List models with their prices (USD per 1M tokens)."""
    catalog = settings_or_exit().catalog
    table = Table("ID", "Family", "Provider", "Context", "Input", "Output", "Cache read", "Cache write")
    for entry in catalog.models.values():
        provider = catalog.providers[entry.provider].name or entry.provider
        p = entry.pricing
        table.add_row(entry.id, entry.family, provider, f"{entry.context_length:,}", f"${p.input}", f"${p.output}",
                      f"${p.cache_read}", f"${p.cache_write}")
    console.print(table)


@models_app.command("show")
def models_show(model_id: str) -> None:
    """Show one model's facts, deployments and overview."""
    catalog = settings_or_exit().catalog
    entry = catalog.resolve(model_id)
    if entry is None:
        errors.print(f"[red]No model {model_id!r}.[/red] `runapi models list` shows the catalog.")
        raise typer.Exit(1)
    table = Table(show_header=False)
    for label, value in [("ID", entry.id), ("Name", entry.name), ("Family / variant", f"{entry.family} / {entry.variant}"),
                         ("Provider", entry.provider), ("Mode", entry.mode), ("Task type", entry.task_type),
                         ("Endpoint", entry.endpoint), ("Protocol", entry.protocol),
                         ("Context length", f"{entry.context_length:,}"), ("Max output", f"{entry.max_output:,}"),
                         ("Billing unit", entry.billing_unit), ("Licence", entry.license),
                         ("Prices (USD / 1M)", f"in {entry.pricing.input} · out {entry.pricing.output} · "
                          f"cache read {entry.pricing.cache_read} · cache write {entry.pricing.cache_write}")]:
        table.add_row(label, value)
    for d in entry.deployments:
        table.add_row("Deployment", f"{d.provider}: {d.upstream_model} (weight {d.weight})")
    console.print(table)
    text = entry.text.get("en")
    if text and text.overview:
        console.print(text.overview)
