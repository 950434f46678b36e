"""`runapi models`: the catalog as the gateway serves it."""

from __future__ import annotations

from typing import Any

import msgspec
import typer
from rich.table import Table

from runapi.catalog import Catalog, ModelEntry, price_line, pricing_json
from runapi.cli.common import command_group, console, errors, settings_or_exit, table

models_app = command_group("The model catalog (built-in plus RUNAPI_CONFIG overrides).")


def model_summary(catalog: Catalog, entry: ModelEntry) -> dict[str, Any]:
    """One model for `models list --json`: ID, names, mode, limits and prices in its unit (exact decimal
    strings, USD)."""
    provider = catalog.providers[entry.provider]
    return {"id": entry.id, "name": entry.name, "family": entry.family, "variant": entry.variant,
            "provider": provider.name or entry.provider, "mode": entry.mode, "task_type": entry.task_type,
            "unit": entry.unit, "endpoint": entry.endpoint,
            "context_length": entry.context_length, "max_output": entry.max_output, "aliases": entry.aliases,
            "pricing": pricing_json(entry)}


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json", help="JSON for scripts: "
                                             "{\"data\": [{id, name, provider, ..., pricing}]}")) -> None:
    """List models with their prices (USD per 1M tokens)."""
    catalog = settings_or_exit().catalog
    if as_json:
        data = [model_summary(catalog, entry) for entry in catalog.models.values()]
        print(msgspec.json.encode({"object": "list", "data": data}).decode())
        return
    grid = table("ID", "Provider", "Mode", "Context", "Input", "Output", "Cache\nread", "Cache\nwrite")
    for entry in catalog.models.values():
        provider = catalog.providers[entry.provider].name or entry.provider
        p = entry.pricing
        if entry.unit_pricing is not None:
            grid.add_row(entry.id, provider, entry.mode, "—", f"${entry.unit_pricing.price} / {entry.unit}", "—", "—", "—")
            continue
        grid.add_row(entry.id, provider, entry.mode, f"{entry.context_length:,}", f"${p.input}", f"${p.output}",
                     f"${p.cache_read}", f"${p.cache_write}")
    console.print(grid)
    console.print("Prices in USD per 1M tokens, or per image / video / second for media models. "
                  "`runapi models show ID` for one model, --json for scripts.")


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
                         ("Prices (USD)", price_line(entry))]:
        table.add_row(label, value)
    for d in entry.deployments:
        table.add_row("Deployment", f"{d.provider}: {d.upstream_model} (weight {d.weight})")
    console.print(table)
    text = entry.text.get("en")
    if text and text.overview:
        console.print(text.overview)
