"""Usage aggregates: by day and model (customers), by deployment (operators), per-account totals.

They read the roll-ups of migration 0009 (`usage_daily` per account, `usage_daily_deployments` over all
accounts, `account_balances`), which triggers keep in the transaction that writes the generations and
the ledger, so a report reads days × models rows, not every generation. Billed usage is every generation that was charged or could have been: status
`succeeded` or `cancelled` (a client that left mid-stream pays for what was generated). Failed
generations are counted separately and never carry tokens or cost into these figures. Days are UTC
calendar days; ranges are inclusive of both ends. `reconcile` checks the roll-ups against the rows.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.storage.schema import account_balances, usage_daily, usage_daily_deployments

BILLED = ("succeeded", "cancelled")
TOKEN_SUMS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


class UsageFilter(msgspec.Struct, frozen=True):
    start: date
    end: date
    account_id: str | None = None
    key_id: str | None = None
    model: str | None = None


class UsageRow(msgspec.Struct, frozen=True):
    """One group's totals (a day and model, or a deployment)."""

    requests: int
    failed: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_nanos: int
    write_off_nanos: int = 0  # of `cost_nanos`, what balances could not cover (deployment rows only)
    unit: str = "tokens"  # the billing unit of the group's generations
    units: int = 0  # media: images, videos or seconds billed
    day: str = ""
    model: str = ""
    provider: str = ""
    upstream_model: str = ""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens + self.output_tokens


SUM_NAMES = ("requests", "failed", *TOKEN_SUMS, "cost_nanos", "units")


def _sums(table: sa.Table) -> list[sa.Label[Any]]:
    """The summed columns, as 64-bit integers (PostgreSQL's sum of a bigint is a numeric, read as a Decimal)."""
    names = [*SUM_NAMES, *(("write_off_nanos",) if "write_off_nanos" in table.c else ())]
    return [sa.cast(sa.func.sum(table.c[name]), sa.BigInteger).label(name) for name in names]


def _where(query: sa.Select[Any], table: sa.Table, where: UsageFilter) -> sa.Select[Any]:
    query = query.where(table.c.day >= where.start, table.c.day <= where.end)
    if where.account_id:
        query = query.where(table.c.account_id == where.account_id)
    if where.key_id:
        query = query.where(table.c.key_id == where.key_id)
    if where.model:
        query = query.where(table.c.model == where.model)
    return query


def _row(sums: Any, **names: Any) -> UsageRow:
    """A UsageRow from the summed columns, in `_sums` order (by position: a Row's named lookups cost
    more than the rest of a report of 100,000 generations)."""
    requests, failed, input_tokens, output_tokens, cache_read, cache_write, reasoning, cost, units, *write_off = sums
    return UsageRow(requests, failed, input_tokens, output_tokens, cache_read, cache_write, reasoning, cost,
                    write_off[0] if write_off else 0, units=units, **names)


def _day_text(value: Any) -> str:
    """`YYYY-MM-DD` of a `day` value (a date; text on a driver that returns it raw)."""
    return value.isoformat() if isinstance(value, date) else str(value)[:10]


DAY_AND_MODEL = (usage_daily.c.day, usage_daily.c.model, usage_daily.c.unit)


def account_usage_query(where: UsageFilter) -> sa.Select[Any]:
    """The query of `usage_by_day_and_model` (for its plan, see bench/history.py)."""
    return _where(sa.select(*DAY_AND_MODEL, *_sums(usage_daily)), usage_daily, where) \
        .group_by(*DAY_AND_MODEL).order_by(*DAY_AND_MODEL)


async def usage_by_day_and_model(engine: AsyncEngine, where: UsageFilter) -> list[UsageRow]:
    """Totals per (UTC day, model, billing unit), ordered by day then model."""
    async with engine.connect() as conn:
        rows = (await conn.execute(account_usage_query(where))).all()
    return [_row(r[3:], day=_day_text(r[0]), model=r[1], unit=r[2]) for r in rows]


_BY_DEPLOYMENT = usage_daily_deployments.c
DEPLOYMENT = (_BY_DEPLOYMENT.model, _BY_DEPLOYMENT.provider, _BY_DEPLOYMENT.upstream_model, _BY_DEPLOYMENT.unit)


def deployment_usage_query(where: UsageFilter) -> sa.Select[Any]:
    """The query of `usage_by_deployment` (for its plan, see bench/history.py)."""
    if where.account_id or where.key_id:
        raise ValueError("usage by deployment covers every account: filter it by period and model only")
    return _where(sa.select(*DEPLOYMENT, *_sums(usage_daily_deployments)), usage_daily_deployments, where) \
        .group_by(*DEPLOYMENT).order_by(*DEPLOYMENT)


async def usage_by_deployment(engine: AsyncEngine, where: UsageFilter) -> list[UsageRow]:
    """Totals per (model, provider, upstream model, billing unit) over every account, for revenue against
    upstream cost, with the write-offs of those generations (what balances could not cover)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(deployment_usage_query(where))).all()
    return [_row(r[4:], model=r[0], provider=r[1], upstream_model=r[2], unit=r[3]) for r in rows]


def totals_queries() -> dict[str, sa.Select[Any]]:
    """The operator dashboard's per-account totals (for their plans, see bench/history.py)."""
    return {
        "balances by account (operator dashboard)": sa.select(account_balances),
        "spend by account (operator dashboard)": _spend_query(),
    }


async def balances_by_account(engine: AsyncEngine, account_ids: list[str] | None = None) -> dict[str, int]:
    """Balances (Σ ledger) in nano-dollars, of every account or of `account_ids`; accounts without
    entries are absent."""
    query = sa.select(account_balances.c.account_id, account_balances.c.balance_nanos)
    if account_ids is not None:
        query = query.where(account_balances.c.account_id.in_(account_ids))
    async with engine.connect() as conn:
        return {r[0]: int(r[1]) for r in (await conn.execute(query)).all()}


def _spend_query(account_ids: list[str] | None = None) -> sa.Select[Any]:
    query = sa.select(usage_daily.c.account_id, sa.func.sum(usage_daily.c.cost_nanos))
    if account_ids is not None:
        query = query.where(usage_daily.c.account_id.in_(account_ids))
    return query.group_by(usage_daily.c.account_id)


async def spend_by_account(engine: AsyncEngine, account_ids: list[str] | None = None) -> dict[str, int]:
    """Lifetime spend (Σ billed generation costs) in nano-dollars, of every account or of `account_ids`."""
    async with engine.connect() as conn:
        return {r[0]: int(r[1] or 0) for r in (await conn.execute(_spend_query(account_ids))).all()}
