"""Usage and revenue reports from aggregated generation rows: pure functions, no I/O.

Revenue is what the generations cost at the catalog's prices (Σ generation cost). Write-off
is the part of it that balances could not cover (the ledger's `writeoff` lines): billed, never
paid. Upstream cost is what the providers charge us, computed from the same token counts at
the price a deployment declares (`cost` in its catalog entry); it is `None` where a deployment
declares none, and so is every margin that depends on it. Margin = revenue − write-off −
upstream cost. Amounts are exact `Decimal` USD.

Every line carries its model's mode (text, embedding, image, video) and billing unit, and the
reports add a `by_mode` summary: spend, requests and the quantity billed in each unit (tokens for
token modes; images, videos or seconds for media modes). A model no longer in the catalog keeps
the mode its unit implies.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from runapi.catalog import Catalog
from runapi.money import Usage, cost_nanos, nanos_to_usd, unit_cost_nanos
from runapi.storage import UsageRow

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
CSV_COLUMNS = ("date", "model", "mode", "unit", "requests", "failed", *TOKEN_FIELDS, "total_tokens", "units",
               "cost_usd")
MODE_ORDER = ("text", "embedding", "image", "video")
_UNIT_MODES = {"image": "image", "video": "video", "second": "video"}


def mode_of(row: UsageRow, catalog: Catalog) -> str:
    """The mode of a row's model (the catalog's; for a model it no longer has, the one its unit implies)."""
    entry = catalog.models.get(row.model)
    return entry.mode if entry is not None else _UNIT_MODES.get(row.unit, "text")


def quantity(row: UsageRow) -> int:
    """What was billed, in the row's unit: tokens for token modes, else images, videos or seconds."""
    return row.total_tokens if row.unit == "tokens" else row.units


def usage_line(row: UsageRow, catalog: Catalog) -> dict[str, Any]:
    """One row of `GET /v1/usage`'s `data`."""
    return {"date": row.day, "model": row.model, "mode": mode_of(row, catalog), "unit": row.unit,
            "requests": row.requests, "failed": row.failed,
            **{name: getattr(row, name) for name in TOKEN_FIELDS}, "total_tokens": row.total_tokens,
            "units": row.units, "cost": nanos_to_usd(row.cost_nanos)}


def usage_total(rows: Iterable[UsageRow]) -> dict[str, Any]:
    rows = list(rows)
    total: dict[str, Any] = {name: sum(getattr(r, name) for r in rows)
                             for name in ("requests", "failed", *TOKEN_FIELDS)}
    total["total_tokens"] = sum(r.total_tokens for r in rows)
    total["cost"] = nanos_to_usd(sum(r.cost_nanos for r in rows))
    return total


def usage_by_mode(rows: Iterable[UsageRow], catalog: Catalog) -> list[dict[str, Any]]:
    """Spend per (mode, unit): requests, failed, the quantity billed in the unit, and cost."""
    groups: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        sums = groups.setdefault((mode_of(row, catalog), row.unit), [0, 0, 0, 0])
        for i, value in enumerate((row.requests, row.failed, quantity(row), row.cost_nanos)):
            sums[i] += value
    order = {mode: i for i, mode in enumerate(MODE_ORDER)}
    return [{"mode": mode, "unit": unit, "requests": r, "failed": f, "quantity": q, "cost": nanos_to_usd(c)}
            for (mode, unit), (r, f, q, c) in sorted(groups.items(), key=lambda g: (order.get(g[0][0], 9), g[0]))]


def usage_csv(rows: Iterable[UsageRow], catalog: Catalog) -> str:
    """The usage rows as CSV (one line per day, model and unit; exact decimal USD)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        line = usage_line(row, catalog)
        writer.writerow([line["date"], line["model"], line["mode"], line["unit"], line["requests"], line["failed"],
                         *(line[name] for name in TOKEN_FIELDS), line["total_tokens"], line["units"],
                         format(line["cost"], "f")])
    return out.getvalue()


def upstream_cost_nanos(row: UsageRow, catalog: Catalog) -> int | None:
    """What the provider charged for a deployment row, if the deployment declares its price."""
    entry = catalog.models.get(row.model)
    spec = next((d for d in entry.deployments if d.provider == row.provider and d.upstream_model == row.upstream_model),
                None) if entry else None
    if spec is None:
        return None
    if row.unit != "tokens":  # media: the deployment's price per unit (its base price: rows keep no size)
        return None if spec.unit_cost is None else unit_cost_nanos(spec.unit_cost, row.units)
    if spec.cost is None:
        return None
    usage = Usage(input_tokens=row.input_tokens, output_tokens=row.output_tokens,
                  cache_read_tokens=row.cache_read_tokens, cache_write_tokens=row.cache_write_tokens)
    return cost_nanos(usage, spec.cost)


def _money(revenue: int, write_off: int, upstream: int | None) -> dict[str, Any]:
    margin = None if upstream is None else revenue - write_off - upstream
    percent = None
    if margin is not None and revenue:
        percent = (Decimal(margin) * 100 / Decimal(revenue)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return {"revenue": nanos_to_usd(revenue), "write_off": nanos_to_usd(write_off),
            "upstream_cost": None if upstream is None else nanos_to_usd(upstream),
            "margin": None if margin is None else nanos_to_usd(margin), "margin_percent": percent}


def revenue_report(rows: Iterable[UsageRow], catalog: Catalog) -> dict[str, Any]:
    """Revenue, write-off, upstream cost and margin per model and unit (with its deployments), per mode
    and unit (`by_mode`), and in total."""
    models: dict[tuple[str, str], list[tuple[UsageRow, int | None]]] = {}
    for row in rows:
        if row.requests or row.cost_nanos:  # failed-only groups have nothing to report
            models.setdefault((row.model, row.unit), []).append((row, upstream_cost_nanos(row, catalog)))
    data = []
    modes: dict[tuple[str, str], list[int | None]] = {}  # (mode, unit) → requests, quantity, revenue, ...
    for (model, unit), lines in sorted(models.items()):
        revenue = sum(r.cost_nanos for r, _ in lines)
        write_off = sum(r.write_off_nanos for r, _ in lines)
        known = all(cost is not None for _, cost in lines)
        upstream = sum(cost or 0 for _, cost in lines) if known else None
        requests = sum(r.requests for r, _ in lines)
        mode = mode_of(lines[0][0], catalog)
        data.append({
            "model": model, "mode": mode, "unit": unit, "requests": requests,
            "units": sum(r.units for r, _ in lines),
            **{name: sum(getattr(r, name) for r, _ in lines) for name in TOKEN_FIELDS},
            **_money(revenue, write_off, upstream),
            "deployments": [{"provider": r.provider, "upstream_model": r.upstream_model, "requests": r.requests,
                             **_money(r.cost_nanos, r.write_off_nanos, cost)} for r, cost in lines],
        })
        sums = modes.setdefault((mode, unit), [0, 0, 0, 0, 0])
        for index, value in enumerate((requests, sum(quantity(r) for r, _ in lines), revenue, write_off, upstream)):
            sums[index] = None if value is None or sums[index] is None else (sums[index] or 0) + value
    order = {mode: i for i, mode in enumerate(MODE_ORDER)}
    by_mode = [{"mode": mode, "unit": unit, "requests": r, "quantity": q, **_money(rev or 0, wo or 0, up)}
               for (mode, unit), (r, q, rev, wo, up) in sorted(modes.items(), key=lambda g: (order.get(g[0][0], 9), g[0]))]
    totals = list(zip(*modes.values(), strict=True)) or [(), (), (), (), ()]
    upstream_total = None if any(u is None for u in totals[4]) else sum(u or 0 for u in totals[4])
    return {"data": data, "by_mode": by_mode,
            "total": {"requests": sum(r or 0 for r in totals[0]),
                      **_money(sum(v or 0 for v in totals[2]), sum(v or 0 for v in totals[3]), upstream_total)}}
