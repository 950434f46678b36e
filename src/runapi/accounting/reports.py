"""Usage and revenue reports from aggregated generation rows: pure functions, no I/O.

Revenue is what the generations cost at the catalog's prices (Σ generation cost). Write-off
is the part of it that balances could not cover (the ledger's `writeoff` lines): billed, never
paid. Upstream cost is what the providers charge us, computed from the same token counts at
the price a deployment declares (`cost` in its catalog entry); it is `None` where a deployment
declares none, and so is every margin that depends on it. Margin = revenue − write-off −
upstream cost. Amounts are exact `Decimal` USD.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from runapi.catalog import Catalog
from runapi.money import Usage, cost_nanos, nanos_to_usd
from runapi.storage import UsageRow

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
CSV_COLUMNS = ("date", "model", "requests", "failed", *TOKEN_FIELDS, "total_tokens", "cost_usd")


def usage_line(row: UsageRow) -> dict[str, Any]:
    """One row of `GET /v1/usage`'s `data`."""
    return {"date": row.day, "model": row.model, "requests": row.requests, "failed": row.failed,
            **{name: getattr(row, name) for name in TOKEN_FIELDS}, "total_tokens": row.total_tokens,
            "cost": nanos_to_usd(row.cost_nanos)}


def usage_total(rows: Iterable[UsageRow]) -> dict[str, Any]:
    rows = list(rows)
    total: dict[str, Any] = {name: sum(getattr(r, name) for r in rows)
                             for name in ("requests", "failed", *TOKEN_FIELDS)}
    total["total_tokens"] = sum(r.total_tokens for r in rows)
    total["cost"] = nanos_to_usd(sum(r.cost_nanos for r in rows))
    return total


def usage_csv(rows: Iterable[UsageRow]) -> str:
    """The usage rows as CSV (one line per day and model; exact decimal USD)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        line = usage_line(row)
        writer.writerow([line["date"], line["model"], line["requests"], line["failed"],
                         *(line[name] for name in TOKEN_FIELDS), line["total_tokens"], format(line["cost"], "f")])
    return out.getvalue()


def upstream_cost_nanos(row: UsageRow, catalog: Catalog) -> int | None:
    """What the provider charged for a deployment row, if the deployment declares its price."""
    entry = catalog.models.get(row.model)
    spec = next((d for d in entry.deployments if d.provider == row.provider and d.upstream_model == row.upstream_model),
                None) if entry else None
    if spec is None or spec.cost is None:
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
    """Revenue, write-off, upstream cost and margin per model (with its deployments), and in total."""
    models: dict[str, list[tuple[UsageRow, int | None]]] = {}
    for row in rows:
        if row.requests or row.cost_nanos:  # failed-only groups have nothing to report
            models.setdefault(row.model, []).append((row, upstream_cost_nanos(row, catalog)))
    data = []
    all_known = True
    revenue_total = write_off_total = upstream_total = requests_total = 0
    for model, lines in sorted(models.items()):
        revenue = sum(r.cost_nanos for r, _ in lines)
        write_off = sum(r.write_off_nanos for r, _ in lines)
        write_off_total += write_off
        known = all(cost is not None for _, cost in lines)
        upstream = sum(cost or 0 for _, cost in lines)
        all_known = all_known and known
        requests = sum(r.requests for r, _ in lines)
        revenue_total, upstream_total, requests_total = revenue_total + revenue, upstream_total + upstream, \
            requests_total + requests
        data.append({
            "model": model, "requests": requests,
            **{name: sum(getattr(r, name) for r, _ in lines) for name in TOKEN_FIELDS},
            **_money(revenue, write_off, upstream if known else None),
            "deployments": [{"provider": r.provider, "upstream_model": r.upstream_model, "requests": r.requests,
                             **_money(r.cost_nanos, r.write_off_nanos, cost)} for r, cost in lines],
        })
    return {"data": data, "total": {"requests": requests_total,
                                    **_money(revenue_total, write_off_total, upstream_total if all_known else None)}}
