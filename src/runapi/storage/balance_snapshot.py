"""One account's balance, and which of some given ledger entries it includes, from one snapshot."""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.storage.database import read_all, reader
from runapi.storage.schema import ledger


async def balance_snapshot(engine: AsyncEngine, account_id: str, entry_ids: Collection[int]) -> tuple[int, set[int]]:
    """(Σ ledger in nano-dollars, the subset of `entry_ids` included in that sum).

    One statement, so both parts come from the same snapshot on PostgreSQL and SQLite alike:
    an entry committed while it runs is either in the sum and the subset, or in neither.
    """
    total = sa.select(sa.literal(None, sa.BigInteger).label("id"),
                      sa.func.coalesce(sa.func.sum(ledger.c.amount_nanos), 0).label("amount"))
    total = total.where(ledger.c.account_id == account_id)
    query: sa.Select[tuple[int | None, int]] | sa.CompoundSelect[tuple[int | None, int]] = total
    if entry_ids:
        seen = sa.select(ledger.c.id, sa.literal(0, sa.BigInteger).label("amount")).where(
            ledger.c.account_id == account_id, ledger.c.id.in_(list(entry_ids)))
        query = sa.union_all(total, seen)
    rows = await read_all(reader(engine), query)  # one statement: no transaction around it
    balance = next(int(r.amount) for r in rows if r.id is None)
    return balance, {int(r.id) for r in rows if r.id is not None}
