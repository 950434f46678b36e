"""Dashboard figures: spend and tokens per day and per model.

They come from the usage service (the same aggregates as `GET /v1/usage`, so the dashboard
and the API always agree); `summarise` reshapes them. No SQL here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec

from runapi.accounting import usage_by_mode
from runapi.catalog import Catalog
from runapi.services import UsageFilter, UsageRow, UsageService

DASHBOARD_DAYS = 30


class DayUsage(msgspec.Struct, frozen=True):
    day: date
    cost_nanos: int = 0
    tokens: int = 0
    calls: int = 0


class ModelUsage(msgspec.Struct, frozen=True):
    model: str
    cost_nanos: int
    tokens: int
    calls: int
    failed: int


class UsageSummary(msgspec.Struct, frozen=True):
    days: list[DayUsage]  # every day of the period, zeros where idle
    models: list[ModelUsage]  # highest spend first
    modes: list[dict[str, Any]] = []  # spend per mode and unit (`accounting.usage_by_mode`)

    @property
    def cost_nanos(self) -> int:
        return sum(d.cost_nanos for d in self.days)

    @property
    def tokens(self) -> int:
        return sum(d.tokens for d in self.days)

    @property
    def calls(self) -> int:
        return sum(d.calls for d in self.days)


def period(days: int, today: date | None = None) -> tuple[date, date]:
    """The last `days` UTC days, today included: (first, last)."""
    last = today or datetime.now(UTC).date()
    return last - timedelta(days=days - 1), last


def summarise(rows: Iterable[UsageRow], first: date, last: date, catalog: Catalog | None = None) -> UsageSummary:
    """Per-(day, model) rows → a zero-filled day series, per-model totals and, given the catalog, spend
    per mode and unit. Pure."""
    rows = list(rows)
    by_day: dict[str, list[int]] = {}
    by_model: dict[str, list[int]] = {}
    for row in rows:
        day = by_day.setdefault(row.day, [0, 0, 0])
        day[0] += row.cost_nanos
        day[1] += row.total_tokens
        day[2] += row.requests
        model = by_model.setdefault(row.model, [0, 0, 0, 0])
        model[0] += row.cost_nanos
        model[1] += row.total_tokens
        model[2] += row.requests
        model[3] += row.failed
    days = []
    current = first
    while current <= last:
        cost, tokens, calls = by_day.get(current.isoformat(), [0, 0, 0])
        days.append(DayUsage(current, cost, tokens, calls))
        current += timedelta(days=1)
    models = [ModelUsage(name, *totals) for name, totals in by_model.items()]
    modes = usage_by_mode(rows, catalog) if catalog is not None else []
    return UsageSummary(days, sorted(models, key=lambda m: (-m.cost_nanos, -m.calls, m.model)), modes)


async def account_usage(usage: UsageService, account_id: str, catalog: Catalog | None = None,
                        days: int = DASHBOARD_DAYS, today: date | None = None) -> UsageSummary:
    first, last = period(days, today)
    rows = await usage.by_day_and_model(UsageFilter(start=first, end=last, account_id=account_id))
    return summarise(rows, first, last, catalog)
