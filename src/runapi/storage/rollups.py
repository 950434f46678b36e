"""Checks that the roll-ups (migration 0009) agree with the rows they sum: `runapi db reconcile`.

`usage_daily` and `usage_daily_deployments` are compared group by group with the same sums computed
from `generations` (and, for write-offs, the write-off rows of `ledger`); `account_balances` with Σ
ledger per account. The triggers that keep them make a difference impossible short of a hand edit or
tables restored from different backups; this reads every row, so it is an operator's check, not a
hot path. `rebuild_rollups` recomputes all three.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runapi.storage.ledger import WRITEOFF_SUFFIX
from runapi.storage.schema import (
    ROLLUP_SUMS,
    account_balances,
    generations,
    ledger,
    usage_daily,
    usage_daily_deployments,
)
from runapi.storage.usage import BILLED

Group = tuple[str, ...]
ROLLUPS = (usage_daily, usage_daily_deployments)


class RollupMismatch(msgspec.Struct, frozen=True):
    """One group or account whose roll-up differs from its rows: what the roll-up says, what the rows say."""

    table: str
    key: Group
    rollup: tuple[int, ...]
    rows: tuple[int, ...]


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date().isoformat()
    return value.isoformat() if isinstance(value, date) else str(value)


def _key_columns(table: sa.Table) -> list[str]:
    return [column.name for column in table.primary_key.columns]


def _key_expressions(table: sa.Table, dialect: str) -> list[sa.ColumnElement[Any]]:
    """How each key column of `table` is computed from a generations row, as the triggers compute it."""
    postgres = dialect == "postgresql"
    created, account = generations.c.created_at, generations.c.account_id
    computed: dict[str, sa.ColumnElement[Any]] = {
        "day": sa.func.date_trunc("day", created, "UTC") if postgres else sa.func.substr(created, 1, 10),
        "shard": sa.func.hashtext(account).op("&")(15) if postgres else sa.literal(0, sa.SmallInteger()),
    }
    return [computed[name] if name in computed else generations.c[name] for name in _key_columns(table)]


def _group(table: sa.Table, row: Any) -> Group:
    return tuple(_text(value)[:10] if name == "day" else _text(value)
                 for name, value in zip(_key_columns(table), row, strict=False))


async def _from_rows(conn: AsyncConnection, table: sa.Table) -> dict[Group, list[int]]:
    """The roll-up `table`'s sums, computed from `generations` (and the write-offs in `ledger`)."""
    billed = generations.c.status.in_(BILLED)
    key = _key_expressions(table, conn.dialect.name)
    sums = [sa.func.sum(sa.case((billed, 1), else_=0)), sa.func.sum(sa.case((billed, 0), else_=1)),
            *[sa.func.sum(sa.case((billed, generations.c[name]), else_=0)) for name in ROLLUP_SUMS[2:]]]
    width = len(table.c) - len(key)
    grouped = [expression for expression in key if not isinstance(expression, sa.Null | sa.BindParameter)]
    out: dict[Group, list[int]] = {}
    for row in (await conn.execute(sa.select(*key, *sums).group_by(*grouped))).all():
        out[_group(table, row)] = ([int(v or 0) for v in row[len(key):]] + [0])[:width]
    if "write_off_nanos" in table.c:
        own_id = sa.func.substr(ledger.c.generation_id, 1,
                                sa.func.length(ledger.c.generation_id) - len(WRITEOFF_SUFFIX))
        writeoffs = sa.select(*key, sa.func.sum(ledger.c.amount_nanos)) \
            .select_from(ledger.join(generations, generations.c.id == own_id)) \
            .where(ledger.c.kind == "writeoff").group_by(*grouped)
        for row in (await conn.execute(writeoffs)).all():
            out.setdefault(_group(table, row), [0] * width)[-1] += int(row[-1] or 0)
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
        for table in ROLLUPS:
            rows = await _from_rows(conn, table)
            width = len(_key_columns(table))
            kept = {_group(table, r): [int(v) for v in r[width:]] for r in (await conn.execute(sa.select(table))).all()}
            zero = [0] * (len(table.c) - width)
            for group in sorted(set(rows) | set(kept)):
                if rows.get(group, zero) != kept.get(group, zero):
                    wrong.append(RollupMismatch(table.name, group, tuple(kept.get(group, zero)),
                                                tuple(rows.get(group, zero))))
        balances = {r[0]: int(r[1]) for r in (await conn.execute(sa.select(account_balances))).all()}
        sums = await _ledger_sums(conn)
    for account in sorted(set(balances) | set(sums)):
        if balances.get(account, 0) != sums.get(account, 0):
            wrong.append(RollupMismatch("account_balances", (account,), (balances.get(account, 0),),
                                        (sums.get(account, 0),)))
    return wrong


async def rebuild_rollups(engine: AsyncEngine) -> int:
    """Recompute the roll-ups from the rows, in one transaction that holds settlements off meanwhile
    (PostgreSQL: a SHARE lock on generations and ledger; SQLite: the write lock its first delete takes).
    Returns the number of roll-up rows written."""
    written = 0
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql("LOCK TABLE generations, ledger IN SHARE MODE")
        for table in (*ROLLUPS, account_balances):
            await conn.execute(table.delete())
        for table in ROLLUPS:
            names = [column.name for column in table.c]
            rows = [dict(zip(names, [*_typed(table, group), *sums], strict=True))
                    for group, sums in (await _from_rows(conn, table)).items()]
            if rows:
                await conn.execute(table.insert(), rows)
            written += len(rows)
        balances = [{"account_id": account, "balance_nanos": total}
                    for account, total in (await _ledger_sums(conn)).items()]
        if balances:
            await conn.execute(account_balances.insert(), balances)
    return written + len(balances)


def _typed(table: sa.Table, group: Group) -> list[Any]:
    """A group's key values as the table's columns take them."""
    kinds: dict[str, Callable[[str], Any]] = {"day": date.fromisoformat, "shard": int}
    return [kinds.get(name, str)(value) for name, value in zip(_key_columns(table), group, strict=True)]
