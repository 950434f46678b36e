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
    """The UTC day of `created_at`, in the engine's SQL dialect (read back with `_day_text`). On PostgreSQL
    a timestamp, not text: it hashes and sorts without formatting each of an account's rows."""
    column = generations.c.created_at
    if engine.dialect.name == "postgresql":
        return sa.func.date_trunc("day", column, "UTC")
    return sa.func.substr(column, 1, 10)  # SQLite keeps UTC timestamps as ISO text


def _day_text(value: Any) -> str:
    """`YYYY-MM-DD` of a `_day` value."""
    return value.astimezone(UTC).date().isoformat() if isinstance(value, datetime) else str(value)


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


def _period(where: UsageFilter, column: sa.Column[Any]) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]:
    start = datetime.combine(where.start, time(), UTC)
    end = datetime.combine(where.end + timedelta(days=1), time(), UTC)
    return column >= start, column < end


def _where(query: sa.Select[Any], where: UsageFilter) -> sa.Select[Any]:
    query = query.where(*_period(where, generations.c.created_at))
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


def account_usage_query(engine: AsyncEngine, where: UsageFilter) -> sa.Select[Any]:
    """The query of `usage_by_day_and_model` (for its plan, see bench/history.py)."""
    keys = (_day(engine).label("day"), generations.c.model, generations.c.unit)
    return _where(sa.select(*keys, *_sums()), where).group_by(*keys).order_by(*keys)


async def usage_by_day_and_model(engine: AsyncEngine, where: UsageFilter) -> list[UsageRow]:
    """Totals per (UTC day, model, billing unit), ordered by day then model."""
    query = account_usage_query(engine, where)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_row(r, day=_day_text(r.day), model=r.model) for r in rows]


DEPLOYMENT = (generations.c.model, generations.c.provider, generations.c.upstream_model, generations.c.unit)
# A literal, not a parameter: the planners use the partial index `ix_ledger_writeoffs` only for a
# condition they can match to its own (migration 0008).
IS_WRITEOFF = ledger.c.kind == sa.literal_column("'writeoff'")


def deployment_usage_query(where: UsageFilter) -> sa.Select[Any]:
    """The query of `usage_by_deployment` without write-offs (for its plan, see bench/history.py)."""
    return _where(sa.select(*DEPLOYMENT, *_sums()), where).group_by(*DEPLOYMENT).order_by(*DEPLOYMENT)


def writeoff_query(where: UsageFilter) -> sa.Select[Any]:
    """Write-offs per deployment of the generations `where` covers. A write-off carries its generation's
    `created_at` (`ledger.writeoff_row`), so the few write-offs of the period are read from their partial
    index, and each finds its generation by primary key."""
    own_id = sa.func.substr(ledger.c.generation_id, 1, sa.func.length(ledger.c.generation_id) - len(WRITEOFF_SUFFIX))
    query = sa.select(*DEPLOYMENT, sa.func.sum(ledger.c.amount_nanos).label("write_off_nanos")) \
        .select_from(ledger.join(generations, generations.c.id == own_id)) \
        .where(IS_WRITEOFF, *_period(where, ledger.c.created_at))
    return _where(query, where).group_by(*DEPLOYMENT)


async def usage_by_deployment(engine: AsyncEngine, where: UsageFilter) -> list[UsageRow]:
    """Totals per (model, provider, upstream model, billing unit), for revenue against upstream cost, with the
    write-offs of those generations (at most one ledger row each, so no sum is counted twice)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(deployment_usage_query(where))).all()
        written_off = {(r.model, r.provider, r.upstream_model, r.unit): int(r.write_off_nanos)
                       for r in (await conn.execute(writeoff_query(where))).all()}
    return [msgspec.structs.replace(
        _row(r, model=r.model, provider=r.provider, upstream_model=r.upstream_model),
        write_off_nanos=written_off.get((r.model, r.provider, r.upstream_model, r.unit), 0)) for r in rows]


def totals_queries() -> dict[str, sa.Select[Any]]:
    """The operator dashboard's per-account totals (for their plans, see bench/history.py)."""
    return {
        "balances by account (operator dashboard)":
            sa.select(ledger.c.account_id, sa.func.sum(ledger.c.amount_nanos)).group_by(ledger.c.account_id),
        "spend by account (operator dashboard)":
            sa.select(generations.c.account_id, sa.func.sum(generations.c.cost_nanos)).group_by(
                generations.c.account_id),
    }


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
