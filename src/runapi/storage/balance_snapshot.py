"""One account's balance, and which of some given ledger entries it includes, from one snapshot."""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.storage.database import read_all, reader
from runapi.storage.schema import account_balances, ledger


async def balance_snapshot(engine: AsyncEngine, account_id: str, entry_ids: Collection[int]) -> tuple[int, set[int]]:
    """(Σ ledger in nano-dollars, the subset of `entry_ids` included in that sum).

    The sum is the account's row of `account_balances`, which the database's triggers keep in the
    transaction of every ledger insert (migration 0009): one row read, however long the history (the
    sum over the ledger took 55 ms for a benchmark account of a few hundred thousand charges, and the
    credit guard reads it every 256 charges). One statement, so both parts come from the same snapshot
    on PostgreSQL and SQLite alike: an entry committed while it runs is either in the sum and the
    subset, or in neither.
    """
    balance = sa.select(account_balances.c.balance_nanos).where(account_balances.c.account_id == account_id)
    total = sa.select(sa.literal(None, sa.BigInteger).label("id"),
                      sa.func.coalesce(balance.scalar_subquery(), 0, type_=sa.BigInteger).label("amount"))
    query: sa.Executable = total
    if entry_ids:
        seen = sa.select(ledger.c.id, sa.literal(0, sa.BigInteger).label("amount")).where(
            ledger.c.account_id == account_id, ledger.c.id.in_(list(entry_ids)))
        query = sa.union_all(total, seen)
    rows = await read_all(reader(engine), query)  # one statement: no transaction around it
    balance_nanos = next(int(r.amount) for r in rows if r.id is None)
    return balance_nanos, {int(r.id) for r in rows if r.id is not None}
