"""Checks that the roll-ups (migration 0009) agree with the rows they sum: `runapi db reconcile`.

`usage_daily` is compared group by group (account, UTC day, key, deployment, unit) with the same sums
computed from `generations` and the write-off rows of `ledger`; `account_balances` with Σ ledger per
account. The triggers that keep them make a difference impossible short of a hand edit or a restore
of one table without the other; this reads every row, so it is an operator's check, not a hot path.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runapi.storage.ledger import WRITEOFF_SUFFIX
from runapi.storage.schema import (
    ROLLUP_KEY,
    ROLLUP_SUMS,
    account_balances,
    generations,
    ledger,
    usage_daily,
)
from runapi.storage.usage import BILLED, TOKEN_SUMS

Group = tuple[str, ...]


class RollupMismatch(msgspec.Struct, frozen=True):
    """One group or account whose roll-up differs from its rows: what the roll-up says, what the rows say."""

    table: str
    key: Group
    rollup: tuple[int, ...]
    rows: tuple[int, ...]


def _day_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date().isoformat()
    return value.isoformat() if isinstance(value, date) else str(value)[:10]


def _generation_day(dialect: str, column: sa.Column[Any]) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        return sa.func.date_trunc("day", column, "UTC")
    return sa.func.substr(column, 1, 10)


def _group(row: Any) -> Group:
    return tuple(_day_text(value) if index == 1 else str(value) for index, value in enumerate(row[:len(ROLLUP_KEY)]))


async def _from_rows(conn: AsyncConnection) -> dict[Group, list[int]]:
    """The roll-up's sums, computed from `generations` and the write-offs in `ledger`."""
    billed = generations.c.status.in_(BILLED)
    key = [_generation_day(conn.dialect.name, generations.c.created_at) if name == "day" else generations.c[name]
           for name in ROLLUP_KEY]
    sums = [sa.func.sum(sa.case((billed, 1), else_=0)), sa.func.sum(sa.case((billed, 0), else_=1)),
            *[sa.func.sum(sa.case((billed, generations.c[name]), else_=0)) for name in (*TOKEN_SUMS, "cost_nanos",
                                                                                        "units")]]
    own_id = sa.func.substr(ledger.c.generation_id, 1, sa.func.length(ledger.c.generation_id) - len(WRITEOFF_SUFFIX))
    writeoffs = sa.select(*key, sa.func.sum(ledger.c.amount_nanos)) \
        .select_from(ledger.join(generations, generations.c.id == own_id)) \
        .where(ledger.c.kind == "writeoff").group_by(*key)
    out: dict[Group, list[int]] = {}
    for row in (await conn.execute(sa.select(*key, *sums).group_by(*key))).all():
        out[_group(row)] = [int(v or 0) for v in row[len(ROLLUP_KEY):]] + [0]
    for row in (await conn.execute(writeoffs)).all():
        out.setdefault(_group(row), [0] * len(ROLLUP_SUMS))[-1] += int(row[-1] or 0)
    return out


async def _ledger_sums(conn: AsyncConnection) -> dict[str, int]:
    query = sa.select(ledger.c.account_id, sa.func.sum(ledger.c.amount_nanos)).group_by(ledger.c.account_id)
    return {r[0]: int(r[1] or 0) for r in (await conn.execute(query)).all()}


async def rollup_mismatches(engine: AsyncEngine) -> list[RollupMismatch]:
    """Every roll-up group and balance that differs from the rows (empty when all agree)."""
    wrong: list[RollupMismatch] = []
    async with engine.begin() as conn:  # one snapshot on PostgreSQL (SQLite reads one anyway)
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        rows = await _from_rows(conn)
        rollup = {_group(r): [int(v) for v in r[len(ROLLUP_KEY):]]
                  for r in (await conn.execute(sa.select(*usage_daily.c))).all()}
        balances = {r[0]: int(r[1]) for r in (await conn.execute(sa.select(account_balances))).all()}
        sums = await _ledger_sums(conn)
    zero = [0] * len(ROLLUP_SUMS)
    for group in sorted(set(rows) | set(rollup)):
        kept, summed = rollup.get(group, zero), rows.get(group, zero)
        if kept != summed:
            wrong.append(RollupMismatch("usage_daily", group, tuple(kept), tuple(summed)))
    for account in sorted(set(balances) | set(sums)):
        kept_balance, summed_balance = balances.get(account, 0), sums.get(account, 0)
        if kept_balance != summed_balance:
            wrong.append(RollupMismatch("account_balances", (account,), (kept_balance,), (summed_balance,)))
    return wrong


async def rebuild_rollups(engine: AsyncEngine) -> int:
    """Recompute both roll-ups from the rows, in one transaction that holds off settlements meanwhile
    (PostgreSQL: a SHARE lock on generations and ledger; SQLite: the write lock its first delete takes).
    Returns the number of `usage_daily` groups written."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql("LOCK TABLE generations, ledger IN SHARE MODE")
        await conn.execute(usage_daily.delete())
        await conn.execute(account_balances.delete())
        groups = await _from_rows(conn)
        names = [*ROLLUP_KEY, *ROLLUP_SUMS]
        rows = [dict(zip(names, [*group[:1], date.fromisoformat(group[1]), *group[2:], *sums], strict=True))
                for group, sums in groups.items()]
        if rows:
            await conn.execute(usage_daily.insert(), rows)
        balances = [{"account_id": account, "balance_nanos": total} for account, total in (await _ledger_sums(conn)).items()]
        if balances:
            await conn.execute(account_balances.insert(), balances)
    return len(rows)
