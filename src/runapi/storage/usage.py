"""Usage aggregates over generation rows: by day and model (customers), by deployment (operators).

Billed usage is every generation that was charged or could have been: status `succeeded`
or `cancelled` (a client that left mid-stream pays for what was generated). Failed
generations are counted separately and never carry tokens or cost into these figures.
Days are UTC calendar days; ranges are inclusive of both ends.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.storage.ledger import WRITEOFF_SUFFIX
from runapi.storage.schema import generations, ledger

BILLED = ("succeeded", "cancelled")


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


def _day(engine: AsyncEngine) -> sa.ColumnElement[Any]:
    """`YYYY-MM-DD` of `created_at` in UTC, in the engine's SQL dialect."""
    column = generations.c.created_at
    if engine.dialect.name == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return sa.func.substr(column, 1, 10)  # SQLite keeps UTC timestamps as ISO text


def _sums() -> list[sa.ColumnElement[Any]]:
    billed = generations.c.status.in_(BILLED)

    def billed_sum(column: sa.Column[Any]) -> sa.ColumnElement[Any]:
        return sa.func.coalesce(sa.func.sum(sa.case((billed, column), else_=0)), 0)

    return [
        sa.func.coalesce(sa.func.sum(sa.case((billed, 1), else_=0)), 0).label("requests"),
        sa.func.coalesce(sa.func.sum(sa.case((billed, 0), else_=1)), 0).label("failed"),
        billed_sum(generations.c.input_tokens).label("input_tokens"),
        billed_sum(generations.c.output_tokens).label("output_tokens"),
        billed_sum(generations.c.cache_read_tokens).label("cache_read_tokens"),
        billed_sum(generations.c.cache_write_tokens).label("cache_write_tokens"),
        billed_sum(generations.c.reasoning_tokens).label("reasoning_tokens"),
        billed_sum(generations.c.cost_nanos).label("cost_nanos"),
        billed_sum(generations.c.units).label("units"),
    ]


def _where(query: sa.Select[Any], where: UsageFilter) -> sa.Select[Any]:
    start = datetime.combine(where.start, time(), UTC)
    end = datetime.combine(where.end + timedelta(days=1), time(), UTC)
    query = query.where(generations.c.created_at >= start, generations.c.created_at < end)
    if where.account_id:
        query = query.where(generations.c.account_id == where.account_id)
    if where.key_id:
        query = query.where(generations.c.key_id == where.key_id)
    if where.model:
        query = query.where(generations.c.model == where.model)
    return query


def _row(row: Any, day: str = "", model: str = "", provider: str = "", upstream_model: str = "") -> UsageRow:
    mapping = row._mapping
    return UsageRow(
        write_off_nanos=int(mapping["write_off_nanos"]) if "write_off_nanos" in mapping else 0,
        requests=int(row.requests), failed=int(row.failed), input_tokens=int(row.input_tokens),
        output_tokens=int(row.output_tokens), cache_read_tokens=int(row.cache_read_tokens),
        cache_write_tokens=int(row.cache_write_tokens), reasoning_tokens=int(row.reasoning_tokens),
        cost_nanos=int(row.cost_nanos), unit=str(row.unit), units=int(row.units), day=day, model=model,
        provider=provider, upstream_model=upstream_model,
    )


async def usage_by_day_and_model(engine: AsyncEngine, where: UsageFilter) -> list[UsageRow]:
    """Totals per (UTC day, model, billing unit), ordered by day then model."""
    day = _day(engine).label("day")
    keys = (day, generations.c.model, generations.c.unit)
    query = _where(sa.select(*keys, *_sums()), where).group_by(*keys).order_by(*keys)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_row(r, day=str(r.day), model=r.model) for r in rows]


async def usage_by_deployment(engine: AsyncEngine, where: UsageFilter) -> list[UsageRow]:
    """Totals per (model, provider, upstream model, billing unit), for revenue against upstream cost, with the
    write-offs of those generations (at most one ledger row each, so no sum is counted twice)."""
    keys = (generations.c.model, generations.c.provider, generations.c.upstream_model, generations.c.unit)
    written_off = sa.func.coalesce(sa.func.sum(ledger.c.amount_nanos), 0).label("write_off_nanos")
    joined = generations.outerjoin(ledger, ledger.c.generation_id == generations.c.id + WRITEOFF_SUFFIX)
    query = _where(sa.select(*keys, *_sums(), written_off).select_from(joined), where) \
        .group_by(*keys).order_by(*keys)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_row(r, model=r.model, provider=r.provider, upstream_model=r.upstream_model) for r in rows]


async def balances_by_account(engine: AsyncEngine) -> dict[str, int]:
    """Every account's balance (Σ ledger) in nano-dollars; accounts without entries are absent."""
    query = sa.select(ledger.c.account_id, sa.func.sum(ledger.c.amount_nanos)).group_by(ledger.c.account_id)
    async with engine.connect() as conn:
        return {r[0]: int(r[1] or 0) for r in (await conn.execute(query)).all()}


async def spend_by_account(engine: AsyncEngine) -> dict[str, int]:
    """Every account's lifetime spend (Σ generation costs) in nano-dollars."""
    query = sa.select(generations.c.account_id, sa.func.sum(generations.c.cost_nanos)).group_by(
        generations.c.account_id)
    async with engine.connect() as conn:
        return {r[0]: int(r[1] or 0) for r in (await conn.execute(query)).all()}
